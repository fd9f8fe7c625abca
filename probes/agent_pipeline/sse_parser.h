// A `text/event-stream` body cut into events, as the WHATWG HTML standard's
// "event stream interpretation" says (section 9.2.6): lines end in CRLF, LF or
// CR; one BOM at the start is dropped; a line is "field: value" split at its
// first colon, with one leading space of the value dropped; a line starting
// with a colon is a comment; `data` lines join with "\n"; a blank line
// dispatches. No socket and no clock: the SSE transport feeds it what curl
// hands over, in whatever pieces, and unit tests and fuzz/sse_fuzz.cc feed it
// the same way.
//
// The bytes come from a target, so every buffer is bounded: a line longer
// than max_line_bytes or an event (its type and data) larger than
// max_event_bytes stops the parser with an error instead of growing.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

namespace canaryd {

struct SseEvent {
  std::string type;  // the `event:` field, or "message" when there was none
  std::string data;  // the `data:` lines joined with "\n"
  std::string id;    // the last event ID at dispatch (it carries over between events)
};

struct SseLimits {
  size_t max_line_bytes = 64 * 1024;
  size_t max_event_bytes = 1024 * 1024;
};

// Thread-safety: one thread at a time.
class SseParser {
 public:
  enum class Error { kNone, kLineTooLong, kEventTooLarge };
  // Returns false to stop: the parser then ignores the rest of its input.
  using OnEvent = std::function<bool(SseEvent&&)>;

  explicit SseParser(SseLimits limits = {}) : limits_(limits) {}

  // Parses the next piece of the stream and dispatches each complete event.
  // False once the parser has stopped: a limit was hit (error() says which)
  // or `on_event` asked to stop.
  bool feed(std::string_view bytes, const OnEvent& on_event);

  Error error() const { return error_; }
  bool stopped() const { return stopped_; }
  // The last `retry:` value (the reconnection time, ms). The probe does not
  // reconnect, but keeps it to show what the server asked for.
  std::optional<uint64_t> retry_ms() const { return retry_ms_; }
  size_t comments() const { return comments_; }
  // Whether an event was under way when the input stopped (the standard
  // discards it at the end of the stream).
  bool pending() const { return !data_.empty() || !type_.empty() || !line_.empty(); }

 private:
  // The input after the BOM check; false once stopped.
  bool scan(std::string_view bytes, const OnEvent& on_event);
  // One complete line; false to stop.
  bool on_line(std::string_view line, const OnEvent& on_event);
  bool stop(Error error);

  SseLimits limits_;
  std::string line_;  // a line not yet ended
  std::string type_;  // the event type buffer
  std::string data_;  // the data buffer: each data line and a "\n"
  std::string last_id_;
  std::optional<uint64_t> retry_ms_;
  size_t comments_ = 0;
  bool bom_checked_ = false;
  std::string bom_prefix_;  // the start of the stream while it may still be a split BOM
  bool after_cr_ = false;   // the last line ended in CR: a leading LF is its CRLF
  bool stopped_ = false;
  Error error_ = Error::kNone;
};

// "line_too_long" / "event_too_large" wording for messages.
std::string_view sse_error_text(SseParser::Error error);

}  // namespace canaryd
