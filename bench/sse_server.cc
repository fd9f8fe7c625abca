// sse_server: the punctual event stream of bench/bench_stream_timing.py.
// Any POST (headers and a Content-Length body) is answered with a 200
// text/event-stream whose events go out at known times after the request
// arrived (t0: the kernel's receive stamp of its first bytes): event k at
// t0 + first + k * every, k = 0 .. N-1 (`event: delta`, a chat completion's
// token), then `event: done` one step later, then the connection closes.
// One epoll loop and one timerfd armed at the earliest deadline (absolute,
// CLOCK_MONOTONIC, nanoseconds), so each event leaves within microseconds
// of its deadline on an idle machine. Each event's data carries its index
// and the server's send timestamp: {"k":K,"sent_ns":NS,"late_ns":L}.
//
//   sse_server [--first-ms 50] [--every-ms 20] [--events 25]
//              [--max-conns N] [--max-seconds S] [--ready-file F]
//
// Listens on 127.0.0.1 and a port the OS picks; prints "READY <port>" on
// stdout (and to --ready-file) once bound. GET /_stats answers its own
// lateness (send time minus deadline: "late_p50_us", "late_p99_us",
// "late_max_us") and how long requests waited in the kernel before it read
// them ("read_delay_p50_us", "read_delay_p99_us"). GET /_streams answers
// what each finished stream (by its request's ?i=N) really did, by the send
// times, and forgets them: {"N": [first event - t0, last - first, largest
// gap, events] (ns)}, so the bench tells canaryd's error from the server's
// lateness. Exits on SIGTERM/SIGINT, or by itself after --max-seconds
// (default 900).
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <queue>
#include <string>
#include <unordered_map>
#include <vector>

#include "server_tool.h"

namespace {

[[noreturn]] void die(const char* what) { bench::die("sse_server", what); }

int64_t now_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

constexpr size_t kMaxRequest = 64 * 1024;

struct Conn {
  int fd = -1;
  std::string in;
  bool streaming = false;
  long stream = -1;  // the request's ?i=N: the bench's probe
  int64_t t0 = 0, first = 0, last = 0, max_gap = 0;
  int64_t arrived_real = 0;  // CLOCK_REALTIME, from the kernel; 0: unknown
  int sent = 0;
};

struct Due {
  int64_t at;
  uint64_t conn;
  int k;
  bool operator>(const Due& o) const { return at > o.at; }
};

class Server {
 public:
  Server(int listen_fd, int64_t first_ns, int64_t every_ns, int events, long max_conns)
      : listen_fd_(listen_fd),
        first_ns_(first_ns),
        every_ns_(every_ns),
        events_(events),
        max_conns_(max_conns) {
    ep_ = epoll_create1(EPOLL_CLOEXEC);
    timer_ = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (ep_ < 0 || timer_ < 0) die("epoll/timerfd");
    watch(listen_fd_, EPOLLIN, kListen);
    watch(timer_, EPOLLIN, kTimer);
  }

  void run(int64_t until) {
    epoll_event evs[256];
    while (!bench::g_stop && now_ns() < until) {
      int n = epoll_wait(ep_, evs, 256, 200);
      if (n < 0 && errno != EINTR) die("epoll_wait");
      for (int i = 0; i < n; ++i) {
        uint64_t key = evs[i].data.u64;
        if (key == kListen) {
          accept_all();
        } else if (key == kTimer) {
          uint64_t ticks;
          if (read(timer_, &ticks, sizeof ticks) < 0 && errno != EAGAIN) die("timerfd read");
          fire_due();
        } else if (auto it = conns_.find(key); it != conns_.end()) {
          on_readable(key, *it->second);
        }
      }
    }
  }

 private:
  static constexpr uint64_t kListen = 0, kTimer = 1;

  void watch(int fd, uint32_t events, uint64_t key) {
    epoll_event ev{};
    ev.events = events;
    ev.data.u64 = key;
    if (epoll_ctl(ep_, EPOLL_CTL_ADD, fd, &ev) < 0) die("epoll_ctl");
  }

