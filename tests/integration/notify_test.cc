// canaryd under a stand-in for systemd: the test owns the NOTIFY_SOCKET (an
// AF_UNIX datagram socket, as systemd's) and sets WATCHDOG_USEC/WATCHDOG_PID
// as systemd does for Type=notify with WatchdogSec= (systemd/canaryd.service).
// It checks what systemd acts on: READY=1 once serving, RELOADING=1 then
// READY=1 around every reload (good or bad), WATCHDOG=1 within every watchdog
// period, no pings while a probe loop is stalled (so systemd would restart
// the daemon), and STOPPING=1 on SIGTERM.
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstring>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/harness.h"

using namespace canaryd::test;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

// systemd's end of NOTIFY_SOCKET: every datagram's lines, with when they came.
// A thread drains the socket at once, as systemd does, so the daemon's
// sd_notify never waits on a full queue.
class NotifySocket {
 public:
  struct Message {
    Clock::time_point at;
    std::string line;  // one "KEY=VALUE" line
  };

  explicit NotifySocket(const std::string& path) : path_(path) {
    fd_ = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd_ < 0) throw std::runtime_error("socket(AF_UNIX): " + std::string(strerror(errno)));
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (path.size() >= sizeof(addr.sun_path)) throw std::runtime_error("socket path too long");
    std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
    if (bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
      close(fd_);
      throw std::runtime_error("bind " + path + ": " + strerror(errno));
    }
    reader_ = std::thread([this] { read_loop(); });
  }
  ~NotifySocket() {
    stop_ = true;
    reader_.join();
    close(fd_);
    unlink(path_.c_str());
  }

  std::vector<Message> messages() {
    std::lock_guard lock(mu_);
    return messages_;
  }
  // Index of the first `line` at or after `from`, if any.
  std::optional<size_t> find(const std::string& line, size_t from = 0) {
    std::lock_guard lock(mu_);
    for (size_t i = from; i < messages_.size(); ++i)
      if (messages_[i].line == line) return i;
    return std::nullopt;
  }
  size_t size() {
    std::lock_guard lock(mu_);
    return messages_.size();
  }
  // The times of every WATCHDOG=1 in [from, to).
  std::vector<Clock::time_point> pings(Clock::time_point from, Clock::time_point to) {
    std::vector<Clock::time_point> out;
    for (const auto& m : messages())
      if (m.line == "WATCHDOG=1" && m.at >= from && m.at < to) out.push_back(m.at);
    return out;
  }

 private:
  void read_loop() {
    char buf[4096];
    while (!stop_) {
      pollfd p{fd_, POLLIN, 0};
      if (poll(&p, 1, 100) <= 0) continue;
      ssize_t n = recv(fd_, buf, sizeof(buf), 0);
      if (n <= 0) continue;
      const auto now = Clock::now();
      std::string text(buf, static_cast<size_t>(n));
      std::lock_guard lock(mu_);
      size_t start = 0;
      while (start < text.size()) {
        size_t end = text.find('\n', start);
        if (end == std::string::npos) end = text.size();
        if (end > start) messages_.push_back({now, text.substr(start, end - start)});
        start = end + 1;
      }
    }
  }

  std::string path_;
  int fd_ = -1;
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::vector<Message> messages_;  // guarded by mu_
  std::thread reader_;
};

// systemd sets WATCHDOG_PID to the service's main PID, and sd_watchdog_enabled
// ignores a watchdog meant for another process: the wrapper exports its own
// PID and execs canaryd, which keeps that PID.
std::string watchdog_wrapper(const TempDir& dir) {
  std::string path = dir.write_file(
      "canaryd-as-systemd-starts-it",
      "#!/bin/sh\nWATCHDOG_PID=$$\nexport WATCHDOG_PID\nexec '" + canaryd_bin() + "' \"$@\"\n");
  chmod(path.c_str(), 0700);
  return path;
}

// One cheap probe, so the loops have work; it need not succeed.
const char* kConfig =
    "global:\n  listen: \"{{listen}}\"\n  defaults: {interval: 1s, timeout: 500ms}\n"
    "probes:\n  - name: self\n    type: http\n    http: {url: \"http://{{listen}}/-/healthy\"}\n";

// The longest gap between consecutive times (from `start` to the first).
Clock::duration longest_gap(Clock::time_point start, const std::vector<Clock::time_point>& times) {
  Clock::duration longest{0};
  Clock::time_point prev = start;
  for (auto t : times) {
    longest = std::max(longest, t - prev);
    prev = t;
  }
  return longest;
}

double seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

}  // namespace

