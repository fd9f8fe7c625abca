// agent_server: the scripted agent of benchmark (g), punctual. It plays the
// fixture's `agent=happy` script (tests/fixtures/fake_platform.py) on
// /ws?agent=happy&event_delay_ms=D[&first_event_delay_ms=F], with the same
// frames, but sends each event at its deadline to a few microseconds: one
// epoll loop, and one timerfd armed at the earliest deadline (absolute,
// CLOCK_MONOTONIC, nanoseconds).
//
// Why not the fixture: Python's event loop wakes on whole milliseconds, and
// on 2 cores three fixture processes, canaryd and the capture fight for CPU;
// the fixture was late by 1.3 ms at the median and by tens of ms at the max.
// That lateness is the target's, not canaryd's, yet "error against the
// injected delay" counts it. This server's own lateness (send time minus
// deadline, measured here) is reported next to it.
//
//   agent_server [--max-conns N] [--max-seconds S] [--ready-file F]
//
// Listens on 127.0.0.1 and a port the OS picks; prints "READY <port>" on
// stdout (and to --ready-file) once bound. Also answers GET /_ws_stats with
// the fixture's counter names, so the benchmark reads both the same way.
// Exits on SIGTERM/SIGINT, or by itself after --max-seconds (default 900).
//
// A bench tool, not a WebSocket server: it takes the client's first text
// message as the start of the script (its "thread_id" copied into every
// event), answers ping and close, and drops anything it does not expect.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/sha.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <queue>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "server_tool.h"

namespace {

[[noreturn]] void die(const char* what) { bench::die("agent_server", what); }

int64_t now_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

constexpr size_t kMaxRequest = 16 * 1024;
constexpr size_t kMaxMessage = 64 * 1024;

// The happy script's events, as the fixture sends them (json.dumps with
// separators=(",", ":")): {"type":...,"thread_id":...,"data":{...}}.
constexpr std::pair<const char*, const char*> kEvents[] = {
    {"agent_started", R"({"agent_name":"fake-agent"})"},
    {"agent_thinking", R"({"thought":"looking up canary"})"},
    {"tool_executing", R"({"tool_name":"search"})"},
    {"tool_completed", R"({"tool_name":"search","results":[{"title":"canary"}]})"},
    {"agent_completed", R"({"response":"canary pong"})"},
};
constexpr int kSteps = sizeof kEvents / sizeof kEvents[0];

std::string base64(const unsigned char* data, size_t n) {
  static const char* abc = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  for (size_t i = 0; i < n; i += 3) {
    uint32_t v = static_cast<uint32_t>(data[i]) << 16;
    if (i + 1 < n) v |= static_cast<uint32_t>(data[i + 1]) << 8;
    if (i + 2 < n) v |= data[i + 2];
    out += abc[(v >> 18) & 63];
    out += abc[(v >> 12) & 63];
    out += i + 1 < n ? abc[(v >> 6) & 63] : '=';
    out += i + 2 < n ? abc[v & 63] : '=';
  }
  return out;
}

// An unmasked server frame.
std::string frame(int opcode, std::string_view payload) {
  std::string f;
  f += static_cast<char>(0x80 | opcode);
  size_t n = payload.size();
  if (n < 126) {
    f += static_cast<char>(n);
  } else if (n < 65536) {
    f += static_cast<char>(126);
    f += static_cast<char>(n >> 8);
    f += static_cast<char>(n & 0xff);
  } else {
    f += static_cast<char>(127);
    for (int i = 7; i >= 0; --i) f += static_cast<char>((n >> (8 * i)) & 0xff);
  }
  f.append(payload);
  return f;
}

// The value of a header (case-insensitive name) in a request head, or "".
std::string header(std::string_view head, std::string_view name) {
  size_t pos = 0;
  while ((pos = head.find("\r\n", pos)) != std::string_view::npos) {
    pos += 2;
    if (head.size() - pos < name.size() + 1) break;
    bool same = true;
    for (size_t i = 0; i < name.size() && same; ++i)
      same = std::tolower(static_cast<unsigned char>(head[pos + i])) ==
             std::tolower(static_cast<unsigned char>(name[i]));
    if (!same || head[pos + name.size()] != ':') continue;
    size_t v = pos + name.size() + 1;
    size_t end = head.find("\r\n", v);
    while (v < end && head[v] == ' ') ++v;
    return std::string(head.substr(v, end - v));
  }
  return "";
}

// A query parameter's integer value, or `fallback`.
long query_int(std::string_view target, std::string_view name, long fallback) {
  size_t q = target.find('?');
  if (q == std::string_view::npos) return fallback;
  std::string_view query = target.substr(q + 1);
  while (!query.empty()) {
    size_t amp = query.find('&');
    std::string_view pair = query.substr(0, amp);
    if (pair.size() > name.size() && pair.substr(0, name.size()) == name &&
        pair[name.size()] == '=')
      return std::atol(std::string(pair.substr(name.size() + 1)).c_str());
    if (amp == std::string_view::npos) break;
    query.remove_prefix(amp + 1);
  }
  return fallback;
}

struct Conn {
  uint64_t id = 0;
  int fd = -1;
  bool websocket = false;
  bool script_started = false;
  bool closing = false;  // close frame sent: write out, then close
  int next_step = 0;
  int64_t t0 = 0, first_ns = 0, delay_ns = 0;
  std::string thread_id;  // JSON text of the value, quotes included
  std::string in, out;
};

struct Due {
  int64_t at;
  uint64_t conn;
  int step;
  bool operator>(const Due& o) const { return at > o.at; }
};

struct Stats {
  uint64_t attempts_total = 0, agent_sessions = 0, agent_events = 0, client_closes = 0, eofs = 0,
           protocol_errors = 0, refused = 0;
  uint64_t late_n = 0, late_over_1ms = 0;
  double late_sum_us = 0, late_max_us = 0;
};

class Server {
 public:
  Server(int listen_fd, long max_conns) : listen_fd_(listen_fd), max_conns_(max_conns) {
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
        } else {
          auto it = conns_.find(key);
          if (it == conns_.end()) continue;
          if (evs[i].events & EPOLLOUT) flush(*it->second);
          if (conns_.count(key) && (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
            on_readable(*conns_.at(key));
        }
      }
    }
  }

