// What canaryd has recorded about each configured probe: its counts,
// histograms and type facts (for /metrics) and its last result, history and
// since-times (for the state API). One entry per probe, counted once; the
// metrics exposition (probe_metrics.h) and the state API (state_store.h) are
// two views of it.
//
// Thread-safety: install() and record() on the loop thread; for_each() and
// with() from any thread. Each entry has its own lock, so reading ten
// thousand probes never holds up a result for longer than one probe's read.
#pragma once

#include <array>
#include <chrono>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "daemon/config.h"
#include "daemon/engine.h"

namespace canaryd {

using WallTime = std::chrono::system_clock::time_point;

// Probe latencies span sub-millisecond loopback checks to two-minute agent
// conversations.
inline constexpr std::array<double, 14> kLatencyBounds = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                                          1,     2,    5,     10,   30,  60,   120};

// metrics.detail basic: at most 10 buckets (9 bounds and +Inf) for the one
// histogram a probe keeps. 2 s is a bound, as in kLatencyBounds: it is the
// default threshold of CanaryLatencyP95High, and a p95 compared with a
// bucket bound is exact (it exceeds the bound only when more than 5 % of
// runs do), where one between bounds is interpolated and could page falsely.
inline constexpr std::array<double, 9> kBasicLatencyBounds = {0.01, 0.05, 0.1, 0.25, 0.5,
                                                              1,    2,    5,   30};

// Upper bounds shared by every histogram that uses them.
using Bounds = std::shared_ptr<const std::vector<double>>;
// The bounds a probe's duration histogram uses: its metrics.buckets, or its detail's default.
Bounds duration_bounds(const ProbeSpec& spec);
// kLatencyBounds, for the phase histograms.
const Bounds& phase_bounds();

// A histogram's state: a count per bucket (not cumulative; the last is +Inf)
// and the sum.
struct Histo {
  Bounds bounds = phase_bounds();
  std::vector<uint64_t> counts = std::vector<uint64_t>(bounds->size() + 1);
  double sum = 0;
  Histo() = default;
  explicit Histo(Bounds b) : bounds(std::move(b)), counts(bounds->size() + 1) {}
  void observe(double v);
  // Adds counts made in `their` bounds (a superset of these: each of their
  // buckets falls inside one of these) and their sum.
  void add(const std::vector<double>& their, const ProbeDetails::Observed& o);
};

// One series of a type's own metric family (TypeMetric).
struct TypeSeries {
  const TypeMetric* metric;
  std::vector<std::string> labels;  // values of metric->labels
  double value = 0;
  bool present = false;        // a gauge or info is shown once a run reported it; a counter always
  std::optional<Histo> histo;  // a histogram's (always shown)
};

// States an earlier run saved (global.state_file), by probe name: the hash of
// the fingerprint each was saved under (probe_state_codec.h), and the state.
using SavedProbeStates = std::map<std::string, std::pair<std::string, std::string>, std::less<>>;

class ProbeBook {
 public:
  // A past run: only what the history shows, so a long history stays cheap.
  struct Past {
    WallTime time;
    bool success;
    Reason reason;
    std::string message;  // empty for successes
    double duration_seconds;
  };

  struct Entry {
    mutable std::mutex mu;  // everything below
    ProbeSpec spec;
    const ProbeType* type = nullptr;
    std::string target;
    // The series' labels in the text format (`category="db",probe="pg",...`,
    // the config's global labels included) and canary_probe_info's.
    std::string labels;
    std::string info_labels;

    uint64_t runs = 0;
    uint64_t failures = 0;
    std::vector<std::pair<Reason, double>> failures_by_reason;  // every reason of the type
    Histo duration;
    std::vector<std::pair<std::string, Histo>> phases;
    std::vector<TypeSeries> type_series;
    std::optional<double> cert_expiry_unix;

    std::optional<ProbeResult> last;
    WallTime last_time;
    std::string last_run_id;
    double last_duration = 0;
    int last_attempts = 1;
    // Retries: attempts by outcome, and runs that passed only on a retry (a
    // flaky target, visible though it does not page).
    uint64_t attempts_succeeded = 0;
    uint64_t attempts_failed = 0;
    uint64_t retry_successes = 0;
    std::deque<Past> history;  // newest first, bounded
    size_t history_limit = 20;
    std::optional<WallTime> failing_since;
    std::optional<WallTime> passing_since;
    std::optional<WallTime> last_success;
    uint64_t consecutive_failures = 0;
  };

  // Installs the probe set: new probes appear with nothing recorded, gone
  // ones vanish, and kept ones keep what they have. A probe whose type
  // changed is a new probe under an old name and starts afresh.
  void install(const std::vector<const ConfiguredProbe*>& probes,
               const std::vector<std::pair<std::string, std::string>>& global_labels, int history);

  // What changed for the probe, so the log can report changes, not every run.
  enum class Transition { kNone, kFirstFailure, kRecovered };
  Transition record(const RunRecord& record);

  // Before the first install(): a probe it adds whose fingerprint is the one
  // its state was saved under starts from that state (its last result,
  // since-times and history); any other starts fresh.
  void restore_from(std::shared_ptr<const SavedProbeStates> saved) { saved_ = std::move(saved); }

  // Calls f(const Entry&) for every probe in name order, each under its lock.
  template <class F>
  void for_each(F&& f) const {
    std::shared_lock lock(mu_);
    for (const auto& [name, e] : entries_) {
      std::lock_guard entry_lock(e->mu);
      f(static_cast<const Entry&>(*e));
    }
  }
  // Calls f(const Entry&) for the named probe under its lock; false if there is none.
  template <class F>
  bool with(const std::string& name, F&& f) const {
    std::shared_lock lock(mu_);
    auto it = entries_.find(name);
    if (it == entries_.end()) return false;
    std::lock_guard entry_lock(it->second->mu);
    f(static_cast<const Entry&>(*it->second));
    return true;
  }

 private:
  mutable std::shared_mutex mu_;                   // the set of probes; entries lock themselves
  std::shared_ptr<const SavedProbeStates> saved_;  // for the first install() only
  std::map<std::string, std::unique_ptr<Entry>, std::less<>> entries_;
  // The same entries by name, for record(): every result looks its probe up,
  // and a walk down a tree of thousands of names is a cache miss a level.
  // Keys view entries_'s keys (map nodes never move); rebuilt by install().
  std::unordered_map<std::string_view, Entry*> by_name_;
};

}  // namespace canaryd