  void accept_all() {
    for (;;) {
      int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) return;
      if (static_cast<long>(conns_.size()) >= max_conns_) {
        close(fd);
        continue;
      }
      int one = 1;
      setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPNS, &one, sizeof one);
      auto c = std::make_unique<Conn>();
      c->fd = fd;
      uint64_t id = next_id_++;
      watch(fd, EPOLLIN, id);
      conns_.emplace(id, std::move(c));
    }
  }

  void drop(uint64_t id) {
    auto it = conns_.find(id);
    if (it == conns_.end()) return;
    close(it->second->fd);  // also leaves the epoll set
    conns_.erase(it);
  }

  // The events are a few hundred bytes on an idle loopback socket: a short
  // write would mean a client that stopped reading, which the bench drops.
  bool send_all(Conn& c, const std::string& bytes) {
    return write(c.fd, bytes.data(), bytes.size()) == static_cast<ssize_t>(bytes.size());
  }

  void on_readable(uint64_t id, Conn& c) {
    char buf[16384];
    for (;;) {
      // The kernel's receive time of the request's first bytes (SO_TIMESTAMPNS).
      char control[CMSG_SPACE(sizeof(timespec))];
      iovec iov{buf, sizeof buf};
      msghdr msg{};
      msg.msg_iov = &iov;
      msg.msg_iovlen = 1;
      msg.msg_control = control;
      msg.msg_controllen = sizeof control;
      ssize_t n = recvmsg(c.fd, &msg, 0);
      if (n > 0 && c.in.empty() && !c.streaming) {
        for (cmsghdr* m = CMSG_FIRSTHDR(&msg); m != nullptr; m = CMSG_NXTHDR(&msg, m)) {
          if (m->cmsg_level == SOL_SOCKET && m->cmsg_type == SCM_TIMESTAMPNS) {
            timespec ts{};
            std::memcpy(&ts, CMSG_DATA(m), sizeof ts);
            c.arrived_real = static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
          }
        }
      }
      if (n > 0) {
        if (!c.streaming) c.in.append(buf, static_cast<size_t>(n));
        continue;
      }
      if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) return drop(id);
      break;
    }
    if (c.streaming) return;
    size_t head_end = c.in.find("\r\n\r\n");
    if (head_end == std::string::npos) {
      if (c.in.size() > kMaxRequest) drop(id);
      return;
    }
    size_t body = 0;
    for (const char* name : {"\r\nContent-Length:", "\r\ncontent-length:"}) {
      size_t at = c.in.find(name);
      if (at != std::string::npos && at < head_end)
        body = std::strtoul(c.in.c_str() + at + std::strlen(name), nullptr, 10);
    }
    if (c.in.size() < head_end + 4 + body) return;
    if (c.in.rfind("GET /_streams", 0) == 0) {
      send_all(c, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n" +
                      streams_json());
      return drop(id);
    }
    if (size_t q = c.in.find("?i="); q != std::string::npos && q < c.in.find("\r\n"))
      c.stream = std::strtol(c.in.c_str() + q + 3, nullptr, 10);
    if (c.in.rfind("GET /_stats", 0) == 0) {
      send_all(c, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n" +
                      stats_json());
      return drop(id);
    }
    // The schedule starts once the whole request is in, as a platform's
    // would: what came before it is the request's own transit.
    // The schedule starts when the request arrived (the kernel's stamp of
    // its first bytes, moved to CLOCK_MONOTONIC), not when this loop got to
    // it: with 200 requests at once, reading the last is the server's own
    // delay, which shows as its lateness rather than as the client's error.
    const int64_t now = now_ns();
    int64_t t0 = now;
    if (c.arrived_real != 0) {
      timespec real{};
      clock_gettime(CLOCK_REALTIME, &real);
      int64_t waited =
          static_cast<int64_t>(real.tv_sec) * 1'000'000'000 + real.tv_nsec - c.arrived_real;
      if (waited >= 0 && waited < 1'000'000'000) t0 = now - waited;
    }
    read_delay_us_.push_back(static_cast<double>(now - t0) / 1e3);
    c.t0 = t0;
    c.streaming = true;
    c.in.clear();
    ++streams_;
    if (!send_all(c,
                  "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: "
                  "no-cache\r\nConnection: close\r\n\r\n"))
      return drop(id);
    for (int k = 0; k <= events_; ++k) due_.push({t0 + first_ns_ + k * every_ns_, id, k});
    arm();
  }

  void arm() {
    if (due_.empty()) return;
    itimerspec spec{};
    spec.it_value.tv_sec = due_.top().at / 1'000'000'000;
    spec.it_value.tv_nsec = due_.top().at % 1'000'000'000;
    timerfd_settime(timer_, TFD_TIMER_ABSTIME, &spec, nullptr);
  }

  void fire_due() {
    char data[160];
    while (!due_.empty() && due_.top().at <= now_ns()) {
      Due d = due_.top();
      due_.pop();
      auto it = conns_.find(d.conn);
      if (it == conns_.end()) continue;
      const int64_t sent = now_ns();
      const int64_t late = sent - d.at;
      std::snprintf(data, sizeof data,
                    "event: %s\ndata: {\"k\":%d,\"sent_ns\":%lld,\"late_ns\":%lld}\n\n",
                    d.k < events_ ? "delta" : "done", d.k, static_cast<long long>(sent),
                    static_cast<long long>(late));
      late_us_.push_back(static_cast<double>(late) / 1e3);
      ++sent_events_;
      Conn& c = *it->second;
      if (c.sent++ == 0)
        c.first = sent;
      else
        c.max_gap = std::max(c.max_gap, sent - c.last);
      c.last = sent;
      if (!send_all(c, data)) {
        drop(d.conn);
      } else if (d.k == events_) {
        if (c.stream >= 0)
          actual_[c.stream] = {c.first - c.t0, c.last - c.first, c.max_gap, c.sent};
        drop(d.conn);
      }
    }
    arm();
  }

  std::string streams_json() {
    std::string out = "{";
    char item[128];
    for (const auto& [i, a] : actual_) {
      std::snprintf(item, sizeof item, "%s\"%ld\":[%lld,%lld,%lld,%lld]", out.size() > 1 ? "," : "",
                    i, static_cast<long long>(a[0]), static_cast<long long>(a[1]),
                    static_cast<long long>(a[2]), static_cast<long long>(a[3]));
      out += item;
    }
    actual_.clear();
    return out + "}";
  }

  static std::pair<double, double> p50_p99(std::vector<double> v) {
    if (v.empty()) return {0, 0};
    std::sort(v.begin(), v.end());
    auto at = [&](double q) {
      return v[std::min(v.size() - 1, static_cast<size_t>(q * v.size()))];
    };
    return {at(0.5), at(0.99)};
  }

  std::string stats_json() {
    auto [late50, late99] = p50_p99(late_us_);
    auto [read50, read99] = p50_p99(read_delay_us_);
    char out[320];
    std::snprintf(out, sizeof out,
                  R"({"streams":%llu,"events":%llu,"late_p50_us":%.1f,"late_p99_us":%.1f,)"
                  R"("late_max_us":%.1f,"read_delay_p50_us":%.1f,"read_delay_p99_us":%.1f})",
                  static_cast<unsigned long long>(streams_),
                  static_cast<unsigned long long>(sent_events_), late50, late99,
                  late_us_.empty() ? 0.0 : *std::max_element(late_us_.begin(), late_us_.end()),
                  read50, read99);
    return out;
  }

  int listen_fd_;
  int ep_ = -1;
  int timer_ = -1;
  int64_t first_ns_, every_ns_;
  int events_;
  long max_conns_;
  uint64_t next_id_ = 2;
  std::unordered_map<uint64_t, std::unique_ptr<Conn>> conns_;
  std::priority_queue<Due, std::vector<Due>, std::greater<Due>> due_;
  std::vector<double> late_us_;
  std::vector<double> read_delay_us_;  // request arrival to this loop reading it
  std::unordered_map<long, std::array<int64_t, 4>> actual_;
  uint64_t streams_ = 0, sent_events_ = 0;
};

}  // namespace

