#include "probes/common/resolve.h"

#include <arpa/inet.h>

#include <algorithm>
#include <utility>

#include "base/guard.h"

namespace canaryd {

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

AresChannel::Options AsyncResolve::default_options() {
  AresChannel::Options o;
  // resolv.conf's timeout and attempts, and a SERVFAIL is retried at the
  // next server, as getaddrinfo would.
  o.try_timeout_ms = 0;
  o.tries = 0;
  o.refusal_is_answer = false;
  return o;
}

namespace {

// c-ares's order, each address once, at most kMaxAddresses, with `port`.
ResolvedAddresses with_port(const std::vector<sockaddr_storage>& found, int port) {
  ResolvedAddresses out;
  for (const sockaddr_storage& s : found) {
    if (out.size() >= AsyncResolve::kMaxAddresses) break;
    ResolvedAddress a;
    a.storage = s;
    char ip[INET6_ADDRSTRLEN] = {};
    if (s.ss_family == AF_INET) {
      auto* sin = reinterpret_cast<sockaddr_in*>(&a.storage);
      sin->sin_port = htons(static_cast<uint16_t>(port));
      inet_ntop(AF_INET, &sin->sin_addr, ip, sizeof ip);
    } else {
      auto* sin6 = reinterpret_cast<sockaddr_in6*>(&a.storage);
      sin6->sin6_port = htons(static_cast<uint16_t>(port));
      inet_ntop(AF_INET6, &sin6->sin6_addr, ip, sizeof ip);
    }
    a.ip = ip;
    bool seen =
        std::any_of(out.begin(), out.end(), [&](const ResolvedAddress& f) { return f.ip == a.ip; });
    if (!seen) out.push_back(std::move(a));
  }
  return out;
}

}  // namespace

void AsyncResolve::start(const RunContext& ctx, const std::string& host, int port, Callback cb) {
  cancel();
  std::string error;
  channel_ = AresChannel::create(ctx.loop, opts_, ctx.fail, error);
  if (channel_ == nullptr) {
    cb(ResolvedAddresses{}, std::move(error));
    return;
  }
  channel_->resolve(host, [this, port, fail = ctx.fail, cb = std::move(cb)](
                              int status, std::vector<sockaddr_storage> found) {
    // c-ares has returned: the channel may go now, and must, so that the
    // callback can start another lookup or destroy this object.
    channel_.reset();
    ResolvedAddresses addresses;
    std::string error;
    if (status == ARES_SUCCESS) addresses = with_port(found, port);
    if (status != ARES_SUCCESS)
      error = ares_strerror(status);
    else if (addresses.empty())
      error = "no address";
    guarded(fail, "name lookups", [&] { cb(std::move(addresses), std::move(error)); });
  });
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
  // Destroying the channel ends its lookup without calling back.
  channel_.reset();
}

}  // namespace canaryd
