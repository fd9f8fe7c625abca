// AresChannel on a real libuv loop against a real dnsmasq and the hostile
// resolver: answers arrive, and after destruction (from outside or from inside
// the channel's own callback) nothing calls back and every handle closes.
#include "probes/common/ares_channel.h"

#include <uv.h>

#include <catch2/catch.hpp>
#include <memory>
#include <string>

#include "tests/support/dns_servers.h"

using canaryd::AresChannel;
using canaryd::test::DnsmasqServer;
using canaryd::test::HostileDns;

namespace {

constexpr int kClassIn = 1;
constexpr int kTypeA = 1;

std::unique_ptr<AresChannel> make_channel(uv_loop_t* loop, const std::string& server,
                                          bool tcp = false) {
  AresChannel::Options o;
  o.servers = server;
  o.tcp = tcp;
  std::string error;
  auto channel = AresChannel::create(loop, o, nullptr, error);
  INFO(error);
  REQUIRE(channel);
  return channel;
}

// Runs the loop until nothing is left; closing it then proves every handle
// the channel opened was closed.
void drain_and_close(uv_loop_t* loop) {
  uv_run(loop, UV_RUN_DEFAULT);
  CHECK(uv_loop_close(loop) == 0);
}

}  // namespace

TEST_CASE("ares channel: an answer, then a destroy from inside the callback", "[dns]") {
  DnsmasqServer dnsmasq({"--host-record=a.test,192.0.2.1"});
  uv_loop_t loop;
  uv_loop_init(&loop);
  auto channel = make_channel(&loop, dnsmasq.address());
  int calls = 0;
  bool in_query = true;
  channel->query("a.test", kClassIn, kTypeA, [&](int status, std::string reply) {
    ++calls;
    CHECK_FALSE(in_query);
    CHECK(status == ARES_SUCCESS);
    CHECK(reply.size() > 12);
    channel.reset();  // c-ares is no longer on the stack: allowed
  });
  in_query = false;
  drain_and_close(&loop);
  CHECK(calls == 1);
  CHECK_FALSE(channel);
}

TEST_CASE("ares channel: destroyed with a query in flight, it never calls back", "[dns]") {
  HostileDns hostile;  // "wrongid" replies match no query: it stays in flight
  uv_loop_t loop;
  uv_loop_init(&loop);
  auto channel = make_channel(&loop, hostile.address());
  int calls = 0;
  channel->query("wrongid.hostile.test", kClassIn, kTypeA, [&](int, std::string) { ++calls; });
  uv_timer_t stop;
  uv_timer_init(&loop, &stop);
  stop.data = &channel;
  uv_timer_start(
      &stop,
      [](uv_timer_t* t) {
        static_cast<std::unique_ptr<AresChannel>*>(t->data)->reset();
        uv_close(reinterpret_cast<uv_handle_t*>(t), nullptr);
      },
      200, 0);
  drain_and_close(&loop);
  CHECK(calls == 0);
}

TEST_CASE("ares channel: a refused TCP query fails on the loop, not inside query()", "[dns]") {
  uv_loop_t loop;
  uv_loop_init(&loop);
  // Port 1 on loopback: nothing listens there.
  auto channel = make_channel(&loop, "127.0.0.1:1", /*tcp=*/true);
  int calls = 0;
  bool in_query = true;
  channel->query("a.test", kClassIn, kTypeA, [&](int status, std::string reply) {
    ++calls;
    CHECK_FALSE(in_query);
    CHECK(status == ARES_ECONNREFUSED);
    CHECK(reply.empty());
  });
  in_query = false;
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(calls == 1);
  channel.reset();
  drain_and_close(&loop);
}
