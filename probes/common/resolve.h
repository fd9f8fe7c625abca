// Name resolution off the loop, shared by the probes that open their own
// sockets. Numeric addresses never touch DNS.
//
// Lookups run on their own small pool (LoopServices::pool(kNameLookups)), not
// on a pool shared with other blocking work: a black-holed database must not
// delay every probe's name lookups. Callers see only start()/cancel() and a
// callback on the loop, so the lookup can move onto the loop (c-ares) without
// touching them.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>
#include <uv.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "probes/probe.h"

namespace canaryd {

struct ResolvedAddress {
  sockaddr_storage storage{};
  std::string ip;  // numeric form, e.g. for libpq's hostaddr=
  const sockaddr* addr() const { return reinterpret_cast<const sockaddr*>(&storage); }
};

// Every address of a name, in the order to try them (getaddrinfo's, which
// sorts by RFC 6724: the ones most likely to work first).
using ResolvedAddresses = std::vector<ResolvedAddress>;

// "host:port" or "[v6]:port" -> (host, port); nullopt when malformed.
std::optional<std::pair<std::string, int>> split_host_port(std::string_view text);

// The address if `host` is an IPv4 or IPv6 literal.
std::optional<ResolvedAddress> numeric_address(const std::string& host, int port);

// One lookup in flight. Destroying or cancelling it guarantees the callback
// never runs, even if the lookup finishes later.
//
// Thread-safety: loop thread only.
class AsyncResolve {
 public:
  // At most this many addresses of one name are kept.
  static constexpr size_t kMaxAddresses = 16;
  static const WorkPool::Spec kPool;

  AsyncResolve() = default;
  ~AsyncResolve() { cancel(); }
  AsyncResolve(const AsyncResolve&) = delete;
  AsyncResolve& operator=(const AsyncResolve&) = delete;

  // `error` is empty on success, and then there is at least one address.
  using Callback = std::function<void(ResolvedAddresses, std::string error)>;
  // For callers that use one address: the first.
  using FirstCallback = std::function<void(std::optional<ResolvedAddress>, std::string error)>;
  // The callback runs on the loop, for the run `ctx` (an exception from it
  // ends that run as internal); from inside start() only when the lookup
  // cannot even be queued.
  void start(const RunContext& ctx, const std::string& host, int port, Callback cb);
  void start(const RunContext& ctx, const std::string& host, int port, FirstCallback cb);
  void cancel();
  bool pending() const { return req_ != nullptr; }

 private:
  struct Req;
  std::shared_ptr<Req> req_;
  WorkPool* pool_ = nullptr;
  uint64_t job_ = 0;
};

}  // namespace canaryd
