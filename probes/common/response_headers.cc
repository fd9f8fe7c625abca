#include "probes/common/response_headers.h"

#include <fmt/format.h>

#include <string_view>

namespace canaryd {

void ResponseHeaders::attach(CURL* easy) {
  curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, &ResponseHeaders::on_header);
  curl_easy_setopt(easy, CURLOPT_HEADERDATA, this);
}

void ResponseHeaders::reset() {
  bytes_ = 0;
  overflow_ = false;
  complete_ = false;
}

size_t ResponseHeaders::on_header(char* data, size_t size, size_t nmemb, void* userp) {
  auto* self = static_cast<ResponseHeaders*>(userp);
  size_t n = size * nmemb;
  // Counted over the whole transfer (interim 1xx responses and followed
  // redirects included): that is what curl keeps in memory.
  self->bytes_ += n;
  if (self->bytes_ > kMaxBytes) {
    self->overflow_ = true;
    return 0;  // stops the transfer with CURLE_WRITE_ERROR
  }
  std::string_view line(data, n);
  if (line == "\r\n" || line == "\n") {
    self->complete_ = true;
  } else if (line.substr(0, 5) == "HTTP/") {
    self->complete_ = false;  // a new response (after a 1xx or a redirect) begins
  }
  return n;
}

std::optional<std::string> ResponseHeaders::problem(CURL* easy, CURLcode rc) const {
  std::string too_large = fmt::format("response headers exceed {} bytes", kMaxBytes);
  if (overflow_) return too_large;
  if (rc == CURLE_OUT_OF_MEMORY && !complete_) {
    // With the request sent and the headers unfinished, this is curl refusing
    // a header line over CURL_MAX_HTTP_HEADER (100 KiB, above our own bound):
    // the only allocation of that phase a target controls.
    long request_bytes = 0;
    curl_easy_getinfo(easy, CURLINFO_REQUEST_SIZE, &request_bytes);
    if (request_bytes > 0) return too_large;
  }
  if (rc == CURLE_OK && !complete_)
    return std::string("the connection closed before the response headers ended");
  return std::nullopt;
}

}  // namespace canaryd
