// get_floor: the floor under benchmark (a)'s CPU per probe. The same work as a
// healthy HTTP probe's run (a fresh TCP connection to 127.0.0.1, one GET, the
// whole response read, the status checked, the connection closed) with nothing
// else: no HTTP library, no DNS, no metrics, no per-request allocation. What it
// costs per request is what the kernel and the least possible user-space code
// charge; canaryd's CPU per probe is judged as a multiple of it.
//
//   get_floor --port P [--path /health] [--rate N] [--warmup S] [--duration S]
//             [--timeout-ms MS] [--max-inflight N] [--cpu-pid PID]
//
// One thread, one epoll loop, non-blocking sockets. Request i is due at
// t0 + i/rate (a periodic timerfd wakes the loop at that pace, as canaryd's
// probes are spread over their interval); a request that finds --max-inflight
// connections open is skipped, never queued. After --warmup seconds a window of
// --duration seconds is measured: the requests that ended in it (a success is a
// "200" status line and the whole body, by Content-Length or the server's
// close), and this process's utime + stime over it (getrusage); with --cpu-pid,
// that process's too (the server's, to check both sides of (a) gave it the same
// work). One JSON object on stdout. The response from nginx's /health is small, so it is read into
// a fixed buffer per connection slot.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <string>
#include <string_view>
#include <vector>

#include "cpu_time.h"

namespace {

using bench::now_ns;
using bench::proc_cpu_ticks;

[[noreturn]] void die(const char* what) {
  std::fprintf(stderr, "get_floor: %s: %s\n", what, std::strerror(errno));
  std::exit(1);
}

struct Cpu {
  double user = 0, sys = 0;
};

Cpu cpu_now() {
  rusage r{};
  getrusage(RUSAGE_SELF, &r);
  return {static_cast<double>(r.ru_utime.tv_sec) + static_cast<double>(r.ru_utime.tv_usec) / 1e6,
          static_cast<double>(r.ru_stime.tv_sec) + static_cast<double>(r.ru_stime.tv_usec) / 1e6};
}

// Big enough for nginx's /health answer (~170 bytes) with room to spare; a
// response whose headers do not fit is a failure, not a reason to allocate.
constexpr size_t kBuf = 2048;

struct Conn {
  int fd = -1;
  uint32_t gen = 0;  // tells a slot's current request from the one a stale deadline is for
  bool sent = false;
  bool headers_done = false;
  long content_length = -1;  // -1: none given, read to the server's close
  size_t have = 0;           // bytes in buf (headers, then only counted)
  size_t body = 0;
  size_t body_start = 0;
  char buf[kBuf];
};

struct Deadline {
  int64_t at;
  uint32_t slot, gen;
};

enum class Outcome { kOk, kFail, kTimeout };

// Parses what is in c.buf once the blank line has arrived: false on a malformed
// or non-200 answer.
bool parse_headers(Conn& c) {
  std::string_view v(c.buf, c.have);
  size_t end = v.find("\r\n\r\n");
  if (end == std::string_view::npos) return true;  // not yet
  c.headers_done = true;
  c.body_start = end + 4;
  c.body = c.have - c.body_start;
  std::string_view status = v.substr(0, v.find("\r\n"));
  if (!(status.starts_with("HTTP/1.1 200") || status.starts_with("HTTP/1.0 200"))) return false;
  std::string_view headers = v.substr(0, end);
  for (size_t pos = headers.find("\r\n"); pos != std::string_view::npos;) {
    size_t next = headers.find("\r\n", pos + 2);
    std::string_view line = headers.substr(
        pos + 2, next == std::string_view::npos ? std::string_view::npos : next - pos - 2);
    constexpr std::string_view kName = "content-length:";
    if (line.size() > kName.size()) {
      bool match = true;
      for (size_t i = 0; i < kName.size() && match; ++i) match = (line[i] | 0x20) == kName[i];
      if (match) {
        size_t at = line.find_first_not_of(" \t", kName.size());
        if (at == std::string_view::npos) return false;
        long len = -1;
        auto [end_ptr, ec] = std::from_chars(line.data() + at, line.data() + line.size(), len);
        if (ec != std::errc() || len < 0) return false;
        c.content_length = len;
      }
    }
    pos = next;
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  int port = 0, max_inflight = 1000, cpu_pid = 0;
  long rate = 1000, timeout_ms = 1000;
  double warmup = 2, duration = 30;
  std::string path = "/health";
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (i + 1 >= argc) {
      port = 0;  // every option takes a value: refuse below
      break;
    }
    const char* v = argv[++i];
    if (a == "--port")
      port = std::atoi(v);
    else if (a == "--path")
      path = v;
    else if (a == "--rate")
      rate = std::atol(v);
    else if (a == "--warmup")
      warmup = std::atof(v);
    else if (a == "--duration")
      duration = std::atof(v);
    else if (a == "--timeout-ms")
      timeout_ms = std::atol(v);
    else if (a == "--max-inflight")
      max_inflight = std::atoi(v);
    else if (a == "--cpu-pid")
      cpu_pid = std::atoi(v);
    else
      port = 0;
  }
  // Every bound keeps the loop finite in count and time.
  if (port <= 0 || port > 65535 || rate < 1 || rate > 20000 || warmup < 0 || warmup > 300 ||
      duration <= 0 || duration > 600 || timeout_ms < 1 || timeout_ms > 60000 || max_inflight < 1 ||
      max_inflight > 20000 || path.empty() || path[0] != '/' || path.size() > 512 || cpu_pid < 0) {
    std::fprintf(
        stderr,
        "usage: get_floor --port P [--path /health] [--rate N<=20000] [--warmup S<=300] "
        "[--duration S<=600] [--timeout-ms MS] [--max-inflight N<=20000] [--cpu-pid PID]\n");
    return 2;
  }
  const std::string request =
      "GET " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);

