// The WebSocket client's pieces that need no WebSocket server: the UTF-8
// check of text messages, and the client vhosts a rotated CA file leaves
// behind (real lws on a real libuv loop, real sockets on loopback).
#include "probes/common/ws_client.h"

#include <catch2/catch.hpp>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "base/utf8_check.h"
#include "tests/support/harness.h"
#include "tests/support/servers.h"

namespace canaryd::test {
namespace {

using namespace std::chrono_literals;

bool valid_utf8(std::string_view text, size_t piece = 0) {
  Utf8Check check;
  if (piece == 0) return check.feed(text) && check.complete();
  for (size_t at = 0; at < text.size(); at += piece)
    if (!check.feed(text.substr(at, piece))) return false;
  return check.complete();
}

// Records how each connection ended.
struct EndRecorder : WsConnection::Handler {
  int ended = 0;
  WsEnd last;
  void on_ws_open(WsConnection* /*c*/) override {}
  void on_ws_message(WsConnection* /*c*/, std::string_view /*text*/) override {}
  void on_ws_end(WsConnection* /*c*/, const WsEnd& end) override {
    ++ended;
    last = end;
  }
};

// Runs the loop until `done` or the (generous) limit passes.
template <typename Pred>
bool run_until(uv_loop_t* loop, Pred done, std::chrono::milliseconds limit = 30s) {
  auto until = std::chrono::steady_clock::now() + limit;
  while (!done()) {
    if (std::chrono::steady_clock::now() > until) return false;
    uv_run(loop, UV_RUN_NOWAIT);
    std::this_thread::sleep_for(5ms);
  }
  return true;
}

// Runs the loop for `d` (lws closing sockets, uv_now moving on).
void run_for(uv_loop_t* loop, std::chrono::milliseconds d) {
  auto until = std::chrono::steady_clock::now() + d;
  run_until(
      loop, [&] { return std::chrono::steady_clock::now() > until; }, d + 1s);
}

}  // namespace

TEST_CASE("Utf8Check accepts UTF-8 split anywhere and refuses what RFC 3629 forbids",
          "[websocket][unit]") {
  std::string good = "canary ping h\xC3\xA9llo \xE2\x9C\x93 \xF0\x9F\x90\xA4 \xF4\x8F\xBF\xBF";
  for (size_t piece : {0, 1, 2, 3, 5}) {
    INFO(piece);
    CHECK(valid_utf8(good, piece));
  }
  CHECK(valid_utf8(""));
  for (const char* bad : {"\xC3\x28",              // lead byte, no continuation
                          "\x80",                  // continuation without a lead
                          "\xC0\xAF",              // overlong '/'
                          "\xE0\x80\xAF",          // overlong, three bytes
                          "\xED\xA0\x80",          // UTF-16 surrogate
                          "\xF4\x90\x80\x80",      // above U+10FFFF
                          "\xF5\x80\x80\x80",      // invalid lead byte
                          "\xFF", "ok \xE2\x9C"})  // cut short at the end
  {
    INFO(bad);
    CHECK_FALSE(valid_utf8(bad));
    CHECK_FALSE(valid_utf8(bad, 1));
  }
}

TEST_CASE("rotating a CA file many times leaves a bounded number of client vhosts",
          "[websocket][unit]") {
  TempDir dir;
  std::string certs = make_certs(dir);
  std::string pem;
  {
    std::ifstream in(certs + "/ca.pem");
    pem.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  REQUIRE_FALSE(pem.empty());
  std::string ca = dir.file("rotating-ca.pem");
  // Each rotation writes a new file (new size and mtime); OpenSSL skips the
  // text around the PEM block.
  int generation = 0;
  auto rotate = [&] {
    std::string tmp = ca + ".tmp";
    std::ofstream(tmp) << "# generation " << ++generation << "\n" << pem;
    std::filesystem::rename(tmp, ca);
  };

  uv_loop_t loop;
  uv_loop_init(&loop);
  auto service = std::make_unique<WsService>(&loop);
  // Accepts and never answers: a TLS connection to it hangs in the handshake, so the vhost
  // it uses stays in use.
  RawListener hole(RawListener::Mode::kSilent);
  int refused_port = free_port();
  auto endpoint_to = [&](int port) {
    auto ep = std::make_shared<WsEndpoint>();
    ep->tls = true;
    ep->host = "127.0.0.1";
    ep->port = port;
    ep->path = "/ws";
    ep->host_header = "127.0.0.1";
    ep->display_url = "wss://127.0.0.1/ws";
    ep->ca_file = ca;
    return std::shared_ptr<const WsEndpoint>(ep);
  };
  auto refused = endpoint_to(refused_port);
  ResolvedAddress addr = *numeric_address("127.0.0.1", refused_port);
  ResolvedAddress hole_addr = *numeric_address("127.0.0.1", hole.port());

  // One connection each time, after the CA file changed (the file is looked
  // at once a second at most).
  EndRecorder rec;
  auto connect_once = [&] {
    int before = rec.ended;
    WsConnection::open(*service, refused, addr, &rec);
    REQUIRE(run_until(&loop, [&] { return rec.ended > before; }));
    INFO(rec.last.message);
    CHECK(rec.last.reason == Reason::kConnectRefused);
  };

  rotate();
  connect_once();
  // A connection that stays in the TLS handshake holds this generation's vhost.
  EndRecorder held;
  WsConnection* hanging = WsConnection::open(*service, endpoint_to(hole.port()), hole_addr, &held);
  constexpr int kRotations = 8;
  for (int i = 0; i < kRotations; ++i) {
    run_for(&loop, 1100ms);
    rotate();
    connect_once();
    // The default vhost, the held one and the current one at most, however
    // many times the file was replaced.
    CHECK(service->vhost_count() <= 3);
  }
  CHECK(held.ended == 0);  // still in use, never torn down under it

  // Once the held connection is gone its vhost goes at the next rotation.
  hanging->abort();
  run_for(&loop, 1100ms);
  rotate();
  connect_once();
  CHECK(service->vhost_count() <= 2);

  service->shutdown();
  uv_run(&loop, UV_RUN_DEFAULT);
  service.reset();
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(uv_loop_close(&loop) == 0);
}

TEST_CASE(
    "past its loop's share of the connection cap, counted across the loop's contexts, a connection "
    "never starts and says canaryd's limit, "
    "not the target, stopped it",
    "[websocket][unit]") {
  uv_loop_t loop;
  uv_loop_init(&loop);
  // So many loops share the descriptors that this one's share is the floor,
  // 16; its two contexts (LoopServices spreads probes over several) share it.
  auto live = std::make_shared<size_t>(0);
  auto service = std::make_unique<WsService>(&loop, 1'000'000, live);
  auto other = std::make_unique<WsService>(&loop, 1'000'000, live);
  RawListener hole(RawListener::Mode::kSilent);
  auto ep = std::make_shared<WsEndpoint>();
  ep->host = "127.0.0.1";
  ep->port = hole.port();
  ep->path = "/ws";
  ep->host_header = "127.0.0.1";
  ep->display_url = "ws://127.0.0.1/ws";
  std::shared_ptr<const WsEndpoint> endpoint = ep;
  ResolvedAddress addr = *numeric_address("127.0.0.1", hole.port());
  EndRecorder held;
  std::vector<WsConnection*> open;
  for (int i = 0; i < 16; ++i)
    open.push_back(WsConnection::open(i % 2 ? *other : *service, endpoint, addr, &held));
  EndRecorder over;
  WsConnection::open(*service, endpoint, addr, &over);
  REQUIRE(run_until(&loop, [&] { return over.ended == 1; }));
  CHECK(over.last.canaryd_limit);
  CHECK(over.last.reason == Reason::kInternal);
  CHECK(over.last.message.find("limit of 16 WebSocket connections") != std::string::npos);
  CHECK(held.ended == 0);  // the 16 within the cap are still in their handshakes
  for (auto* c : open) c->abort();
  service->shutdown();
  other->shutdown();
  uv_run(&loop, UV_RUN_DEFAULT);
  service.reset();
  other.reset();
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(uv_loop_close(&loop) == 0);
}

}  // namespace canaryd::test
