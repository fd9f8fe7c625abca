// What the bench's loopback servers (blackhole, agent_server) share: their
// command line, a listener on 127.0.0.1 and an ephemeral port, the READY
// line (stdout and an atomically renamed --ready-file), SIGTERM/SIGINT as
// "stop", and fatal errors. Header-only: each tool is one file.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

namespace bench {

inline volatile sig_atomic_t g_stop = 0;

struct ServerArgs {
  int ports = 1;
  long max_conns = 20000;
  double max_seconds = 900;
  std::string ready_file;
};

[[noreturn]] inline void die(const char* tool, const char* what) {
  std::fprintf(stderr, "%s: %s: %s\n", tool, what, std::strerror(errno));
  std::exit(1);
}

// `--max-conns N --max-seconds S --ready-file F`, plus `--ports N` where the
// tool takes it. False (with a message) on anything else or an out-of-range value.
inline bool parse_server_args(const char* tool, int argc, char** argv, bool with_ports,
                              ServerArgs& out) {
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    bool known = a == "--max-conns" || a == "--max-seconds" || a == "--ready-file" ||
                 (with_ports && a == "--ports");
    if (!known || i + 1 >= argc) {
      std::fprintf(stderr, "usage: %s %s[--max-conns N] [--max-seconds S] [--ready-file F]\n", tool,
                   with_ports ? "[--ports N] " : "");
      return false;
    }
    const char* v = argv[++i];
    if (a == "--ports") out.ports = std::atoi(v);
    if (a == "--max-conns") out.max_conns = std::atol(v);
    if (a == "--max-seconds") out.max_seconds = std::atof(v);
    if (a == "--ready-file") out.ready_file = v;
  }
  if (out.ports < 1 || out.ports > 64 || out.max_conns < 1 || out.max_seconds <= 0 ||
      out.max_seconds > 3600) {
    std::fprintf(stderr, "%s: bad arguments\n", tool);
    return false;
  }
  return true;
}

inline void install_stop_signals() {
  auto on_signal = [](int) { g_stop = 1; };
  signal(SIGTERM, on_signal);
  signal(SIGINT, on_signal);
  signal(SIGPIPE, SIG_IGN);
}

// A non-blocking listener on 127.0.0.1 and a port the OS picks.
inline int listen_loopback(const char* tool, int* port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) die(tool, "socket");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) die(tool, "bind");
  if (listen(fd, 4096) != 0) die(tool, "listen");
  socklen_t len = sizeof addr;
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  *port = ntohs(addr.sin_port);
  return fd;
}

// Prints `line` and writes it to `ready_file` (if any) through a rename, so a
// reader sees the whole line or no file.
inline void announce_ready(const char* tool, const std::string& line,
                           const std::string& ready_file) {
  if (!ready_file.empty()) {
    std::string tmp = ready_file + ".tmp";
    FILE* f = std::fopen(tmp.c_str(), "w");
    if (f == nullptr || std::fprintf(f, "%s\n", line.c_str()) < 0 || std::fclose(f) != 0)
      die(tool, "ready file");
    if (std::rename(tmp.c_str(), ready_file.c_str()) != 0) die(tool, "ready file");
  }
  std::printf("%s\n", line.c_str());
  std::fflush(stdout);
}

}  // namespace bench