  const int ep = epoll_create1(EPOLL_CLOEXEC);
  const int timer = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
  if (ep < 0 || timer < 0) die("epoll/timerfd");
  const int64_t period = 1'000'000'000 / rate;
  const int64_t t0 = now_ns() + 1'000'000;
  itimerspec spec{};
  spec.it_value = {static_cast<time_t>(t0 / 1'000'000'000), static_cast<long>(t0 % 1'000'000'000)};
  spec.it_interval = {static_cast<time_t>(period / 1'000'000'000),
                      static_cast<long>(period % 1'000'000'000)};
  if (timerfd_settime(timer, TFD_TIMER_ABSTIME, &spec, nullptr) != 0) die("timerfd_settime");
  epoll_event tev{};
  tev.events = EPOLLIN;
  tev.data.u64 = UINT64_MAX;
  if (epoll_ctl(ep, EPOLL_CTL_ADD, timer, &tev) != 0) die("epoll_ctl timer");

  // All connection state is allocated up front: a slot per request in flight.
  std::vector<Conn> slots(static_cast<size_t>(max_inflight));
  std::vector<uint32_t> free_slots;
  for (int i = max_inflight - 1; i >= 0; --i) free_slots.push_back(static_cast<uint32_t>(i));
  std::deque<Deadline> deadlines;  // in launch order; every request has the same timeout

  const int64_t win_start = t0 + static_cast<int64_t>(warmup * 1e9);
  const int64_t win_end = win_start + static_cast<int64_t>(duration * 1e9);
  const int64_t total = static_cast<int64_t>((warmup + duration) * static_cast<double>(rate));
  const int64_t timeout_ns = timeout_ms * 1'000'000;
  // After the last launch, what is in flight gets its timeout to end, then we stop regardless.
  const int64_t hard_end = win_end + timeout_ns + 1'000'000'000;

  int64_t launched = 0, skipped = 0, catch_up = 0;
  long ok = 0, failed = 0, timed_out = 0, connect_errors = 0;
  bool in_window = false, window_over = false;
  Cpu cpu0{}, cpu1{};
  long long peer0 = -1, peer1 = -1;
  int64_t wall0 = 0, wall1 = 0;

  auto finish = [&](uint32_t id, Outcome o) {
    Conn& c = slots[id];
    close(c.fd);  // also takes it out of the epoll set
    c.fd = -1;
    ++c.gen;
    free_slots.push_back(id);
    if (!in_window) return;
    if (o == Outcome::kOk)
      ++ok;
    else if (o == Outcome::kTimeout)
      ++timed_out;
    else
      ++failed;
  };

  // Reads what is there (edge-triggered: until EAGAIN) and ends the request when
  // the response is complete or broken.
  auto on_readable = [&](uint32_t id) {
    Conn& c = slots[id];
    for (;;) {
      char* dst = c.headers_done ? c.buf : c.buf + c.have;
      size_t room = c.headers_done ? kBuf : kBuf - c.have;
      if (room == 0) return finish(id, Outcome::kFail);  // headers too big for the floor
      ssize_t n = recv(c.fd, dst, room, 0);
      if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK) return;
        if (errno == EINTR) continue;
        return finish(id, Outcome::kFail);
      }
      if (n == 0) {  // the server closed: complete if the body is
        bool complete = c.headers_done &&
                        (c.content_length < 0 || c.body >= static_cast<size_t>(c.content_length));
        return finish(id, complete ? Outcome::kOk : Outcome::kFail);
      }
      if (c.headers_done) {
        c.body += static_cast<size_t>(n);
      } else {
        c.have += static_cast<size_t>(n);
        if (!parse_headers(c)) return finish(id, Outcome::kFail);
      }
      // Content-Length satisfied: no need to wait for the server's FIN.
      if (c.headers_done && c.content_length >= 0 &&
          c.body >= static_cast<size_t>(c.content_length))
        return finish(id, Outcome::kOk);
    }
  };

  auto send_request = [&](uint32_t id) {
    Conn& c = slots[id];
    ssize_t n = send(c.fd, request.data(), request.size(), MSG_NOSIGNAL);
    if (n == static_cast<ssize_t>(request.size())) {
      c.sent = true;
      return true;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return true;  // still connecting
    if (in_window) ++connect_errors;
    finish(id, Outcome::kFail);  // a short send of ~60 bytes on loopback does not happen
    return false;
  };

  auto launch = [&](int64_t now) {
    if (free_slots.empty()) {
      if (in_window) ++skipped;
      return;
    }
    uint32_t id = free_slots.back();
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      if (in_window) ++failed;
      return;
    }
    free_slots.pop_back();
    Conn& c = slots[id];
    c.fd = fd;
    c.sent = c.headers_done = false;
    c.content_length = -1;
    c.have = c.body = c.body_start = 0;
    int rc = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    if (rc != 0 && errno != EINPROGRESS) {
      if (in_window) ++connect_errors;
      return finish(id, Outcome::kFail);
    }
    // One registration for the whole exchange: edge-triggered, writable for the
    // connect's end, readable for the response, so no EPOLL_CTL_MOD is needed.
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
    ev.data.u64 = (static_cast<uint64_t>(c.gen) << 32) | id;
    if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0) die("epoll_ctl add");
    // On loopback the handshake often completes inside connect() itself.
    if (rc == 0 && !send_request(id)) return;
    deadlines.push_back({now + timeout_ns, id, c.gen});
  };

