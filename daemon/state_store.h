// "What is the canary state right now": each probe's last result, a bounded
// ring of recent results, and how long it has been failing or passing. Served
// as JSON at /api/v1/state and read by `canaryd status`.
//
// Thread-safety: every method may be called from any thread. record() runs on
// the loop thread and the renderers on the HTTP server thread; each probe has
// its own lock, so rendering ten thousand probes never holds up a result for
// longer than one probe's rendering.
#pragma once

#include <chrono>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <shared_mutex>
#include <string>
#include <vector>

#include "daemon/config.h"
#include "daemon/engine.h"

namespace canaryd {

using WallTime = std::chrono::system_clock::time_point;

// RFC 3339 in UTC with milliseconds: "2026-11-21T08:30:00.123Z".
std::string format_time(WallTime t);
// The same for seconds since the epoch, such as a certificate's expiry; clamped
// to 1970..9999, so any value a target sends can be shown.
std::string format_unix_time(double seconds);

// One result as JSON; shared by the state API and `canaryd once --json` so
// both speak the same shape.
nlohmann::ordered_json result_json(const ProbeResult& result, double duration_seconds);

class StateStore {
 public:
  // Installs the probe set: new probes appear as "pending", gone ones vanish,
  // kept ones keep their history.
  void sync_probes(const std::vector<const ConfiguredProbe*>& probes, int history);
  // What changed for the probe, so the log can report changes, not every run.
  enum class Transition { kNone, kFirstFailure, kRecovered };
  Transition record(const RunRecord& record);
  void set_config_status(std::string file, bool last_reload_ok, std::string last_error);

  // Every probe's state, as the API's JSON text (indented by 2). Built one
  // probe at a time: a JSON document of 10,000 probes in memory takes several
  // times the size of its text.
  std::string all_text(WallTime now) const;
  std::optional<nlohmann::ordered_json> probe(const std::string& name, WallTime now) const;

 private:
  // A past run: only what the history shows, so a long history stays cheap.
  struct Entry {
    WallTime time;
    bool success;
    Reason reason;
    std::string message;  // empty for successes
    double duration_seconds;
  };
  struct ProbeState {
    std::mutex mu;
    ProbeSpec spec;
    std::string target;
    std::optional<ProbeResult> last;
    WallTime last_time;
    std::string last_run_id;
    double last_duration = 0;
    std::deque<Entry> history;  // newest first, bounded
    size_t history_limit = 20;
    std::optional<WallTime> failing_since;
    std::optional<WallTime> passing_since;
    std::optional<WallTime> last_success;
    uint64_t runs = 0;
    uint64_t failures = 0;
    uint64_t consecutive_failures = 0;
  };
  // Caller holds p.mu.
  nlohmann::ordered_json probe_json(const ProbeState& p, WallTime now) const;

  mutable std::shared_mutex map_mu_;  // the set of probes; entries lock themselves
  std::map<std::string, std::unique_ptr<ProbeState>> probes_;
  mutable std::mutex config_mu_;
  std::string config_file_;
  bool last_reload_ok_ = true;
  std::string last_reload_error_;
};

}  // namespace canaryd
