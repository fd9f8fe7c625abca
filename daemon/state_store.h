// "What is the canary state right now": each probe's last result, a bounded
// ring of recent results, and how long it has been failing or passing (kept
// in the ProbeBook). Served as JSON at /api/v1/state and read by `canaryd
// status`.
//
// Thread-safety: every method may be called from any thread.
#pragma once

#include <chrono>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <shared_mutex>
#include <string>
#include <vector>

#include "daemon/probe_book.h"

namespace canaryd {

// RFC 3339 in UTC with milliseconds: "2026-11-21T08:30:00.123Z".
std::string format_time(WallTime t);
// The same for seconds since the epoch, such as a certificate's expiry; clamped
// to 1970..9999, so any value a target sends can be shown.
std::string format_unix_time(double seconds);

// One result as JSON; shared by the state API and `canaryd once --json` so
// both speak the same shape.
// `attempts`: how many the run took (retries); a pass after a failed one is
// marked "retried".
nlohmann::ordered_json result_json(const ProbeResult& result, double duration_seconds,
                                   int attempts);

// The state API's view of the probe loops' books, plus how the config was
// last loaded.
class StateStore {
 public:
  // The books of every probe loop, once, before any reader.
  void set_books(std::vector<const ProbeBook*> books) { books_ = std::move(books); }
  void set_config_status(std::string file, bool last_reload_ok, std::string last_error);

  // Every probe's state, as the API's JSON text (indented by 2). Built one
  // probe at a time: a JSON document of 10,000 probes in memory takes several
  // times the size of its text.
  std::string all_text(WallTime now) const;
  std::optional<nlohmann::ordered_json> probe(const std::string& name, WallTime now) const;
  // Calls f with each probe's state (the API's object for it), one probe at a
  // time under its lock and in no particular order: the status page and
  // all_text() read the same thing, so the page never shows what the API
  // would not (messages and targets are redacted before they are recorded).
  void for_each_probe(WallTime now,
                      const std::function<void(const nlohmann::ordered_json&)>& f) const;
  // The API's "config" object: the file and how its last reload went.
  nlohmann::ordered_json config_json() const;

 private:
  std::vector<const ProbeBook*> books_;
  mutable std::mutex config_mu_;
  std::string config_file_;
  bool last_reload_ok_ = true;
  std::string last_reload_error_;
};

}  // namespace canaryd
