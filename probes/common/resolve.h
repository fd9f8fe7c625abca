// Name resolution on the loop (c-ares), shared by the probes that open their
// own sockets. Numeric addresses never touch DNS.
//
// No thread is involved: a lookup never waits in a pool behind a stuck job
// (a black-holed database, a hung resolver). Each lookup has its own c-ares
// channel, so each reads resolv.conf afresh (a small file read per lookup, in
// exchange for no shared state to cancel out of); /etc/hosts is honoured
// through c-ares's lookups order (files, then DNS). libcurl keeps its own
// resolver.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>
#include <uv.h>

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "probes/common/ares_channel.h"
#include "probes/probe.h"

namespace canaryd {

struct ResolvedAddress {
  sockaddr_storage storage{};
  std::string ip;  // numeric form, e.g. for libpq's hostaddr=
  const sockaddr* addr() const { return reinterpret_cast<const sockaddr*>(&storage); }
};

// Every address of a name, in the order to try them: c-ares's, which sorts
// by RFC 6724 like getaddrinfo (the ones most likely to work first); IPv4 and
// IPv6 mixed as that sort puts them.
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

  AsyncResolve() = default;
  // Tests point the lookups at their own servers and timeouts; by default
  // resolv.conf decides both.
  explicit AsyncResolve(AresChannel::Options opts) : opts_(std::move(opts)) {}
  ~AsyncResolve() { cancel(); }
  AsyncResolve(const AsyncResolve&) = delete;
  AsyncResolve& operator=(const AsyncResolve&) = delete;

  // `error` is empty on success, and then there is at least one address.
  using Callback = std::function<void(ResolvedAddresses, std::string error)>;
  // For callers that use one address: the first.
  using FirstCallback = std::function<void(std::optional<ResolvedAddress>, std::string error)>;
  // The callback runs on the loop, for the run `ctx` (an exception from it
  // ends that run as internal); from inside start() only when c-ares cannot
  // even set up (e.g. an unusable resolv.conf).
  void start(const RunContext& ctx, const std::string& host, int port, Callback cb);
  void start(const RunContext& ctx, const std::string& host, int port, FirstCallback cb);
  void cancel();
  bool pending() const { return channel_ != nullptr; }

 private:
  static AresChannel::Options default_options();
  AresChannel::Options opts_ = default_options();
  // Destroying it drops the lookup: c-ares calls back no more.
  std::unique_ptr<AresChannel> channel_;
};

}  // namespace canaryd