TEST_CASE("sd_notify: READY, RELOADING/READY around reloads, watchdog pings, STOPPING",
          "[daemon][notify]") {
  TempDir dir;
  NotifySocket notify(dir.file("notify.sock"));
  // WatchdogSec=2s: canaryd pings every half period.
  Daemon d(kConfig, {"NOTIFY_SOCKET=" + dir.file("notify.sock"), "WATCHDOG_USEC=2000000"},
           watchdog_wrapper(dir));

  // Type=notify: systemd holds `systemctl start` until READY=1.
  REQUIRE(wait_until([&] { return notify.find("READY=1").has_value(); }, 10s));

  SECTION("watchdog pings keep to the period") {
    const auto from = Clock::now();
    std::this_thread::sleep_for(5s);
    const auto to = Clock::now();
    auto pings = notify.pings(from, to);
    INFO(pings.size() << " pings in " << seconds(to - from) << " s");
    // Nominally one a second; loose bounds, as CI machines are noisy.
    CHECK(pings.size() >= 3);
    CHECK(pings.size() <= 12);
    // What systemd enforces: never a whole period (2 s) without a ping.
    CHECK(seconds(longest_gap(from, pings)) < 2.0);
  }

  SECTION("a reload is RELOADING=1 then READY=1, good config or bad") {
    size_t mark = notify.size();
    d.process().signal(SIGHUP);
    REQUIRE(wait_until(
        [&] {
          auto r = notify.find("RELOADING=1", mark);
          return r && notify.find("READY=1", *r + 1);
        },
        20s));
    // READY=1 comes after the outcome is recorded.
    CHECK(daemon_metric(d, "canary_config_reloads_total", {{"result", "success"}}) == 1);
    CHECK(daemon_metric(d, "canary_config_last_reload_successful") == 1);

    // A bad file keeps the running config, and systemd must still hear READY=1,
    // or `systemctl reload` would hang and the unit stay "reloading".
    d.rewrite_config("global: {listen: \"{{listen}}\"}\nprobes: [{name: x, type: nope}]\n");
    mark = notify.size();
    d.process().signal(SIGHUP);
    REQUIRE(wait_until(
        [&] {
          auto r = notify.find("RELOADING=1", mark);
          return r && notify.find("READY=1", *r + 1);
        },
        20s));
    CHECK(daemon_metric(d, "canary_config_reloads_total", {{"result", "failure"}}) == 1);
    CHECK(daemon_metric(d, "canary_config_last_reload_successful") == 0);
    CHECK(d.process().running());
  }

  // Whichever section ran: SIGTERM says STOPPING=1 and exits cleanly.
  const size_t mark = notify.size();
  CHECK(d.process().stop() == 0);
  CHECK(notify.find("STOPPING=1", mark).has_value());
}

TEST_CASE("sd_notify: the watchdog pings stop while a probe loop is stalled", "[daemon][notify]") {
  TempDir dir;
  NotifySocket notify(dir.file("notify.sock"));
  // Probe loop 0 blocks for 15 s, 3 s after start (the test-only flag): as a
  // hung library call would. /-/healthy reports a stall after 10 s, so it
  // says 503 for the last 5 s of it.
  Daemon d(kConfig, {"NOTIFY_SOCKET=" + dir.file("notify.sock"), "WATCHDOG_USEC=2000000"},
           watchdog_wrapper(dir), {"--debug.stall-probe-loop", "3", "15"});
  REQUIRE(wait_until([&] { return notify.find("READY=1").has_value(); }, 10s));
  const auto started = Clock::now();
  REQUIRE(wait_until([&] { return !notify.pings(started - 10s, Clock::now()).empty(); }, 10s));

  // Wait for /-/healthy to report the stall.
  std::optional<Clock::time_point> unhealthy_at;
  REQUIRE(wait_until(
      [&] {
        auto r = http_get(d.base_url() + "/-/healthy", 2s);
        if (r.status == 503) unhealthy_at = Clock::now();
        return unhealthy_at.has_value();
      },
      30s, 200ms));
  // By then the loop has been stalled for 10 s: no ping for most of that
  // (they stop within half a period of the last heartbeat).
  auto before = notify.pings(started - 10s, *unhealthy_at);
  REQUIRE(!before.empty());
  INFO("last ping " << seconds(*unhealthy_at - before.back()) << " s before /-/healthy said 503");
  CHECK(seconds(*unhealthy_at - before.back()) >= 5.0);

  // The loop turns again: pings resume and /-/healthy recovers, with no restart.
  CHECK(wait_until([&] { return !notify.pings(*unhealthy_at, Clock::now()).empty(); }, 20s));
  CHECK(wait_until([&] { return http_get(d.base_url() + "/-/healthy", 2s).status == 200; }, 20s));
  CHECK(d.process().running());
  CHECK(d.process().stop() == 0);
}
