// When each probe runs. Pure logic over an injected clock: the engine asks it
// what is due and tells it when runs finish; it never touches I/O.
//
// - Fixed rate: the next due time is the previous due time plus the interval,
//   so run time never makes the schedule drift.
// - First runs are spread across the interval by a stable hash of the probe
//   name, so a restart does not stampede every target at once.
// - Runs of one probe never overlap: a slot that comes due while the previous
//   run is still going is skipped and counted, unless the owner says that run
//   ends within a small grace, and then the slot waits for it.
//
// Thread-safety: none; the engine uses it on the loop thread only.
#pragma once

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <iterator>
#include <optional>
#include <set>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "base/stable_hash.h"
#include "daemon/clock.h"

namespace canaryd {

using ProbeId = uint64_t;

// Why a slot did not run, as canary_scheduler_skipped_runs_total{cause} says.
enum class SkipCause {
  kOverlap,  // the probe's previous run was still going
  kLate,     // the loop came to the slot too late to start it (start_bound)
  kMissed,   // the loop was stalled past the whole slot
  kStarved,  // the run started, but its loop was too busy to judge its timeout (engine)
  kLimit,    // canaryd could not make the run, at a limit of its own (ProbeResult::canaryd_limit)
};
inline constexpr SkipCause kSkipCauses[] = {SkipCause::kOverlap, SkipCause::kLate,
                                            SkipCause::kMissed, SkipCause::kStarved,
                                            SkipCause::kLimit};
inline constexpr size_t kSkipCauseCount = std::size(kSkipCauses);
std::string_view skip_cause_name(SkipCause cause);

class Scheduler {
 public:
  explicit Scheduler(const Clock& clock) : clock_(clock) {}

  // Schedules a probe; its first run is at now + (hash(name) mod interval).
  // The timeout sets how late a run may start (start_bound).
  void add(ProbeId id, std::string_view name, Nanos interval, Nanos timeout);
  void remove(ProbeId id);
  bool contains(ProbeId id) const { return entries_.count(id) != 0; }

  // The earliest due time of any probe, running or not: a running probe's
  // slot must still be skipped on time.
  std::optional<Nanos> next_due() const;

  struct Dispatch {
    ProbeId id;
    Nanos due;  // the slot this run fills
    // How late the loop starts the run: now - due, or for a slot that
    // waited for the run before it, now - the end of that run.
    Nanos lag;
  };
  // Every probe due by now that is not running, at most `max_runs` of them:
  // marked running, its next slot computed. Slots missed entirely (the loop
  // stalled, or the previous run was still going) are skipped, not run in a
  // burst. Skips cost nothing against `max_runs`; runs beyond it stay due.
  std::vector<Dispatch> take_due(size_t max_runs = SIZE_MAX);
  void finished(ProbeId id);
  bool running(ProbeId id) const;

  // Asked when a probe comes due while its previous run is still going.
  enum class Overlap {
    kEnded,     // the owner ended that run (its deadline is now): the new run starts on time
    kDeferred,  // that run ends within a small grace: the new run starts when it finishes
    kSkipped,   // the slot is lost, and counted
  };
  void on_overlap(std::function<Overlap(ProbeId)> handler) { on_overlap_ = std::move(handler); }

  // How late a run may start: a tenth of its timeout, at least 20 ms (a
  // loop's ordinary jitter), at most a second and half an interval. Later,
  // its slot is skipped. This is admission control: a loop that far behind
  // is overloaded, and the I/O of the runs it has started waits behind every
  // run it starts, so starting more would make healthy runs time out. A
  // tenth keeps the delay a run's few I/O steps can meet well inside its
  // timeout.
  static Nanos start_bound(Nanos interval, Nanos timeout) {
    using std::chrono::milliseconds;
    const Nanos bound = std::clamp<Nanos>(timeout / 10, milliseconds(20), std::chrono::seconds(1));
    return std::min(interval / 2, bound);
  }
  // The bound after `late_streak` slots of a probe in a row were skipped as
  // late: it doubles with each, up to half an interval. A loop that is busy
  // at the same moment of every interval (another probe's heavy reply, a
  // burst of starts) would otherwise skip the same probes every time, and a
  // probe that never runs is a blind spot no skip counter makes up for.
  static Nanos admission_bound(Nanos interval, Nanos start_bound, int late_streak) {
    Nanos bound = start_bound;
    for (int i = 0; i < late_streak && bound < interval / 2; ++i) bound *= 2;
    return std::min(interval / 2, bound);
  }
  uint64_t skipped(SkipCause cause) const { return skipped_[static_cast<size_t>(cause)]; }
  uint64_t skipped_total() const {
    uint64_t total = 0;
    for (uint64_t n : skipped_) total += n;
    return total;
  }
  // A started run the engine ended without a verdict (kStarved).
  void count_skip(SkipCause cause) { skip(cause); }
  size_t size() const { return entries_.size(); }

 private:
  struct Entry {
    Nanos interval;
    Nanos start_bound;
    Nanos next_due;
    bool running = false;
    std::optional<Nanos> deferred;  // a slot waiting for the run in flight
    Nanos finished_at{0};           // when the last run ended
    int late_streak = 0;            // slots skipped as late since the last run started
  };
  // Starts a run now, or skips its slot as late (false).
  bool admit(Entry& e, Nanos lag);
  void advance_past_now(ProbeId id, Entry& e, Nanos now);

  const Clock& clock_;
  std::unordered_map<ProbeId, Entry> entries_;
  std::set<std::pair<Nanos, ProbeId>> queue_;  // (next_due, id)
  std::vector<ProbeId> ready_;                 // finished runs whose deferred slot is due
  void skip(SkipCause cause, uint64_t n = 1) { skipped_[static_cast<size_t>(cause)] += n; }
  std::array<uint64_t, kSkipCauseCount> skipped_{};
  std::function<Overlap(ProbeId)> on_overlap_;
};

}  // namespace canaryd
