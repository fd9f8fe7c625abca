// Secret values read from ${env:..} and ${file:..} references.
//
// Every text that leaves the daemon (result messages, logs, errors, the state
// API) passes through redact(), so a secret that leaks into, say, a library's
// error string is still never shown.
#pragma once

#include <mutex>
#include <string>
#include <string_view>
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
  // A secret learned at run time (an issued token). Only the newest
  // kMaxTransient are kept, so a token per run cannot grow memory forever.
  void add_transient(std::string value);
  static constexpr size_t kMaxTransient = 256;
  void merge(const Secrets& other);
  std::string redact(std::string_view text) const;
  bool contains_secret(std::string_view text) const;
  size_t size() const;
  // Changes when any value changes; reveals nothing usable about the values.
  size_t digest() const;

 private:
  mutable std::mutex mu_;
  std::vector<std::string> values_;     // longest first, so overlapping secrets redact fully
  std::vector<std::string> transient_;  // oldest first
};

// The process-wide set: the union of every config loaded so far. Sinks and the
// logger redact with it.
Secrets& global_secrets();

inline constexpr std::string_view kRedacted = "<redacted>";

// A value from a target, shortened for a message: redacted first and clipped
// after, so a clipped secret cannot slip past the redactor.
std::string redact_clipped(std::string_view text, size_t max_chars);

}  // namespace canaryd
