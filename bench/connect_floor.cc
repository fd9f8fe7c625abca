// connect_floor: what the kernel alone charges one thread for a hung HTTP
// probe's run on loopback, with no HTTP client and no daemon: socket(),
// non-blocking connect(), epoll_ctl() add, send() of a GET, epoll_ctl() mod,
// and later an RST close (SO_LINGER 0), as canaryd does at the deadline. On
// loopback the peer's side of the handshake, the request and the reset are
// processed in this thread's system calls too, as they are in canaryd's loop.
//
//   connect_floor --port P [--batch N] [--rounds R]
//
// Opens N connections to 127.0.0.1:P (bench/blackhole), then closes them all,
// R times, and prints {"connections": ..., "cpu_us_per_connection": ...}
// (utime + stime of this process over the whole run).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

double cpu_seconds() {
  rusage r{};
  getrusage(RUSAGE_SELF, &r);
  return static_cast<double>(r.ru_utime.tv_sec + r.ru_stime.tv_sec) +
         static_cast<double>(r.ru_utime.tv_usec + r.ru_stime.tv_usec) / 1e6;
}

}  // namespace

int main(int argc, char** argv) {
  int port = 0, batch = 5000, rounds = 4;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i];
    if (a == "--port") port = std::atoi(argv[i + 1]);
    if (a == "--batch") batch = std::atoi(argv[i + 1]);
    if (a == "--rounds") rounds = std::atoi(argv[i + 1]);
  }
  if (port <= 0 || port > 65535 || batch < 1 || batch > 20000 || rounds < 1 || rounds > 100) {
    std::fprintf(stderr, "usage: connect_floor --port P [--batch N<=20000] [--rounds R<=100]\n");
    return 2;
  }
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const char request[] =
      "GET /hang HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: canaryd/floor\r\nAccept: */*\r\n\r\n";
  int ep = epoll_create1(EPOLL_CLOEXEC);
  long done = 0, failed = 0;
  const double start = cpu_seconds();
  for (int r = 0; r < rounds; ++r) {
    std::vector<int> fds;
    for (int i = 0; i < batch; ++i) {
      int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
      if (fd < 0) {
        ++failed;
        continue;
      }
      connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);  // EINPROGRESS
      epoll_event ev{};
      ev.events = EPOLLOUT;
      ev.data.fd = fd;
      epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
      if (send(fd, request, sizeof request - 1, MSG_NOSIGNAL) < 0) ++failed;
      ev.events = EPOLLIN;
      epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev);
      fds.push_back(fd);
    }
    for (int fd : fds) {
      linger l{1, 0};
      setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
      close(fd);
      ++done;
    }
  }
  const double used = cpu_seconds() - start;
  std::printf("{\"connections\":%ld,\"failed\":%ld,\"cpu_us_per_connection\":%.1f}\n", done, failed,
              done ? used / static_cast<double>(done) * 1e6 : 0.0);
  return 0;
}
