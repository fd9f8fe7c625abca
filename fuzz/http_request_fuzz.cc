// The endpoint server's request parser (daemon/http_request_parser.*), fed as a
// client's bytes arrive. The first input byte picks the size of each read; the
// rest is the byte stream. Beyond not crashing: the requests and the final
// error must not depend on how the stream was cut into reads.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "daemon/http_request_parser.h"

namespace {

// Small limits, so the fuzzer reaches 431 and 413 within its input size.
constexpr size_t kMaxHeader = 1024;
constexpr size_t kMaxBody = 512;

struct Outcome {
  std::vector<canaryd::RequestHead> requests;
  int error = 0;
};

bool same(const canaryd::RequestHead& a, const canaryd::RequestHead& b) {
  const auto& x = a.request;
  const auto& y = b.request;
  return x.method == y.method && x.target == y.target && x.path == y.path && x.query == y.query &&
         x.headers == y.headers && x.body == y.body && a.content_length == b.content_length &&
         a.http10 == b.http10 && a.keep_alive == b.keep_alive &&
         a.expect_continue == b.expect_continue;
}

// Feeds `stream` in reads of `chunk` bytes the way the server's connection
// does: appended to a buffer whose consumed prefix is dropped.
Outcome run(std::string_view stream, size_t chunk) {
  Outcome out;
  canaryd::HttpRequestParser parser(kMaxHeader, kMaxBody);
  std::string in;
  size_t pos = 0;
  size_t fed = 0;
  while (true) {
    if (fed < stream.size()) {
      size_t n = std::min(chunk, stream.size() - fed);
      in.append(stream.substr(fed, n));
      fed += n;
    }
    while (true) {
      size_t used = 0;
      auto r = parser.parse(std::string_view(in).substr(pos), &used);
      if (used > in.size() - pos) std::abort();
      pos += used;
      if (r == canaryd::HttpRequestParser::Result::kError) {
        out.error = parser.error_status();
        if (out.error < 400 || out.error > 599) std::abort();
        return out;
      }
      if (r == canaryd::HttpRequestParser::Result::kNeedMore) break;
      canaryd::RequestHead head = parser.take();
      if (head.request.body.size() != head.content_length || head.content_length > kMaxBody)
        std::abort();
      if (head.request.method.empty() || head.request.path.empty() ||
          head.request.path.find('\0') != std::string::npos)
        std::abort();
      for (const auto& [name, value] : head.request.headers) {
        if (name.empty() || value.find_first_of("\r\n") != std::string::npos) std::abort();
      }
      out.requests.push_back(std::move(head));
    }
    in.erase(0, pos);
    pos = 0;
    if (fed == stream.size()) return out;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  size_t chunk = 1 + data[0] % 64;
  std::string_view stream(reinterpret_cast<const char*>(data + 1), size - 1);
  Outcome whole = run(stream, stream.size() + 1);
  Outcome pieces = run(stream, chunk);
  if (whole.error != pieces.error || whole.requests.size() != pieces.requests.size()) std::abort();
  for (size_t i = 0; i < whole.requests.size(); ++i)
    if (!same(whole.requests[i], pieces.requests[i])) std::abort();
  return 0;
}
