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
};
inline constexpr SkipCause kSkipCauses[] = {SkipCause::kOverlap, SkipCause::kLate,
                                            SkipCause::kMissed};
std::string_view skip_cause_name(SkipCause cause);

class Scheduler {
 public:
  explicit Scheduler(const Clock& clock) : clock_(clock) {}

  // Schedules a probe; its first run is at now + (hash(name) mod interval).
  void add(ProbeId id, std::string_view name, Nanos interval);
  void remove(ProbeId id);
  bool contains(ProbeId id) const { return entries_.count(id) != 0; }

  // The earliest due time of any probe, running or not: a running probe's
  // slot must still be skipped on time.
  std::optional<Nanos> next_due() const;

  struct Dispatch {
    ProbeId id;
    Nanos due;  // the slot this run fills
    Nanos lag;  // how late the run starts: now - due
  };
  // Every probe due by now that is not running: marked running, its next slot
  // computed. Slots missed entirely (the loop stalled, or the previous run was
  // still going) are skipped, not run in a burst.
  std::vector<Dispatch> take_due();
  void finished(ProbeId id);
  bool running(ProbeId id) const;

  // Asked when a probe comes due while its previous run is still going.
  enum class Overlap {
    kEnded,     // the owner ended that run (its deadline is now): the new run starts on time
    kDeferred,  // that run ends within a small grace: the new run starts when it finishes
    kSkipped,   // the slot is lost, and counted
  };
  void on_overlap(std::function<Overlap(ProbeId)> handler) { on_overlap_ = std::move(handler); }

  // How late a run may start. Later, its slot is skipped: a start half an
  // interval (at most a second) behind means the loop is overloaded, and
  // starting anyway would only queue more work behind it.
  static Nanos start_bound(Nanos interval) {
    return std::min(interval / 2, Nanos(std::chrono::seconds(1)));
  }
  uint64_t skipped(SkipCause cause) const { return skipped_[static_cast<size_t>(cause)]; }
  uint64_t skipped_total() const { return skipped_[0] + skipped_[1] + skipped_[2]; }
  size_t size() const { return entries_.size(); }

 private:
  struct Entry {
    Nanos interval;
    Nanos next_due;
    bool running = false;
    std::optional<Nanos> deferred;  // a slot waiting for the run in flight
  };
  void advance_past_now(ProbeId id, Entry& e, Nanos now);

  const Clock& clock_;
  std::unordered_map<ProbeId, Entry> entries_;
  std::set<std::pair<Nanos, ProbeId>> queue_;  // (next_due, id)
  std::vector<ProbeId> ready_;                 // finished runs whose deferred slot is due
  void skip(SkipCause cause, uint64_t n = 1) { skipped_[static_cast<size_t>(cause)] += n; }
  std::array<uint64_t, 3> skipped_{};
  std::function<Overlap(ProbeId)> on_overlap_;
};

}  // namespace canaryd
