#include "daemon/http_request_parser.h"

#include <algorithm>
#include <cstdint>
#include <cstring>

namespace canaryd {

namespace {

// RFC 9110 token characters (header names, methods).
bool is_tchar(unsigned char c) {
  if (c >= '0' && c <= '9') return true;
  if ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') return true;
  return c != '\0' && std::strchr("!#$%&'*+-.^_`|~", c) != nullptr;
}

char ascii_lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c; }

}  // namespace

namespace http {

bool is_token(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return is_tchar(c); });
}

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (ascii_lower(a[i]) != ascii_lower(b[i])) return false;
  }
  return true;
}

}  // namespace http

namespace {

using http::iequals;
using http::is_token;

std::string_view trim_ows(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// True if the comma-separated list (e.g. a Connection header) contains `token`.
bool list_has_token(std::string_view list, std::string_view token) {
  while (!list.empty()) {
    const size_t comma = list.find(',');
    if (iequals(trim_ows(list.substr(0, comma)), token)) return true;
    if (comma == std::string_view::npos) break;
    list.remove_prefix(comma + 1);
  }
  return false;
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  c = ascii_lower(c);
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

// Rejects malformed escapes and %00: a NUL in a path is never legitimate and would
// confuse any C-string consumer further down.
bool percent_decode(std::string_view in, std::string* out) {
  out->clear();
  out->reserve(in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] != '%') {
      out->push_back(in[i]);
      continue;
    }
    if (i + 2 >= in.size()) return false;
    const int hi = hex_value(in[i + 1]);
    const int lo = hex_value(in[i + 2]);
    if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) return false;
    out->push_back(static_cast<char>(hi * 16 + lo));
    i += 2;
  }
  return true;
}

// Splits the request target into path and query. Accepts origin-form ("/a?b") and
// absolute-form ("http://host/a?b", which RFC 9112 requires servers to accept).
int split_target(std::string_view target, HttpRequest* req) {
  std::string_view rest = target;
  if (rest.empty()) return 400;
  if (rest.front() != '/') {
    size_t scheme_len = 0;
    if (rest.size() >= 7 && iequals(rest.substr(0, 7), "http://")) {
      scheme_len = 7;
    } else if (rest.size() >= 8 && iequals(rest.substr(0, 8), "https://")) {
      scheme_len = 8;
    } else {
      return 400;
    }
    rest.remove_prefix(scheme_len);
    const size_t path_start = rest.find_first_of("/?");
    rest = path_start == std::string_view::npos ? std::string_view() : rest.substr(path_start);
  }
  if (rest.find('#') != std::string_view::npos) return 400;
  const size_t qmark = rest.find('?');
  std::string_view raw_path = rest.substr(0, qmark);
  if (qmark != std::string_view::npos) req->query.assign(rest.substr(qmark + 1));
  if (raw_path.empty()) raw_path = "/";
  if (!percent_decode(raw_path, &req->path)) return 400;
  return 0;
}

// Parses "HTTP/x.y". Returns 0, 400 (garbage) or 505 (a well-formed version other than 1.x).
int parse_version(std::string_view v, bool* http10) {
  if (v.size() != 8 || v.substr(0, 5) != "HTTP/" || v[6] != '.' || v[5] < '0' || v[5] > '9' ||
      v[7] < '0' || v[7] > '9') {
    return 400;
  }
  if (v[5] != '1') return 505;
  *http10 = v[7] == '0';
  return 0;
}

