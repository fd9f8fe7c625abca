// The SSE transport's event stream parser (probes/agent_pipeline/sse_parser.*)
// over a target's bytes, as curl hands them over in pieces.
// Input: one byte choosing the piece size (1 to 64), then the stream.
// Checks: pieces change nothing (the same events and end state as the whole
// stream at once); no event exceeds its bound; a type or data never holds a
// CR, and a type never a LF (line ends never leak into fields).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "probes/agent_pipeline/sse_parser.h"

namespace {

constexpr canaryd::SseLimits kLimits{.max_line_bytes = 512, .max_event_bytes = 1024};

struct Run {
  std::vector<canaryd::SseEvent> events;
  canaryd::SseParser::Error error;
  bool pending;
};

Run run(std::string_view stream, size_t piece) {
  canaryd::SseParser p(kLimits);
  Run out;
  for (size_t i = 0; i < stream.size(); i += piece) {
    bool more = p.feed(stream.substr(i, piece), [&](canaryd::SseEvent&& e) {
      out.events.push_back(std::move(e));
      return true;
    });
    if (!more) break;
  }
  out.error = p.error();
  out.pending = p.pending();
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  size_t piece = 1 + data[0] % 64;
  std::string_view stream(reinterpret_cast<const char*>(data + 1), size - 1);
  Run whole = run(stream, stream.size() + 1);
  Run pieces = run(stream, piece);
  if (whole.events.size() != pieces.events.size() || whole.error != pieces.error ||
      whole.pending != pieces.pending)
    std::abort();
  for (size_t i = 0; i < whole.events.size(); ++i) {
    const auto& a = whole.events[i];
    const auto& b = pieces.events[i];
    if (a.type != b.type || a.data != b.data || a.id != b.id) std::abort();
    if (a.type.empty() || a.type.size() + a.data.size() > kLimits.max_event_bytes) std::abort();
    if (a.type.find_first_of("\r\n") != std::string::npos) std::abort();
    if (a.data.find('\r') != std::string::npos || a.id.find_first_of("\r\n") != std::string::npos)
      std::abort();
  }
  return 0;
}
