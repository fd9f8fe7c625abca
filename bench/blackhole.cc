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

namespace {

volatile sig_atomic_t g_stop = 0;
void on_signal(int) { g_stop = 1; }

[[noreturn]] void die(const char* what) {
  std::fprintf(stderr, "blackhole: %s: %s\n", what, std::strerror(errno));
  std::exit(1);
}

}  // namespace

int main(int argc, char** argv) {
  int nports = 1;
  long max_conns = 20000;
  double max_seconds = 900;
  std::string ready_file;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (i + 1 >= argc) {
      std::fprintf(stderr, "blackhole: missing value for %s\n", a.c_str());
      return 2;
    }
    if (a == "--ports") {
      nports = std::atoi(argv[++i]);
    } else if (a == "--max-conns") {
      max_conns = std::atol(argv[++i]);
    } else if (a == "--max-seconds") {
      max_seconds = std::atof(argv[++i]);
    } else if (a == "--ready-file") {
      ready_file = argv[++i];
    } else {
      std::fprintf(stderr, "usage: blackhole [--ports N] [--max-conns N] [--max-seconds S] "
                           "[--ready-file F]\n");
      return 2;
    }
  }
  if (nports < 1 || nports > 64 || max_conns < 1 || max_seconds <= 0 || max_seconds > 3600) {
    std::fprintf(stderr, "blackhole: bad arguments\n");
    return 2;
  }

  // Every held connection is a descriptor.
  rlimit lim{};
  if (getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur < lim.rlim_max) {
    lim.rlim_cur = lim.rlim_max;
    setrlimit(RLIMIT_NOFILE, &lim);
  }
  signal(SIGTERM, on_signal);
  signal(SIGINT, on_signal);
  signal(SIGPIPE, SIG_IGN);

  int ep = epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) die("epoll_create1");
  std::vector<int> listeners;
  std::string ready = "READY";
  for (int i = 0; i < nports; ++i) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) die("socket");
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = 0;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) die("bind");
    if (listen(fd, 4096) != 0) die("listen");
    socklen_t len = sizeof addr;
    getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
    ready += ' ';
    ready += std::to_string(ntohs(addr.sin_port));
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = (1ull << 32) | static_cast<uint32_t>(fd);  // high bit: a listener
    if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0) die("epoll_ctl");
    listeners.push_back(fd);
  }
  if (!ready_file.empty()) {
    std::string tmp = ready_file + ".tmp";
    if (FILE* f = std::fopen(tmp.c_str(), "w")) {
      std::fprintf(f, "%s\n", ready.c_str());
      std::fclose(f);
      std::rename(tmp.c_str(), ready_file.c_str());
    }
  }
  std::printf("%s\n", ready.c_str());
  std::fflush(stdout);

  unsigned long long accepted = 0, closed = 0, refused = 0, bytes = 0;
  long open_now = 0, open_max = 0;
  const auto deadline = std::chrono::steady_clock::now() +
                        std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                            std::chrono::duration<double>(max_seconds));
  std::vector<epoll_event> events(1024);
  static char sink[16384];
  while (!g_stop && std::chrono::steady_clock::now() < deadline) {
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
