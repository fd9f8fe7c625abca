// A raw TCP client for HTTP server tests: it writes exactly the bytes given (pipelined,
// malformed or half-closed requests) and reads Content-Length framed responses itself, so a
// test controls when, and whether, anything is read.
#ifndef CANARYD_TESTS_SUPPORT_RAW_HTTP_CLIENT_H_
#define CANARYD_TESTS_SUPPORT_RAW_HTTP_CLIENT_H_

#include <chrono>
#include <cstddef>
#include <functional>
#include <string>

namespace canaryd::test {

class RawSocket {
 public:
  // Connects to 127.0.0.1:port (REQUIRE). receive_buffer > 0 fixes SO_RCVBUF before
  // connecting, so the kernel does not autotune it. Every read gives up after
  // safety_timeout, only there so a broken server fails a test instead of hanging it.
  explicit RawSocket(int port, int receive_buffer = 0,
                     std::chrono::milliseconds safety_timeout = std::chrono::seconds(10));
  ~RawSocket();
  RawSocket(const RawSocket&) = delete;
  RawSocket& operator=(const RawSocket&) = delete;

  int fd() const { return fd_; }
  void shutdown_write();
  void send_all(const std::string& data);

  // Reads until the peer closes (true) or the safety timeout expires (false).
  bool read_until_closed(std::string* out);
  // Reads until `count` complete Content-Length framed responses have arrived.
  bool read_responses(size_t count, std::string* out);
  // Reads `count` responses, handing each to `check` (head and body) as soon as it is
  // complete and dropping it, so no more than one is kept in `buffer`.
  bool consume_responses(size_t count, std::string* buffer,
                         const std::function<void(const std::string&)>& check);

 private:
  int fd_;
  std::chrono::milliseconds safety_timeout_;
};

}  // namespace canaryd::test

#endif  // CANARYD_TESTS_SUPPORT_RAW_HTTP_CLIENT_H_
