// Name resolution off the loop (libuv's thread pool), shared by the probes
// that open their own sockets. Numeric addresses never touch DNS.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>
#include <uv.h>

#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

namespace canaryd {

struct ResolvedAddress {
  sockaddr_storage storage{};
  std::string ip;  // numeric form, e.g. for libpq's hostaddr=
  const sockaddr* addr() const { return reinterpret_cast<const sockaddr*>(&storage); }
};

// "host:port" or "[v6]:port" -> (host, port); nullopt when malformed.
std::optional<std::pair<std::string, int>> split_host_port(std::string_view text);

// The address if `host` is an IPv4 or IPv6 literal.
std::optional<ResolvedAddress> numeric_address(const std::string& host, int port);

// One lookup in flight. Destroying or cancelling it guarantees the callback
// never runs, even if the thread pool finishes the lookup later.
//
// Thread-safety: loop thread only.
class AsyncResolve {
 public:
  AsyncResolve() = default;
  ~AsyncResolve() { cancel(); }
  AsyncResolve(const AsyncResolve&) = delete;
  AsyncResolve& operator=(const AsyncResolve&) = delete;

  // `error` is empty on success.
  using Callback = std::function<void(std::optional<ResolvedAddress>, std::string error)>;
  void start(uv_loop_t* loop, const std::string& host, int port, Callback cb);
  void cancel();
  bool pending() const { return req_ != nullptr; }

 private:
  struct Req;
  Req* req_ = nullptr;
};

}  // namespace canaryd
