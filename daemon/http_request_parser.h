// The endpoint server's HTTP/1.x request parser: bytes in, requests or an
// error status out. It owns no socket and no clock, so daemon/http_server.cc
// drives it from its connection machine and fuzz/http_request_fuzz.cc drives
// it from bytes alone.
#ifndef CANARYD_DAEMON_HTTP_REQUEST_PARSER_H_
#define CANARYD_DAEMON_HTTP_REQUEST_PARSER_H_

#include <cstddef>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace canaryd {

struct HttpRequest {
  std::string method;  // As sent, e.g. "GET", "POST". HEAD is passed through as "HEAD"; the
                       // server drops the body of the response, so handlers should treat
                       // HEAD like GET.
  std::string target;  // Raw request target, e.g. "/api/v1/state/foo?x=1".
  std::string path;    // Percent-decoded path without the query, e.g. "/api/v1/state/foo".
  std::string query;   // Raw (still percent-encoded) query string without the '?'.
  std::vector<std::pair<std::string, std::string>> headers;  // Names lower-cased.
  std::string body;

  // Value of the first header named `lower_name` (which must be lower-case), "" if absent.
  std::string header(std::string_view lower_name) const;
};

// Everything learned from the request line and headers; the body is read afterwards.
struct RequestHead {
  HttpRequest request;
  size_t content_length = 0;
  bool http10 = false;
  bool keep_alive = true;
  bool expect_continue = false;
};

// Splits one connection's input into requests (Content-Length framing only;
// chunked uploads are refused). Call parse() with the connection's unconsumed
// input, always from its first unconsumed byte, whenever more has arrived.
class HttpRequestParser {
 public:
  enum class Result {
    kNeedMore,  // Drop the `consumed` bytes and call again when more input arrives.
    kRequest,   // A whole request: take() it, then call again for the next one.
    kError,     // Answer error_status() and close; every later call says the same.
  };

  // Heads (request line + headers) beyond max_header_bytes are 431, bodies
  // beyond max_body_bytes 413.
  HttpRequestParser(size_t max_header_bytes, size_t max_body_bytes)
      : max_header_bytes_(max_header_bytes), max_body_bytes_(max_body_bytes) {}

  Result parse(std::string_view input, size_t* consumed);

  // True between a head and the end of its body (e.g. time for 100 Continue).
  bool reading_body() const { return in_body_; }
  const RequestHead& head() const { return head_; }
  RequestHead take();
  int error_status() const { return error_status_; }

 private:
  Result fail(int status);

  size_t max_header_bytes_;
  size_t max_body_bytes_;
  size_t scan_pos_ = 0;  // Where to resume searching for the end of the head.
  bool in_body_ = false;
  int error_status_ = 0;
  RequestHead head_;
};

// RFC 9110 syntax the server also needs for the headers it writes.
namespace http {
bool is_token(std::string_view s);
bool iequals(std::string_view a, std::string_view b);
}  // namespace http

}  // namespace canaryd

#endif  // CANARYD_DAEMON_HTTP_REQUEST_PARSER_H_
