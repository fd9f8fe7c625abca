// AsyncResolve on a real libuv loop (c-ares, no thread): /etc/hosts, a real
// dnsmasq, a dead and a silent resolver on loopback. Cancelling or destroying
// means no callback, from outside or from inside the callback, and every
// handle closes. No test reaches past 127.0.0.1.
#include "probes/common/resolve.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include <catch2/catch.hpp>
#include <memory>
#include <optional>
#include <set>
#include <string>

#include "tests/support/dns_servers.h"

using canaryd::AresChannel;
using canaryd::AsyncResolve;
using canaryd::ResolvedAddresses;
using canaryd::RunContext;
using canaryd::test::DnsmasqServer;

namespace {

// A UDP socket on 127.0.0.1 that never reads: a resolver that never answers.
class SilentResolver {
 public:
  SilentResolver() {
    fd_ = socket(AF_INET, SOCK_DGRAM, 0);
    REQUIRE(fd_ >= 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    socklen_t len = sizeof a;
    REQUIRE(getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len) == 0);
    port_ = ntohs(a.sin_port);
  }
  ~SilentResolver() { close(fd_); }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }

 private:
  int fd_ = -1;
  int port_ = 0;
};

// A loopback UDP port nobody listens on: queries there are refused at once.
std::string dead_resolver() {
  SilentResolver gone;
  return gone.address();
}

AresChannel::Options at(const std::string& servers, int try_timeout_ms = 500) {
  AresChannel::Options o;
  o.servers = servers;
  o.try_timeout_ms = try_timeout_ms;
  o.tries = 1;
  o.refusal_is_answer = false;
  return o;
}

struct Loop {
  Loop() {
    uv_loop_init(&loop);
    ctx.loop = &loop;
  }
  // Runs until nothing is left; closing then proves every handle closed.
  void drain_and_close() {
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK(uv_loop_close(&loop) == 0);
  }
  uv_loop_t loop;
  RunContext ctx;
};

std::set<std::string> ips(const ResolvedAddresses& found) {
  std::set<std::string> out;
  for (const auto& a : found) out.insert(a.ip);
  return out;
}

}  // namespace

TEST_CASE("resolve: localhost comes from /etc/hosts, without asking DNS", "[resolve]") {
  Loop l;
  // The only DNS server refuses everything: an answer can only be the file's.
  AsyncResolve resolve(at(dead_resolver()));
  int calls = 0;
  ResolvedAddresses found;
  std::string error = "unset";
  resolve.start(l.ctx, "localhost", 6379, [&](ResolvedAddresses f, std::string e) {
    ++calls;
    found = std::move(f);
    error = std::move(e);
  });
  CHECK(calls == 0);  // never from inside start()
  l.drain_and_close();
  REQUIRE(calls == 1);
  INFO(error);
  CHECK(error.empty());
  REQUIRE_FALSE(found.empty());
  for (const auto& a : found) {
    CHECK((a.ip == "127.0.0.1" || a.ip == "::1"));
    if (a.addr()->sa_family == AF_INET)
      CHECK(ntohs(reinterpret_cast<const sockaddr_in*>(a.addr())->sin_port) == 6379);
    else
      CHECK(ntohs(reinterpret_cast<const sockaddr_in6*>(a.addr())->sin6_port) == 6379);
  }
}

TEST_CASE("resolve: a name's IPv4 and IPv6 addresses from a real DNS server", "[resolve]") {
  DnsmasqServer dnsmasq({"--host-record=both.test,192.0.2.7,2001:db8::7"});
  Loop l;
  AsyncResolve resolve(at(dnsmasq.address(), 2000));
  ResolvedAddresses found;
  std::string error = "unset";
  resolve.start(l.ctx, "both.test", 443, [&](ResolvedAddresses f, std::string e) {
    found = std::move(f);
    error = std::move(e);
  });
  l.drain_and_close();
  INFO(error);
  CHECK(error.empty());
  CHECK(ips(found) == std::set<std::string>{"192.0.2.7", "2001:db8::7"});
  CHECK(found.size() == 2);
}

TEST_CASE("resolve: a name that does not exist fails, and so does a dead resolver", "[resolve]") {
  DnsmasqServer dnsmasq({"--host-record=a.test,192.0.2.1"});
  Loop l;
  AsyncResolve missing(at(dnsmasq.address(), 2000));
  AsyncResolve unreachable(at(dead_resolver()));
  ResolvedAddresses found_missing, found_unreachable;
  std::string error_missing, error_unreachable;
  int calls = 0;
  missing.start(l.ctx, "missing.test", 80, [&](ResolvedAddresses f, std::string e) {
    ++calls;
    found_missing = std::move(f);
    error_missing = std::move(e);
  });
  unreachable.start(l.ctx, "nothing.invalid", 80, [&](ResolvedAddresses f, std::string e) {
    ++calls;
    found_unreachable = std::move(f);
    error_unreachable = std::move(e);
  });
  l.drain_and_close();
  CHECK(calls == 2);
  CHECK(found_missing.empty());
  CHECK_FALSE(error_missing.empty());
  CHECK(found_unreachable.empty());
  CHECK_FALSE(error_unreachable.empty());
}

TEST_CASE("resolve: cancel or destroy before the answer means no callback", "[resolve]") {
  SilentResolver silent;
  Loop l;
  AsyncResolve cancelled(at(silent.address(), 5000));
  auto destroyed = std::make_unique<AsyncResolve>(at(silent.address(), 5000));
  int calls = 0;
  cancelled.start(l.ctx, "never.test", 80, [&](ResolvedAddresses, std::string) { ++calls; });
  destroyed->start(l.ctx, "never.test", 80, [&](ResolvedAddresses, std::string) { ++calls; });
  CHECK(cancelled.pending());
  // Once the queries are out on the wire.
  uv_timer_t timer;
  uv_timer_init(&l.loop, &timer);
  struct Targets {
    AsyncResolve* cancelled;
    std::unique_ptr<AsyncResolve>* destroyed;
  } targets{&cancelled, &destroyed};
  timer.data = &targets;
  uv_timer_start(
      &timer,
      [](uv_timer_t* t) {
        auto* targets = static_cast<Targets*>(t->data);
        targets->cancelled->cancel();
        targets->destroyed->reset();
        uv_close(reinterpret_cast<uv_handle_t*>(t), nullptr);
      },
      100, 0);
  l.drain_and_close();
  CHECK(calls == 0);
  CHECK_FALSE(cancelled.pending());
}

TEST_CASE("resolve: the callback may destroy its lookup, or start another", "[resolve]") {
  DnsmasqServer dnsmasq({"--host-record=a.test,192.0.2.1", "--host-record=b.test,192.0.2.2"});
  Loop l;
  auto owned = std::make_unique<AsyncResolve>(at(dnsmasq.address(), 2000));
  AsyncResolve again(at(dnsmasq.address(), 2000));
  std::string first, second;
  owned->start(l.ctx, "a.test", 80, [&](std::optional<canaryd::ResolvedAddress> a, std::string) {
    if (a) first = a->ip;
    owned.reset();
  });
  again.start(l.ctx, "a.test", 80, [&](ResolvedAddresses, std::string) {
    again.start(l.ctx, "b.test", 80, [&](std::optional<canaryd::ResolvedAddress> b, std::string) {
      if (b) second = b->ip;
    });
  });
  l.drain_and_close();
  CHECK(first == "192.0.2.1");
  CHECK(second == "192.0.2.2");
  CHECK(owned == nullptr);
}
