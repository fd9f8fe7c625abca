#include "probes/common/resolve.h"

#include <arpa/inet.h>
#include <fmt/format.h>
#include <netdb.h>

#include <cstring>

namespace canaryd {

struct AsyncResolve::Req {
  uv_getaddrinfo_t req;
  AsyncResolve* owner;  // null once cancelled
  int port;
  Callback cb;
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

void AsyncResolve::start(uv_loop_t* loop, const std::string& host, int port, Callback cb) {
  cancel();
  auto* r = new Req{{}, this, port, std::move(cb)};
  r->req.data = r;
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  req_ = r;
  int rc = uv_getaddrinfo(
      loop, &r->req,
      [](uv_getaddrinfo_t* req, int status, addrinfo* res) {
        auto* r = static_cast<Req*>(req->data);
        std::optional<ResolvedAddress> out;
        std::string error;
        if (status == 0 && res != nullptr) {
          ResolvedAddress a;
          std::memcpy(&a.storage, res->ai_addr, res->ai_addrlen);
          char ip[INET6_ADDRSTRLEN] = {};
          if (res->ai_family == AF_INET) {
            auto* sin = reinterpret_cast<sockaddr_in*>(&a.storage);
            sin->sin_port = htons(static_cast<uint16_t>(r->port));
            inet_ntop(AF_INET, &sin->sin_addr, ip, sizeof ip);
          } else {
            auto* sin6 = reinterpret_cast<sockaddr_in6*>(&a.storage);
            sin6->sin6_port = htons(static_cast<uint16_t>(r->port));
            inet_ntop(AF_INET6, &sin6->sin6_addr, ip, sizeof ip);
          }
          a.ip = ip;
          out = std::move(a);
        } else {
          error = status == 0 ? "no address" : uv_strerror(status);
        }
        if (res != nullptr) uv_freeaddrinfo(res);
        AsyncResolve* owner = r->owner;
        Callback cb = std::move(r->cb);
        delete r;
        if (owner == nullptr) return;  // cancelled: nobody is waiting any more
        owner->req_ = nullptr;
        cb(std::move(out), std::move(error));
      },
      host.c_str(), nullptr, &hints);
  if (rc != 0) {
    req_ = nullptr;
    Callback c = std::move(r->cb);
    delete r;
    c(std::nullopt, uv_strerror(rc));
  }
}

void AsyncResolve::cancel() {
  if (req_ == nullptr) return;
  req_->owner = nullptr;
  // Best effort: a lookup already running in the pool finishes and is dropped.
  uv_cancel(reinterpret_cast<uv_req_t*>(&req_->req));
  req_ = nullptr;
}

}  // namespace canaryd
