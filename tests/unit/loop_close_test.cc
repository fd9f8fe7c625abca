// close_probe_loop (probes/common/loop_close.h): a probe loop closes at exit,
// past the poll watcher lws 4.1.6 can leave behind, and says what it found.
#include "probes/common/loop_close.h"

#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdlib>
#include <string>
#include <vector>

using canaryd::close_probe_loop;

TEST_CASE("a probe loop closes with nothing left on it") {
  uv_loop_t loop;
  REQUIRE(uv_loop_init(&loop) == 0);
  std::vector<std::string> warnings;
  CHECK(close_probe_loop(&loop, [&](const std::string& w) { warnings.push_back(w); }));
  CHECK(warnings.empty());
}

// What lws 4.1.6 leaves at shutdown: a stopped poll watcher it allocated,
// for a socket it closed. The loop must still close, and free it (under
// LeakSanitizer, a leak fails this test).
TEST_CASE("a probe loop closes past a poll watcher lws left behind and frees it") {
  uv_loop_t loop;
  REQUIRE(uv_loop_init(&loop) == 0);
  int fds[2];
  REQUIRE(socketpair(AF_UNIX, SOCK_STREAM, 0, fds) == 0);
  auto* watcher = static_cast<uv_poll_t*>(std::malloc(sizeof(uv_poll_t)));
  REQUIRE(uv_poll_init(&loop, watcher, fds[0]) == 0);
  REQUIRE(uv_poll_start(watcher, UV_READABLE, [](uv_poll_t*, int, int) {}) == 0);
  uv_poll_stop(watcher);
  std::vector<std::string> warnings;
  CHECK(close_probe_loop(&loop, [&](const std::string& w) { warnings.push_back(w); }));
  REQUIRE(warnings.size() == 1);
  CHECK(warnings[0].find("a poll handle (descriptor ") == 0);
  CHECK(warnings[0].find("a poll watcher lws left behind, closed and freed") != std::string::npos);
  close(fds[0]);
  close(fds[1]);
}

TEST_CASE("a probe loop with another handle left open says so and stays open") {
  uv_loop_t loop;
  REQUIRE(uv_loop_init(&loop) == 0);
  uv_timer_t timer;
  REQUIRE(uv_timer_init(&loop, &timer) == 0);
  std::vector<std::string> warnings;
  CHECK_FALSE(close_probe_loop(&loop, [&](const std::string& w) { warnings.push_back(w); }));
  REQUIRE(warnings.size() == 1);
  CHECK(warnings[0] == "a timer handle (active 0, closing 0) is still open at exit");
  uv_close(reinterpret_cast<uv_handle_t*>(&timer), nullptr);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(uv_loop_close(&loop) == 0);
}
