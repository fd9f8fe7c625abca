// Secret values read from ${env:..} and ${file:..} references, and the one
// function that makes a target's text safe to show (target_text).
//
// Every text that leaves the daemon (result messages, logs, errors, the state
// API) passes through redact() or target_text(), so a secret that leaks into,
// say, a library's error string is still never shown.
#pragma once

#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace canaryd {

// Thread-safety: all methods may be called from any thread.
class Secrets {
 public:
  Secrets() = default;
  Secrets(const Secrets& other);
  Secrets& operator=(const Secrets& other);

  // Values shorter than kMinLength are not redacted: replacing every "a" or
  // "1" would make all output unreadable, and such a value is not a secret.
  static constexpr size_t kMinLength = 4;

  void add(std::string value);

  // A secret learned at run time (an issued token), redacted for as long as
  // its pin lives: a value still in use is never dropped. Once the last pin
  // of a value goes, the value joins the newest kMaxTransient released
  // values, still redacted (a target may quote an old token), until newer
  // ones push it out; so a token per run cannot grow memory forever.
  class Pin {
   public:
    Pin() = default;
    ~Pin() { reset(); }
    Pin(Pin&& other) noexcept;
    Pin& operator=(Pin&& other) noexcept;
    Pin(const Pin&) = delete;
    Pin& operator=(const Pin&) = delete;
    void reset();

   private:
    friend class Secrets;
    Secrets* owner_ = nullptr;
    std::string value_;
  };
  [[nodiscard]] Pin pin(std::string value);
  // A run-time secret nobody keeps using: straight into the released values.
  void add_transient(std::string value);
  static constexpr size_t kMaxTransient = 256;

  void merge(const Secrets& other);
  // Every occurrence of every value replaced by kRedacted. Overlapping or
  // adjacent occurrences (of one value or of several) become one kRedacted.
  // Makes the configured values exactly those of `current` (the config just
  // installed), so reloads do not pile up the secrets of every config ever
  // loaded. A value no longer configured (a removed probe's, the old value
  // of a rotated secret) joins the released run-time values: a message
  // already under way that quotes it is still redacted, and then it ages out.
  void replace_configured(const Secrets& current);
  std::string redact(std::string_view text) const;
  // The byte ranges [begin, end) of `text` that redact() replaces, sorted and
  // merged, for the occurrences that start before `starts_before`.
  std::vector<std::pair<size_t, size_t>> secret_ranges(std::string_view text,
                                                       size_t starts_before) const;
  // The length of the longest value (0 when there is none).
  size_t longest() const;
  bool contains_secret(std::string_view text) const;
  size_t size() const;            // configured values
  size_t transient_size() const;  // pinned and released run-time values
  // Changes when any value changes; reveals nothing usable about the values.
  size_t digest() const;

 private:
  void release_locked(std::string value);
  void unpin(const std::string& value);

  mutable std::mutex mu_;
  std::vector<std::string> values_;       // longest first, so overlapping secrets redact fully
  std::map<std::string, size_t> pinned_;  // value -> live pins
  std::vector<std::string> transient_;    // released values, oldest first
};

// The process-wide set: the union of every config loaded so far. Sinks and the
// logger redact with it.
Secrets& global_secrets();

inline constexpr std::string_view kRedacted = "<redacted>";
// Ends a text that target_text() shortened.
inline constexpr std::string_view kClipMarker = "\u2026[clipped]";

// How much of a target's text (an error reply, a frame, a value, a library
// error quoting them) a probe quotes in a message.
inline constexpr size_t kTargetTextBytes = 256;
// The engine's backstop for every result message, whoever wrote it.
inline constexpr size_t kResultMessageBytes = 1024;
// The logger's backstop for one line.
inline constexpr size_t kLogLineBytes = 16 * 1024;

// A text a target supplied, made safe for a message, the history, a log line
// or a page. In this order, so no step can undo an earlier one:
//  1. redacted with global_secrets() (configured values and run-time tokens),
//     on the raw bytes: a secret holding a control character or invalid UTF-8
//     is still found, and one that the clip would cut is already gone;
//  2. clipped to at most `max_bytes` of output, kClipMarker included, at a
//     character boundary and never inside kRedacted or an escape;
//  3. sanitized: control characters (C0, DEL, C1) and the Unicode line
//     separators and bidi overrides become visible escapes (\n, \x1b,
//     \u2028), and every invalid UTF-8 byte becomes U+FFFD.
// The result is one line of valid UTF-8. Only as much of `raw` is scanned as
// the output needs, so a megabyte of text costs about max_bytes of work.
// Applying it again with the same or a larger max_bytes changes nothing
// (unless a secret was added meanwhile).
// With LineBreaks::kSpace, a line break (LF or CRLF) or tab becomes a space
// instead (one, however many in a row): for library texts that are multi-line
// by design, such as libpq's. A lone CR is still escaped.
enum class LineBreaks { kEscape, kSpace };
std::string target_text(std::string_view raw, size_t max_bytes = kTargetTextBytes,
                        LineBreaks line_breaks = LineBreaks::kEscape);

}  // namespace canaryd
