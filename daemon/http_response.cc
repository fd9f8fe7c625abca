#include "daemon/http_response.h"

#include <string_view>

#include "daemon/http_request_parser.h"

namespace canaryd {

namespace {

using http::iequals;
using http::is_token;

struct StatusReason {
  int status;
  const char* reason;
};

constexpr StatusReason kReasons[] = {
    {200, "OK"},
    {201, "Created"},
    {202, "Accepted"},
    {204, "No Content"},
    {301, "Moved Permanently"},
    {302, "Found"},
    {304, "Not Modified"},
    {307, "Temporary Redirect"},
    {308, "Permanent Redirect"},
    {400, "Bad Request"},
    {401, "Unauthorized"},
    {403, "Forbidden"},
    {404, "Not Found"},
    {405, "Method Not Allowed"},
    {406, "Not Acceptable"},
    {408, "Request Timeout"},
    {409, "Conflict"},
    {411, "Length Required"},
    {413, "Content Too Large"},
    {414, "URI Too Long"},
    {415, "Unsupported Media Type"},
    {417, "Expectation Failed"},
    {422, "Unprocessable Content"},
    {429, "Too Many Requests"},
    {431, "Request Header Fields Too Large"},
    {500, "Internal Server Error"},
    {501, "Not Implemented"},
    {502, "Bad Gateway"},
    {503, "Service Unavailable"},
    {504, "Gateway Timeout"},
    {505, "HTTP Version Not Supported"},
};

}  // namespace

// Clients ignore the reason phrase, but humans reading curl -v do not.
const char* reason_phrase(int status) {
  for (const auto& entry : kReasons) {
    if (entry.status == status) return entry.reason;
  }
  if (status < 300) return "OK";
  if (status < 400) return "Redirection";
  if (status < 500) return "Client Error";
  return "Server Error";
}

namespace {

// Header values a handler supplies may echo client input; never let it end the header.
std::string sanitize_header_value(std::string_view v) {
  std::string s(v);
  for (char& c : s) {
    if (c == '\r' || c == '\n' || c == '\0') c = ' ';
  }
  return s;
}

bool is_managed_header(std::string_view name) {
  return iequals(name, "content-length") || iequals(name, "content-type") ||
         iequals(name, "connection") || iequals(name, "transfer-encoding");
}

}  // namespace

std::string http_response_head(const HttpResponse& response, bool keep_alive, bool http10) {
  const bool no_content = !response_has_content(response.status);

  std::string head;
  head.reserve(256);
  head += "HTTP/1.1 ";
  head += std::to_string(response.status);
  head += ' ';
  head += reason_phrase(response.status);
  head += "\r\n";
  if (!no_content) {
    head += "Content-Type: ";
    head += sanitize_header_value(response.content_type);
    head += "\r\nContent-Length: ";
    head += std::to_string(response.body.size());
    head += "\r\n";
  }
  if (!keep_alive) {
    head += "Connection: close\r\n";
  } else if (http10) {
    head += "Connection: keep-alive\r\n";
  }
  for (const auto& [name, value] : response.headers) {
    if (!is_token(name) || is_managed_header(name)) continue;
    head += name;
    head += ": ";
    head += sanitize_header_value(value);
    head += "\r\n";
  }
  head += "\r\n";
  return head;
}

}  // namespace canaryd