  void print_counters() const {
    std::fprintf(stderr,
                 "agent_server: sessions=%llu events=%llu late_max_us=%.0f late_mean_us=%.1f\n",
                 static_cast<unsigned long long>(stats_.agent_sessions),
                 static_cast<unsigned long long>(stats_.agent_events), stats_.late_max_us,
                 stats_.late_n ? stats_.late_sum_us / static_cast<double>(stats_.late_n) : 0.0);
  }

 private:
  static constexpr uint64_t kListen = 0, kTimer = 1;

  void watch(int fd, uint32_t events, uint64_t key, int op = EPOLL_CTL_ADD) {
    epoll_event ev{};
    ev.events = events;
    ev.data.u64 = key;
    if (epoll_ctl(ep_, op, fd, &ev) < 0) die("epoll_ctl");
  }

  void accept_all() {
    for (;;) {
      int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK) return;
        if (errno == EMFILE || errno == ENFILE) return;
        continue;
      }
      if (static_cast<long>(conns_.size()) >= max_conns_) {
        ++stats_.refused;
        close(fd);
        continue;
      }
      int one = 1;
      setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      auto c = std::make_unique<Conn>();
      c->id = next_id_++;
      c->fd = fd;
      watch(fd, EPOLLIN, c->id);
      conns_.emplace(c->id, std::move(c));
    }
  }

  void drop(Conn& c) {
    if (c.websocket) --open_ws_;
    if (c.script_started && c.next_step < kSteps) --running_;
    close(c.fd);  // also leaves the epoll set
    conns_.erase(c.id);
  }

  void send(Conn& c, std::string_view bytes) {
    if (c.out.empty()) {
      ssize_t n = write(c.fd, bytes.data(), bytes.size());
      if (n == static_cast<ssize_t>(bytes.size())) return;
      if (n < 0 && errno != EAGAIN) return;  // the read side sees the error
      bytes.remove_prefix(n < 0 ? 0 : static_cast<size_t>(n));
      watch(c.fd, EPOLLIN | EPOLLOUT, c.id, EPOLL_CTL_MOD);
    }
    c.out.append(bytes);
  }

  void flush(Conn& c) {
    while (!c.out.empty()) {
      ssize_t n = write(c.fd, c.out.data(), c.out.size());
      if (n < 0) {
        if (errno == EAGAIN) return;
        drop(c);
        return;
      }
      c.out.erase(0, static_cast<size_t>(n));
    }
    if (c.closing) {
      drop(c);
      return;
    }
    watch(c.fd, EPOLLIN, c.id, EPOLL_CTL_MOD);
  }

  void on_readable(Conn& c) {
    char buf[16384];
    for (;;) {
      ssize_t n = read(c.fd, buf, sizeof buf);
      if (n == 0) {
        ++stats_.eofs;
        drop(c);
        return;
      }
      if (n < 0) {
        if (errno == EAGAIN) break;
        drop(c);
        return;
      }
      c.in.append(buf, static_cast<size_t>(n));
      if (c.in.size() > kMaxRequest + kMaxMessage) {
        ++stats_.protocol_errors;
        drop(c);
        return;
      }
    }
    if (!c.websocket) {
      on_request(c);
    } else {
      on_frames(c);
    }
  }

  void respond_and_close(Conn& c, const char* status, const std::string& body) {
    std::string r = std::string("HTTP/1.1 ") + status +
                    "\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: " +
                    std::to_string(body.size()) + "\r\n\r\n" + body;
    c.closing = true;
    send(c, r);
    if (c.out.empty()) drop(c);
  }

  void on_request(Conn& c) {
    size_t end = c.in.find("\r\n\r\n");
    if (end == std::string::npos) return;
    std::string head = c.in.substr(0, end + 2);
    c.in.erase(0, end + 4);
    size_t sp1 = head.find(' '), sp2 = head.find(' ', sp1 + 1);
    std::string target = head.substr(sp1 + 1, sp2 - sp1 - 1);
    if (target.rfind("/_ws_stats", 0) == 0) {
      respond_and_close(c, "200 OK", stats_json());
      return;
    }
    ++stats_.attempts_total;
    std::string key = header(head, "Sec-WebSocket-Key");
    if (target.rfind("/ws?", 0) != 0 || target.find("agent=happy") == std::string::npos ||
        key.empty()) {
      respond_and_close(c, "400 Bad Request",
                        R"({"error":"agent_server plays /ws?agent=happy only"})");
      return;
    }
    c.delay_ns = query_int(target, "event_delay_ms", 100) * 1'000'000;
    c.first_ns = query_int(target, "first_event_delay_ms", c.delay_ns / 1'000'000) * 1'000'000;
    std::string accept_src = key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    unsigned char digest[SHA_DIGEST_LENGTH];
    SHA1(reinterpret_cast<const unsigned char*>(accept_src.data()), accept_src.size(), digest);
    std::string r =
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Accept: " +
        base64(digest, sizeof digest) + "\r\n";
    std::string offered = header(head, "Sec-WebSocket-Protocol");
    if (!offered.empty())
      r += "Sec-WebSocket-Protocol: " + offered.substr(0, offered.find(',')) + "\r\n";
    r += "\r\n";
    c.websocket = true;
    ++open_ws_;
    send(c, r);
    on_frames(c);
  }

  // Parses whole client frames (masked) out of c.in.
  void on_frames(Conn& c) {
    for (;;) {
      if (c.in.size() < 2) return;
      auto b = reinterpret_cast<const unsigned char*>(c.in.data());
      int opcode = b[0] & 0x0f;
      bool masked = b[1] & 0x80;
      uint64_t len = b[1] & 0x7f;
      size_t pos = 2;
      if (len == 126) {
        if (c.in.size() < 4) return;
        len = (static_cast<uint64_t>(b[2]) << 8) | b[3];
        pos = 4;
      } else if (len == 127) {
        if (c.in.size() < 10) return;
        len = 0;
        for (int i = 0; i < 8; ++i) len = (len << 8) | b[2 + i];
        pos = 10;
      }
      if (!masked || len > kMaxMessage) {
        ++stats_.protocol_errors;
        drop(c);
        return;
      }
      if (c.in.size() < pos + 4 + len) return;
      std::string payload = c.in.substr(pos + 4, len);
      for (size_t i = 0; i < payload.size(); ++i) payload[i] ^= c.in[pos + (i % 4)];
      c.in.erase(0, pos + 4 + len);
      if (opcode == 0x8) {  // close: answer with the same code, then hang up
        ++stats_.client_closes;
        c.closing = true;
        send(c, frame(0x8, payload.substr(0, std::min<size_t>(payload.size(), 2))));
        if (c.out.empty()) drop(c);
        return;
      }
      if (opcode == 0x9) {
        send(c, frame(0xA, payload));
      } else if (opcode == 0x1 && !c.script_started) {
        start_script(c, payload);
      }
    }
  }

  void start_script(Conn& c, const std::string& message) {
    c.t0 = now_ns();
    c.script_started = true;
    ++stats_.agent_sessions;
    ++running_;
    // payload.thread_id of {"type":"user_message","payload":{...,"thread_id":"..."}}:
    // canaryd's run ids need no JSON unescaping.
    c.thread_id = "null";
    size_t k = message.find("\"thread_id\"");
    if (k != std::string::npos) {
      size_t q1 = message.find('"', message.find(':', k) + 1);
      size_t q2 = q1 == std::string::npos ? q1 : message.find('"', q1 + 1);
      if (q2 != std::string::npos) c.thread_id = message.substr(q1, q2 - q1 + 1);
    }
    for (int step = 0; step < kSteps; ++step)
      push({c.t0 + c.first_ns + step * c.delay_ns, c.id, step});
  }

  void push(Due d) {
    due_.push(d);
    if (due_.top().at == d.at) arm();
  }

  void arm() {
    itimerspec spec{};
    if (!due_.empty()) {
      int64_t at = std::max<int64_t>(due_.top().at, 1);
      spec.it_value.tv_sec = at / 1'000'000'000;
      spec.it_value.tv_nsec = at % 1'000'000'000;
    }
    timerfd_settime(timer_, TFD_TIMER_ABSTIME, &spec, nullptr);
  }

  void fire_due() {
    while (!due_.empty() && due_.top().at <= now_ns()) {
      Due d = due_.top();
      due_.pop();
      auto it = conns_.find(d.conn);
      if (it == conns_.end() || it->second->closing) continue;
      Conn& c = *it->second;
      std::string event = std::string(R"({"type":")") + kEvents[d.step].first +
                          R"(","thread_id":)" + c.thread_id + R"(,"data":)" +
                          kEvents[d.step].second + "}";
      double late_us = static_cast<double>(now_ns() - d.at) / 1e3;
      send(c, frame(0x1, event));
      ++stats_.agent_events;
      ++stats_.late_n;
      stats_.late_sum_us += late_us;
      stats_.late_max_us = std::max(stats_.late_max_us, late_us);
      if (late_us > 1000) ++stats_.late_over_1ms;
      c.next_step = d.step + 1;
      if (c.next_step == kSteps) --running_;
    }
    arm();
  }

  std::string stats_json() const {
    char buf[1024];
    std::snprintf(buf, sizeof buf,
                  R"({"open_total":%ld,"hanging":0,"attempts_total":%llu,"agent_sessions":%llu,)"
                  R"("agent_events":%llu,"agents_running":%ld,"client_closes":%llu,"eofs":%llu,)"
                  R"("server_closes":0,"drops":0,"protocol_errors":%llu,"refused":%llu,)"
                  R"("late_n":%llu,"late_sum_us":%.1f,"late_max_us":%.1f,"late_over_1ms":%llu})",
                  open_ws_, static_cast<unsigned long long>(stats_.attempts_total),
                  static_cast<unsigned long long>(stats_.agent_sessions),
                  static_cast<unsigned long long>(stats_.agent_events), running_,
                  static_cast<unsigned long long>(stats_.client_closes),
                  static_cast<unsigned long long>(stats_.eofs),
                  static_cast<unsigned long long>(stats_.protocol_errors),
                  static_cast<unsigned long long>(stats_.refused),
                  static_cast<unsigned long long>(stats_.late_n), stats_.late_sum_us,
                  stats_.late_max_us, static_cast<unsigned long long>(stats_.late_over_1ms));
    return buf;
  }

  int listen_fd_;
  long max_conns_;
  int ep_ = -1, timer_ = -1;
  uint64_t next_id_ = 2;  // 0 and 1 are the listener and the timer
  std::unordered_map<uint64_t, std::unique_ptr<Conn>> conns_;
  std::priority_queue<Due, std::vector<Due>, std::greater<Due>> due_;
  long open_ws_ = 0, running_ = 0;
  Stats stats_;
};

}  // namespace

int main(int argc, char** argv) {
  bench::ServerArgs args;
  args.max_conns = 5000;
  if (!bench::parse_server_args("agent_server", argc, argv, /*with_ports=*/false, args)) return 2;
  bench::install_stop_signals();
  int port = 0;
  int fd = bench::listen_loopback("agent_server", &port);
  Server server(fd, args.max_conns);
  bench::announce_ready("agent_server", "READY " + std::to_string(port), args.ready_file);
  server.run(now_ns() + static_cast<int64_t>(args.max_seconds * 1e9));
  server.print_counters();
  return 0;
}
