#include "tests/support/raw_http_client.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>

namespace canaryd::test {
namespace {

// The size of the complete response at the front of `data`, 0 while it is incomplete.
size_t first_response_size(const std::string& data, size_t from = 0) {
  const size_t end = data.find("\r\n\r\n", from);
  if (end == std::string::npos) return 0;
  size_t length = 0;
  const size_t cl = data.substr(from, end - from).find("Content-Length: ");
  if (cl != std::string::npos) length = std::stoul(data.substr(from + cl + 16, 20));
  return data.size() < end + 4 + length ? 0 : end + 4 + length - from;
}

size_t complete_responses(const std::string& data) {
  size_t count = 0;
  for (size_t pos = 0, size = first_response_size(data); size > 0;
       pos += size, size = first_response_size(data, pos)) {
    ++count;
  }
  return count;
}

}  // namespace

RawSocket::RawSocket(int port, int receive_buffer, std::chrono::milliseconds safety_timeout)
    : fd_(socket(AF_INET, SOCK_STREAM, 0)), safety_timeout_(safety_timeout) {
  REQUIRE(fd_ >= 0);
  if (receive_buffer > 0) {
    REQUIRE(setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &receive_buffer, sizeof(receive_buffer)) == 0);
  }
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0);
}

RawSocket::~RawSocket() {
  if (fd_ >= 0) close(fd_);
}

void RawSocket::shutdown_write() { REQUIRE(shutdown(fd_, SHUT_WR) == 0); }

void RawSocket::send_all(const std::string& data) {
  size_t off = 0;
  while (off < data.size()) {
    const ssize_t n = send(fd_, data.data() + off, data.size() - off, MSG_NOSIGNAL);
    REQUIRE(n > 0);
    off += static_cast<size_t>(n);
  }
}

bool RawSocket::read_until_closed(std::string* out) {
  const auto deadline = std::chrono::steady_clock::now() + safety_timeout_;
  char buf[65536];
  while (std::chrono::steady_clock::now() < deadline) {
    pollfd p{fd_, POLLIN, 0};
    if (poll(&p, 1, 100) <= 0) continue;
    const ssize_t n = recv(fd_, buf, sizeof(buf), 0);
    if (n <= 0) return true;  // EOF or reset: either way the server closed it.
    out->append(buf, static_cast<size_t>(n));
  }
  return false;
}

bool RawSocket::read_responses(size_t count, std::string* out) {
  const auto deadline = std::chrono::steady_clock::now() + safety_timeout_;
  char buf[65536];
  while (complete_responses(*out) < count) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    pollfd p{fd_, POLLIN, 0};
    if (poll(&p, 1, 100) <= 0) continue;
    const ssize_t n = recv(fd_, buf, sizeof(buf), 0);
    if (n <= 0) return false;
    out->append(buf, static_cast<size_t>(n));
  }
  return true;
}

bool RawSocket::consume_responses(size_t count, std::string* buffer,
                                  const std::function<void(const std::string&)>& check) {
  const auto deadline = std::chrono::steady_clock::now() + safety_timeout_;
  char buf[65536];
  size_t done = 0;
  while (true) {
    for (size_t size = first_response_size(*buffer); size > 0 && done < count;
         size = first_response_size(*buffer)) {
      check(buffer->substr(0, size));
      buffer->erase(0, size);
      ++done;
    }
    if (done == count) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    pollfd p{fd_, POLLIN, 0};
    if (poll(&p, 1, 100) <= 0) continue;
    const ssize_t n = recv(fd_, buf, sizeof(buf), 0);
    if (n <= 0) return false;
    buffer->append(buf, static_cast<size_t>(n));
  }
}

}  // namespace canaryd::test
