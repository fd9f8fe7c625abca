#include "probes/postgres/postgres_wire.h"

#include <fmt/format.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstdint>
#include <iterator>

namespace canaryd {

namespace {

uint32_t read_be32(const unsigned char* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3];
}

}  // namespace

// libpq reports what the server did wrong only in text (in the C locale
// canaryd runs in). These are its words for a server that does not speak the
// protocol: bytes that are no message, a message cut off by a close, one
// declaring an impossible length.
bool libpq_says_protocol(std::string_view msg) {
  static constexpr std::string_view kPhrases[] = {
      "expected authentication request from server",
      "received invalid response to SSL negotiation",
      "received invalid response to GSSAPI negotiation",
      "server closed the connection unexpectedly",
      "lost synchronization with server",
      "unexpected message from server",
      "invalid message format",
      "message contents do not agree with length",
      "message type 0x",
      "cannot allocate memory for input buffer",
      "unexpected response from server",
      "server sent data",
      "received unexpected",
  };
  return std::any_of(std::begin(kPhrases), std::end(kPhrases),
                     [&](std::string_view p) { return msg.find(p) != std::string_view::npos; });
}

// The connection is made with PQERRORS_VERBOSE, so a server's ErrorResponse
// during start-up reads "FATAL:  28P01: text\nLOCATION:  ...": the SQLSTATE is
// the one fact about an authentication failure that does not depend on the
// server's wording. Takes the code out (returned) and drops LOCATION lines,
// which name the server's source files.
std::string take_sqlstate(std::string& msg) {
  std::string code;
  for (std::string_view level : {"FATAL:  ", "ERROR:  "}) {
    size_t at = msg.find(level);
    if (at == std::string::npos) continue;
    size_t c = at + level.size();
    auto is_code_char = [](char ch) {
      return (ch >= '0' && ch <= '9') || (ch >= 'A' && ch <= 'Z');
    };
    if (msg.size() >= c + 7 && std::all_of(msg.begin() + c, msg.begin() + c + 5, is_code_char) &&
        msg.compare(c + 5, 2, ": ") == 0) {
      code = msg.substr(c, 5);
      msg.erase(c, 7);
      break;
    }
  }
  for (size_t at; (at = msg.find("LOCATION:  ")) != std::string::npos;) {
    size_t end = msg.find('\n', at);
    msg.erase(at, end == std::string::npos ? std::string::npos : end - at + 1);
  }
  return code;
}

// Looks at what the server has sent, without taking it, for a SCRAM
// challenge (AuthenticationSASLContinue, "r=...,s=...,i=N") that asks for
// more than kMaxScramIterations, and says why it is refused. Plain
// connections only: inside TLS the bytes cannot be read from outside libpq.
std::optional<std::string> absurd_scram_challenge(PGconn* conn) {
  // Only while libpq waits for the server's authentication messages: a peek
  // at a socket whose connect is still pending would take (clear) a
  // connection-refused error that libpq is about to read.
  if (PQstatus(conn) != CONNECTION_AWAITING_RESPONSE || PQsslInUse(conn)) return std::nullopt;
  int fd = PQsocket(conn);
  if (fd < 0) return std::nullopt;
  unsigned char buf[2048];
  ssize_t n = recv(fd, buf, sizeof buf, MSG_PEEK | MSG_DONTWAIT);
  if (n < 9 || buf[0] != 'R') return std::nullopt;
  uint32_t len = read_be32(buf + 1);
  if (len < 8 || read_be32(buf + 5) != 11) return std::nullopt;  // 11: SASLContinue
  std::string_view data(reinterpret_cast<const char*>(buf) + 9,
                        std::min<size_t>(static_cast<size_t>(n) - 9, len - 8));
  size_t at = data.rfind(",i=");
  if (at == std::string_view::npos) return std::nullopt;
  uint64_t iterations = 0;
  for (size_t i = at + 3; i < data.size() && data[i] >= '0' && data[i] <= '9'; ++i) {
    iterations = iterations * 10 + static_cast<uint64_t>(data[i] - '0');
    if (iterations > kMaxScramIterations) break;
  }
  if (iterations <= kMaxScramIterations) return std::nullopt;
  return fmt::format(
      "the server asks for more than {} SCRAM-SHA-256 iterations (PostgreSQL's default is "
      "4096); canaryd refuses rather than compute them for minutes",
      kMaxScramIterations);
}

}  // namespace canaryd
