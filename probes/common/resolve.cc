#include "probes/common/resolve.h"

#include <arpa/inet.h>
#include <fmt/format.h>
#include <netdb.h>

#include <algorithm>
#include <cstring>

namespace canaryd {

// getaddrinfo can block for the resolver's full retry schedule: a hung
// resolver holds these threads and no others.
const WorkPool::Spec AsyncResolve::kPool{"name lookups", 8, 4096};

struct AsyncResolve::Req {
  AsyncResolve* owner;  // null once cancelled; touched on the loop only
  std::string host;
  int port;
  Callback cb;
  ResolvedAddresses found;  // written by the pool thread, read on the loop after it
  std::string error;
};

std::optional<std::pair<std::string, int>> split_host_port(std::string_view text) {
  std::string host;
  std::string_view port;
  if (!text.empty() && text.front() == '[') {
    size_t close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':')
      return std::nullopt;
    host = std::string(text.substr(1, close - 1));
    port = text.substr(close + 2);
  } else {
    size_t colon = text.rfind(':');
    if (colon == std::string_view::npos || text.find(':') != colon) return std::nullopt;
    host = std::string(text.substr(0, colon));
    port = text.substr(colon + 1);
  }
  if (host.empty() || port.empty() || port.size() > 5) return std::nullopt;
  int p = 0;
  for (char c : port) {
    if (c < '0' || c > '9') return std::nullopt;
    p = p * 10 + (c - '0');
  }
  if (p < 1 || p > 65535) return std::nullopt;
  return std::make_pair(host, p);
}

std::optional<ResolvedAddress> numeric_address(const std::string& host, int port) {
  ResolvedAddress out;
  auto* v4 = reinterpret_cast<sockaddr_in*>(&out.storage);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&out.storage);
  if (uv_ip4_addr(host.c_str(), port, v4) == 0) {
    out.ip = host;
    return out;
  }
  std::string h = host;
  if (h.size() > 2 && h.front() == '[' && h.back() == ']') h = h.substr(1, h.size() - 2);
  if (uv_ip6_addr(h.c_str(), port, v6) == 0) {
    out.ip = h;
    return out;
  }
  return std::nullopt;
}

namespace {

// On a pool thread.
void lookup(const std::string& host, int port, ResolvedAddresses& found, std::string& error) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  int rc = getaddrinfo(host.c_str(), nullptr, &hints, &res);
  if (rc != 0) {
    error = rc == EAI_SYSTEM ? std::strerror(errno) : gai_strerror(rc);
    return;
  }
  for (addrinfo* ai = res; ai != nullptr && found.size() < AsyncResolve::kMaxAddresses;
       ai = ai->ai_next) {
    if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6) continue;
    ResolvedAddress a;
    std::memcpy(&a.storage, ai->ai_addr, std::min<size_t>(ai->ai_addrlen, sizeof a.storage));
    char ip[INET6_ADDRSTRLEN] = {};
    if (ai->ai_family == AF_INET) {
      auto* sin = reinterpret_cast<sockaddr_in*>(&a.storage);
      sin->sin_port = htons(static_cast<uint16_t>(port));
      inet_ntop(AF_INET, &sin->sin_addr, ip, sizeof ip);
    } else {
      auto* sin6 = reinterpret_cast<sockaddr_in6*>(&a.storage);
      sin6->sin6_port = htons(static_cast<uint16_t>(port));
      inet_ntop(AF_INET6, &sin6->sin6_addr, ip, sizeof ip);
    }
    a.ip = ip;
    bool seen = std::any_of(found.begin(), found.end(),
                            [&](const ResolvedAddress& f) { return f.ip == a.ip; });
    if (!seen) found.push_back(std::move(a));
  }
  freeaddrinfo(res);
  if (found.empty()) error = "no address";
}

}  // namespace

void AsyncResolve::start(const RunContext& ctx, const std::string& host, int port, Callback cb) {
  cancel();
  auto r = std::make_shared<Req>();
  r->owner = this;
  r->host = host;
  r->port = port;
  r->cb = std::move(cb);
  pool_ = &ctx.services->pool(kPool);
  // The work and the completion share the request; whichever is last frees it.
  job_ = pool_->submit([r] { lookup(r->host, r->port, r->found, r->error); },
                       [r] {
                         AsyncResolve* owner = r->owner;
                         if (owner == nullptr) return;  // cancelled: nobody is waiting any more
                         owner->req_.reset();
                         owner->job_ = 0;
                         Callback cb = std::move(r->cb);
                         if (!r->error.empty()) r->found.clear();
                         cb(std::move(r->found), std::move(r->error));
                       },
                       ctx.fail);
  if (job_ == 0) {
    pool_ = nullptr;
    r->cb(ResolvedAddresses{},
          fmt::format("canaryd's name lookups are backed up ({} waiting)", kPool.max_queued));
    return;
  }
  req_ = std::move(r);
}

void AsyncResolve::start(const RunContext& ctx, const std::string& host, int port,
                         FirstCallback cb) {
  start(ctx, host, port, Callback([cb = std::move(cb)](ResolvedAddresses found, std::string error) {
          std::optional<ResolvedAddress> first;
          if (!found.empty()) first = std::move(found.front());
          cb(std::move(first), std::move(error));
        }));
}

void AsyncResolve::cancel() {
  if (req_ == nullptr) return;
  // A lookup that has not started is dropped; one already running finishes
  // on its thread and its result is ignored.
  if (!pool_->unqueue(job_)) req_->owner = nullptr;
  req_.reset();
  pool_ = nullptr;
  job_ = 0;
}

}  // namespace canaryd
