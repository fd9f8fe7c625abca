// Several lws contexts (WsService) alive at once, on one loop and on several
// threads, made and destroyed in any order: each must do client TLS, and none
// may leak (LSan checks at the process's exit, one ctest entry per case). Real
// lws on real libuv loops against the fake platform's TLS listeners.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <barrier>
#include <catch2/catch.hpp>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "probes/common/ws_client.h"
#include "tests/support/harness.h"

namespace canaryd::test {
namespace {

using namespace std::chrono_literals;

TlsPlatform& platform() {
  static TlsPlatform p;
  return p;
}

int listen_loopback(int& port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (fd < 0 || bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || listen(fd, 4) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0)
    throw std::runtime_error(std::string("listener: ") + strerror(errno));
  port = ntohs(a.sin_port);
  return fd;
}

// Relays one TCP connection to `target_port` on loopback, but holds the
// client's first bytes (a TLS ClientHello) until release(): the client then
// waits in its handshake, its SSL already made, for as long as a test likes.
class HeldRelay {
 public:
  explicit HeldRelay(int target_port) : target_port_(target_port) {
    listen_fd_ = listen_loopback(port_);
    thread_ = std::thread([this] { run(); });
  }
  ~HeldRelay() {
    stop_ = true;
    thread_.join();
    close(listen_fd_);
  }
  HeldRelay(const HeldRelay&) = delete;
  HeldRelay& operator=(const HeldRelay&) = delete;

  int port() const { return port_; }
  bool holding() const { return holding_; }
  void release() { released_ = true; }