int main(int argc, char** argv) {
  // Its own three options first; the rest are the bench servers' common ones.
  double first_ms = 50, every_ms = 20;
  int events = 25;
  std::vector<char*> rest = {argv[0]};
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if ((a == "--first-ms" || a == "--every-ms" || a == "--events") && i + 1 < argc) {
      double v = std::atof(argv[++i]);
      if (a == "--first-ms") first_ms = v;
      if (a == "--every-ms") every_ms = v;
      if (a == "--events") events = static_cast<int>(v);
    } else {
      rest.push_back(argv[i]);
    }
  }
  bench::ServerArgs args;
  if (!bench::parse_server_args("sse_server", static_cast<int>(rest.size()), rest.data(), false,
                                args))
    return 2;
  if (first_ms < 0 || every_ms <= 0 || events < 1 || events > 100000) {
    std::fprintf(stderr, "sse_server: bad --first-ms, --every-ms or --events\n");
    return 2;
  }
  bench::install_stop_signals();
  // The default 50 us of timer slack would be lateness of our own.
  prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
  int port = 0;
  int fd = bench::listen_loopback("sse_server", &port);
  Server server(fd, static_cast<int64_t>(first_ms * 1e6), static_cast<int64_t>(every_ms * 1e6),
                events, args.max_conns);
  bench::announce_ready("sse_server", "READY " + std::to_string(port), args.ready_file);
  server.run(now_ns() + static_cast<int64_t>(args.max_seconds * 1e9));
  return 0;
}
