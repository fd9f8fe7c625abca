// blackhole: a TCP server that accepts connections, reads and discards what
// the client sends, and never answers. The hung target of benchmark (c): an
// HTTP probe against it can only end by its own timeout.
//
// One thread, one epoll loop (a Python server would need a core of its own
// to churn 10,000 connections a second on this 2-core machine, and steal it
// from the daemon being measured). A connection is closed when the client
// closes it. Listens on 127.0.0.1 only.
//
//   blackhole [--ports N] [--max-conns N] [--max-seconds S] [--ready-file F]
//
// Prints "READY port1 port2 ..." on stdout once every listener is bound (and
// writes the same line to --ready-file). Exits on SIGTERM/SIGINT, or by itself
// after --max-seconds (default 900), printing its counters on stderr.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "server_tool.h"

namespace {

[[noreturn]] void die(const char* what) { bench::die("blackhole", what); }

}  // namespace

int main(int argc, char** argv) {
  bench::ServerArgs args;
  if (!bench::parse_server_args("blackhole", argc, argv, /*with_ports=*/true, args)) return 2;

  // Every held connection is a descriptor.
  rlimit lim{};
  if (getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur < lim.rlim_max) {
    lim.rlim_cur = lim.rlim_max;
    setrlimit(RLIMIT_NOFILE, &lim);
  }
  bench::install_stop_signals();

  int ep = epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) die("epoll_create1");
  std::vector<int> listeners;
  std::string ready = "READY";
  for (int i = 0; i < args.ports; ++i) {
    int port = 0;
    int fd = bench::listen_loopback("blackhole", &port);
    ready += ' ';
    ready += std::to_string(port);
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = (1ull << 32) | static_cast<uint32_t>(fd);  // high bit: a listener
    if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0) die("epoll_ctl");
    listeners.push_back(fd);
  }
  bench::announce_ready("blackhole", ready, args.ready_file);
  const long max_conns = args.max_conns;
  const double max_seconds = args.max_seconds;

  unsigned long long accepted = 0, closed = 0, refused = 0, bytes = 0;
  long open_now = 0, open_max = 0;
  const auto deadline = std::chrono::steady_clock::now() +
                        std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                            std::chrono::duration<double>(max_seconds));
  std::vector<epoll_event> events(1024);
  static char sink[16384];
  while (!bench::g_stop && std::chrono::steady_clock::now() < deadline) {
    int n = epoll_wait(ep, events.data(), static_cast<int>(events.size()), 200);
    if (n < 0) {
      if (errno == EINTR) continue;
      die("epoll_wait");
    }
    for (int i = 0; i < n; ++i) {
      uint64_t tag = events[i].data.u64;
      int fd = static_cast<int>(tag & 0xffffffffu);
      if (tag >> 32) {
        for (;;) {
          int c = accept4(fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
          if (c < 0) break;  // EAGAIN, or out of descriptors: retried on the next event
          if (open_now >= max_conns) {
            close(c);
            ++refused;
            continue;
          }
          epoll_event ev{};
          ev.events = EPOLLIN | EPOLLRDHUP;
          ev.data.u64 = static_cast<uint32_t>(c);
          if (epoll_ctl(ep, EPOLL_CTL_ADD, c, &ev) != 0) {
            close(c);
            ++refused;
            continue;
          }
          ++accepted;
          if (++open_now > open_max) open_max = open_now;
        }
        continue;
      }
      // A client connection: swallow whatever it sent; close when it leaves.
      bool gone = (events[i].events & (EPOLLHUP | EPOLLERR)) != 0;
      for (;;) {
        ssize_t r = read(fd, sink, sizeof sink);
        if (r > 0) {
          bytes += static_cast<unsigned long long>(r);
          continue;
        }
        if (r == 0 || (errno != EAGAIN && errno != EINTR)) gone = true;
        break;
      }
      if (gone) {
        close(fd);  // also removes it from the epoll set
        ++closed;
        --open_now;
      }
    }
  }
  std::fprintf(stderr,
               "blackhole: accepted=%llu closed=%llu refused=%llu open=%ld open_max=%ld "
               "bytes_read=%llu\n",
               accepted, closed, refused, open_now, open_max, bytes);
  return 0;
}