 private:
  // Waits for `fd` to be readable, giving up when the relay stops.
  bool readable(int fd) {
    while (!stop_) {
      pollfd p{fd, POLLIN, 0};
      if (poll(&p, 1, 20) > 0) return true;
    }
    return false;
  }
  void run() {
    if (!readable(listen_fd_)) return;
    int client = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (client < 0) return;
    char hello[16 * 1024];
    ssize_t n = readable(client) ? read(client, hello, sizeof hello) : -1;
    holding_ = n > 0;
    while (!stop_ && !released_) std::this_thread::sleep_for(5ms);
    int server = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(static_cast<uint16_t>(target_port_));
    if (n > 0 && !stop_ && connect(server, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
        write(server, hello, static_cast<size_t>(n)) == n) {
      pollfd p[2] = {{client, POLLIN, 0}, {server, POLLIN, 0}};
      char buf[16 * 1024];
      while (!stop_) {
        if (poll(p, 2, 20) <= 0) continue;
        int from = (p[0].revents != 0) ? client : server;
        ssize_t got = read(from, buf, sizeof buf);
        if (got <= 0 ||
            write(from == client ? server : client, buf, static_cast<size_t>(got)) != got)
          break;
      }
    }
    close(server);
    close(client);
  }

  int target_port_;
  int port_ = 0;
  int listen_fd_ = -1;
  std::atomic<bool> holding_{false};
  std::atomic<bool> released_{false};
  std::atomic<bool> stop_{false};
  std::thread thread_;  // last: started once everything it uses exists
};

// Closes each connection once it opens, and counts how they went.
struct Outcomes : WsConnection::Handler {
  int opened = 0;
  int ended = 0;
  std::vector<std::string> failures;  // how connections that never opened ended
  void on_ws_open(WsConnection* c) override {
    ++opened;
    c->close();
  }
  void on_ws_message(WsConnection* /*c*/, std::string_view /*text*/) override {}
  void on_ws_end(WsConnection* c, const WsEnd& end) override {
    ++ended;
    if (c->open_ns() == 0) failures.push_back(end.message);
  }
};

std::shared_ptr<const WsEndpoint> endpoint(int port, bool tls, const std::string& ca_file = "",
                                           bool insecure = false) {
  auto ep = std::make_shared<WsEndpoint>();
  ep->tls = tls;
  ep->host = "127.0.0.1";
  ep->port = port;
  ep->path = "/ws";
  ep->host_header = "127.0.0.1";
  ep->display_url = "ws://127.0.0.1/ws";
  ep->ca_file = ca_file;
  ep->insecure_skip_verify = insecure;
  return ep;
}

// Opens the connections that use each kind of client vhost: TLS checked
// against a CA file, TLS with the default trust store where only lws's verify
// callback lets an unknown certificate through (insecure_skip_verify), and
// plain ws.
void open_each_kind(WsService& service, Outcomes& out) {
  auto& p = platform();
  auto open = [&](const std::shared_ptr<const WsEndpoint>& ep) {
    WsConnection::open(service, ep, *numeric_address("127.0.0.1", ep->port), &out);
  };
  open(endpoint(p.fp.tls_port("good"), true, p.ca()));
  open(endpoint(p.fp.tls_port("wronghost"), true, "", true));
  open(endpoint(p.fp.http_port(), false));
}

template <typename Pred>
bool run_until(uv_loop_t* loop, Pred done, std::chrono::milliseconds limit = 30s) {
  auto until = std::chrono::steady_clock::now() + limit;
  while (!done()) {
    if (std::chrono::steady_clock::now() > until) return false;
    uv_run(loop, UV_RUN_NOWAIT);
    std::this_thread::sleep_for(2ms);
  }
  return true;
}

// shutdown(), the loop turns that close lws's handles, then the destructor.
// Other contexts keep the loop alive, so it cannot simply run until empty:
// lws closes its connections' handles, and from their close callbacks its own
// timer and idle handles, one turn later; lws tells no one when it is done.
void destroy(std::unique_ptr<WsService>& service, uv_loop_t* loop) {
  service->shutdown();
  for (int turn = 0; turn < 10; ++turn) uv_run(loop, UV_RUN_NOWAIT);
  service.reset();
}

// Takes every free descriptor number below the highest one in use, so the
// next descriptor opened gets the lowest number freed after this.
std::vector<int> fill_descriptor_gaps() {
  int highest = 0;
  for (const auto& e : std::filesystem::directory_iterator("/proc/self/fd"))
    highest = std::max(highest, std::stoi(e.path().filename().string()));
  std::vector<int> fillers;
  for (;;) {
    int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (fd < 0) break;
    if (fd > highest) {
      close(fd);
      break;
    }
    fillers.push_back(fd);
  }
  return fillers;
}

}  // namespace

TEST_CASE("an lws context torn down on a loop leaves alone a descriptor opened meanwhile",
          "[websocket][unit]") {
  uv_loop_t loop;
  uv_loop_init(&loop);
  auto stays = std::make_unique<WsService>(&loop);
  auto goes = std::make_unique<WsService>(&loop);
  uv_run(&loop, UV_RUN_NOWAIT);
  std::vector<int> fillers = fill_descriptor_gaps();
  goes->shutdown();
  // The lowest free number: the one lws's event pipe had, unless it is held.
  int mine = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  REQUIRE(mine >= 0);
  for (int turn = 0; turn < 10; ++turn) uv_run(&loop, UV_RUN_NOWAIT);
  goes.reset();
  CHECK(fcntl(mine, F_GETFD) != -1);
  close(mine);
  for (int fd : fillers) close(fd);
  destroy(stays, &loop);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(uv_loop_close(&loop) == 0);
}

TEST_CASE(
    "lws contexts made during another's TLS handshake on its loop leave it intact and leak "
    "nothing, torn down in any order",
    "[websocket][unit]") {
  auto& p = platform();
  uv_loop_t loop;
  uv_loop_init(&loop);
  auto first = std::make_unique<WsService>(&loop);
  HeldRelay relay(p.fp.tls_port("good"));
  Outcomes held;
  WsConnection::open(*first, endpoint(relay.port(), true, p.ca()),
                     *numeric_address("127.0.0.1", relay.port()), &held);
  // The ClientHello is out: lws has made this connection's SSL.
  REQUIRE(run_until(&loop, [&] { return relay.holding(); }));
  auto second = std::make_unique<WsService>(&loop);
  auto third = std::make_unique<WsService>(&loop);
  relay.release();
  REQUIRE(run_until(&loop, [&] { return held.ended == 1; }));
  CHECK(held.failures == std::vector<std::string>{});
  CHECK(held.opened == 1);

  // Every context does TLS with each kind of vhost, the first one included.
  Outcomes out;
  for (auto* s : {second.get(), third.get(), first.get()}) open_each_kind(*s, out);
  REQUIRE(run_until(&loop, [&] { return out.ended == 9; }));
  CHECK(out.failures == std::vector<std::string>{});
  CHECK(out.opened == 9);

  // Neither the order they were made in nor its reverse.
  destroy(second, &loop);
  destroy(first, &loop);
  auto fourth = std::make_unique<WsService>(&loop);
  open_each_kind(*fourth, out);
  REQUIRE(run_until(&loop, [&] { return out.ended == 12; }));
  CHECK(out.opened == 12);
  destroy(third, &loop);
  destroy(fourth, &loop);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(uv_loop_close(&loop) == 0);
}

// lws 4.1.6 closes a destroyed context's event pipe descriptor a second time
// one loop turn later (WsService::hold_pipe_number): a descriptor another
// thread opens in the short span before canaryd takes the number back could
// still be closed under it. So contexts are destroyed while no thread opens
// descriptors, as the daemon does at shutdown.
TEST_CASE(
    "lws contexts on several threads, made while the others handshake and destroyed in any "
    "order, all do client TLS and leak nothing",
    "[websocket][unit]") {
  platform();  // started once, before the threads
  constexpr int kThreads = 3;
  constexpr int kRounds = 4;
  struct Tally {
    int opened = 0;
    int ended = 0;
    std::vector<std::string> failures;
    bool loop_closed = false;
  };
  std::vector<Tally> tallies(kThreads);
  std::barrier sync(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([t, &sync, &tally = tallies[t]] {
      uv_loop_t loop;
      uv_loop_init(&loop);
      for (int round = 0; round < kRounds; ++round) {
        sync.arrive_and_wait();
        // Staggered: a context is made while the others' handshakes run.
        std::this_thread::sleep_for(t * 5ms);
        auto service = std::make_unique<WsService>(&loop);
        Outcomes out;
        open_each_kind(*service, out);
        run_until(&loop, [&] { return out.ended == 3; });
        sync.arrive_and_wait();
        // The other way round, and at once.
        std::this_thread::sleep_for((kThreads - 1 - t) * 2ms);
        destroy(service, &loop);
        tally.opened += out.opened;
        tally.ended += out.ended;
        for (auto& f : out.failures) tally.failures.push_back(std::move(f));
      }
      uv_run(&loop, UV_RUN_DEFAULT);
      tally.loop_closed = uv_loop_close(&loop) == 0;
    });
  }
  for (auto& th : threads) th.join();
  for (int t = 0; t < kThreads; ++t) {
    INFO("thread " << t);
    CHECK(tallies[t].failures == std::vector<std::string>{});
    CHECK(tallies[t].opened == 3 * kRounds);
    CHECK(tallies[t].ended == 3 * kRounds);
    CHECK(tallies[t].loop_closed);
  }
}

}  // namespace canaryd::test