// `head` is the request line and header lines, including the terminating blank line.
// Returns 0 on success or the HTTP status to answer with before closing.
int parse_head(std::string_view head, size_t max_body_bytes, RequestHead* out) {
  HttpRequest& req = out->request;
  bool first = true;
  bool have_length = false;
  while (!head.empty()) {
    const size_t nl = head.find('\n');
    std::string_view line = head.substr(0, nl);
    head.remove_prefix(nl == std::string_view::npos ? head.size() : nl + 1);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    // A bare CR is a classic request-smuggling ingredient: reject rather than guess.
    if (line.find('\r') != std::string_view::npos) return 400;
    if (line.empty()) break;

    if (first) {
      first = false;
      const size_t sp1 = line.find(' ');
      const size_t sp2 = line.rfind(' ');
      if (sp1 == std::string_view::npos || sp1 == sp2) return 400;
      const std::string_view method = line.substr(0, sp1);
      const std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
      if (!is_token(method) || target.empty()) return 400;
      for (const char c : target) {
        const auto u = static_cast<unsigned char>(c);
        if (u <= 0x20 || u == 0x7f) return 400;
      }
      if (const int rc = parse_version(line.substr(sp2 + 1), &out->http10); rc != 0) return rc;
      req.method.assign(method);
      req.target.assign(target);
      if (const int rc = split_target(target, &req); rc != 0) return rc;
      continue;
    }

    // Obsolete line folding (RFC 9112 5.2) is rejected, as the RFC allows.
    if (line.front() == ' ' || line.front() == '\t') return 400;
    const size_t colon = line.find(':');
    if (colon == std::string_view::npos) return 400;
    const std::string_view name = line.substr(0, colon);
    if (!is_token(name)) return 400;  // Also catches whitespace before the colon.
    const std::string_view value = trim_ows(line.substr(colon + 1));
    for (const char c : value) {
      const auto u = static_cast<unsigned char>(c);
      if ((u < 0x20 && u != '\t') || u == 0x7f) return 400;
    }
    std::string lower(name);
    std::transform(lower.begin(), lower.end(), lower.begin(), ascii_lower);
    req.headers.emplace_back(std::move(lower), std::string(value));
  }
  if (first) return 400;

  bool conn_close = false;
  bool conn_keep_alive = false;
  for (const auto& [name, value] : req.headers) {
    if (name == "transfer-encoding") {
      // Only Content-Length framing is supported; refusing chunked uploads is allowed.
      return out->http10 ? 400 : 411;
    } else if (name == "content-length") {
      if (value.empty() ||
          !std::all_of(value.begin(), value.end(), [](char c) { return c >= '0' && c <= '9'; })) {
        return 400;
      }
      // Saturate instead of overflowing: anything this large is 413 anyway.
      constexpr size_t kSaturated = SIZE_MAX / 16;
      size_t length = 0;
      for (const char c : value) {
        length = std::min(kSaturated, length * 10 + static_cast<size_t>(c - '0'));
      }
      // Differing duplicates mean two parties may disagree on framing.
      if (have_length && length != out->content_length) return 400;
      have_length = true;
      out->content_length = length;
    } else if (name == "connection") {
      conn_close = conn_close || list_has_token(value, "close");
      conn_keep_alive = conn_keep_alive || list_has_token(value, "keep-alive");
    } else if (name == "expect") {
      if (!iequals(value, "100-continue")) return 417;
      out->expect_continue = !out->http10;
    }
  }
  if (out->content_length > max_body_bytes) return 413;
  out->keep_alive = out->http10 ? (conn_keep_alive && !conn_close) : !conn_close;
  return 0;
}
}  // namespace

std::string HttpRequest::header(std::string_view lower_name) const {
  for (const auto& [name, value] : headers) {
    if (name == lower_name) return value;
  }
  return {};
}

HttpRequestParser::Result HttpRequestParser::fail(int status) {
  error_status_ = status;
  in_body_ = false;
  return Result::kError;
}

HttpRequestParser::Result HttpRequestParser::parse(std::string_view input, size_t* consumed) {
  *consumed = 0;
  if (error_status_ != 0) return Result::kError;
  if (!in_body_) {
    if (scan_pos_ == 0) {
      // RFC 9112 2.2: ignore empty lines before a request line (some clients send an
      // extra CRLF after a body).
      while (*consumed < input.size() && (input[*consumed] == '\r' || input[*consumed] == '\n')) {
        ++*consumed;
      }
      input.remove_prefix(*consumed);
    }
    const size_t crlf = input.find("\n\r\n", scan_pos_);
    const size_t lf = input.find("\n\n", scan_pos_);
    const size_t end = std::min(crlf == std::string_view::npos ? crlf : crlf + 3,
                                lf == std::string_view::npos ? lf : lf + 2);
    if (end == std::string_view::npos) {
      if (input.size() > max_header_bytes_) return fail(431);
      // The terminator may straddle the next read; re-scan only its possible start.
      scan_pos_ = input.size() >= 2 ? input.size() - 2 : 0;
      return Result::kNeedMore;
    }
    if (end > max_header_bytes_) return fail(431);
    head_ = RequestHead{};
    const int rc = parse_head(input.substr(0, end), max_body_bytes_, &head_);
    *consumed += end;
    scan_pos_ = 0;
    if (rc != 0) return fail(rc);
    in_body_ = true;
    input.remove_prefix(end);
  }
  if (input.size() < head_.content_length) return Result::kNeedMore;
  head_.request.body.assign(input.substr(0, head_.content_length));
  *consumed += head_.content_length;
  in_body_ = false;
  return Result::kRequest;
}

RequestHead HttpRequestParser::take() {
  RequestHead out = std::move(head_);
  head_ = RequestHead{};
  return out;
}

}  // namespace canaryd