  std::vector<epoll_event> events(1024);
  for (;;) {
    int64_t now = now_ns();
    if (now >= hard_end || (launched >= total && deadlines.empty())) break;
    // Wake for the window's end and the oldest deadline even with nothing to read.
    int64_t wake = now + 100'000'000;
    if (!window_over) wake = std::min(wake, win_end);
    if (!deadlines.empty()) wake = std::min(wake, deadlines.front().at);
    int wait_ms = static_cast<int>(std::max<int64_t>(0, (wake - now + 999'999) / 1'000'000));
    int n = epoll_wait(ep, events.data(), static_cast<int>(events.size()), wait_ms);
    if (n < 0) {
      if (errno == EINTR) continue;
      die("epoll_wait");
    }
    now = now_ns();
    if (!in_window && !window_over && now >= win_start) {
      in_window = true;
      cpu0 = cpu_now();
      if (cpu_pid > 0) peer0 = proc_cpu_ticks(cpu_pid);
      wall0 = now;
    }
    for (int i = 0; i < n; ++i) {
      const uint64_t key = events[i].data.u64;
      if (key == UINT64_MAX) {
        uint64_t ticks = 0;
        if (read(timer, &ticks, sizeof ticks) < 0 && errno != EAGAIN) die("timerfd read");
        // Every request due by now goes out, whatever the tick count says.
        int64_t due = std::min<int64_t>(total, (now - t0) / period + 1);
        // More than one due at a tick means this thread was late (descheduled).
        if (due - launched > 1) catch_up += due - launched - 1;
        while (launched < due && now < win_end) {
          launch(now);
          ++launched;
        }
        if (now >= win_end || launched >= total) {  // launch no more; let the rest end
          launched = total;
          itimerspec off{};
          timerfd_settime(timer, 0, &off, nullptr);
        }
        continue;
      }
      const uint32_t id = static_cast<uint32_t>(key);
      if (id >= slots.size() || slots[id].fd < 0 || slots[id].gen != key >> 32) continue;
      Conn& c = slots[id];
      if (events[i].events & EPOLLERR) {
        if (in_window) ++connect_errors;
        finish(id, Outcome::kFail);
        continue;
      }
      if (!c.sent && (events[i].events & EPOLLOUT)) {
        if (!send_request(id)) continue;
      }
      if (c.sent && (events[i].events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP))) on_readable(id);
    }
    while (!deadlines.empty()) {
      const Deadline& d = deadlines.front();
      const Conn& c = slots[d.slot];
      if (c.fd >= 0 && c.gen == d.gen) {
        if (d.at > now) break;
        finish(d.slot, Outcome::kTimeout);
      }
      deadlines.pop_front();
    }
    if (in_window && now >= win_end) {
      cpu1 = cpu_now();
      if (cpu_pid > 0) peer1 = proc_cpu_ticks(cpu_pid);
      wall1 = now;
      in_window = false;
      window_over = true;
    }
  }
  if (!window_over) {  // stopped by hard_end inside the window: measure what there was
    cpu1 = cpu_now();
    if (cpu_pid > 0) peer1 = proc_cpu_ticks(cpu_pid);
    wall1 = now_ns();
  }
  for (Conn& c : slots)
    if (c.fd >= 0) close(c.fd);

  const double wall = static_cast<double>(wall1 - wall0) / 1e9;
  const long done = ok + failed + timed_out;
  const double user = cpu1.user - cpu0.user, sys = cpu1.sys - cpu0.sys;
  auto per = [&](double s) { return done ? s / static_cast<double>(done) * 1e6 : 0.0; };
  const double peer = peer0 >= 0 && peer1 >= 0 ? static_cast<double>(peer1 - peer0) /
                                                     static_cast<double>(sysconf(_SC_CLK_TCK))
                                               : -1.0;
  std::printf(
      "{\"requests\":%ld,\"ok\":%ld,\"failures\":%ld,\"timeouts\":%ld,\"connect_errors\":%ld,"
      "\"skipped\":%lld,\"catch_up_launches\":%lld,\"rate\":%ld,\"achieved_rate\":%.1f,"
      "\"wall_seconds\":%.3f,\"cpu_seconds\":%.4f,\"cpu_us_per_request\":%.2f,"
      "\"user_us_per_request\":%.2f,\"sys_us_per_request\":%.2f,\"cpu_pid_seconds\":%.2f,"
      "\"cpu_pid_us_per_request\":%.2f}\n",
      done, ok, failed + timed_out, timed_out, connect_errors, static_cast<long long>(skipped),
      static_cast<long long>(catch_up), rate, wall > 0 ? static_cast<double>(done) / wall : 0.0,
      wall, user + sys, per(user + sys), per(user), per(sys), peer, peer >= 0 ? per(peer) : -1.0);
  return 0;
}
