#include "daemon/scheduler.h"

#include <utility>

namespace canaryd {

std::string_view skip_cause_name(SkipCause cause) {
  switch (cause) {
    case SkipCause::kOverlap:
      return "overlap";
    case SkipCause::kLate:
      return "late";
    case SkipCause::kMissed:
      return "missed";
    case SkipCause::kStarved:
      return "starved";
    case SkipCause::kLimit:
      return "limit";
  }
  return "unknown";
}

void Scheduler::add(ProbeId id, std::string_view name, Nanos interval, Nanos timeout) {
  remove(id);
  if (interval.count() <= 0) interval = Nanos(1);
  Nanos offset(static_cast<int64_t>(stable_hash(name) % static_cast<uint64_t>(interval.count())));
  Entry e{interval, start_bound(interval, timeout), clock_.now() + offset, false, std::nullopt,
          Nanos(0)};
  queue_.emplace(e.next_due, id);
  entries_.emplace(id, e);
}

void Scheduler::remove(ProbeId id) {
  auto it = entries_.find(id);
  if (it == entries_.end()) return;
  queue_.erase({it->second.next_due, id});
  entries_.erase(it);
}

std::optional<Nanos> Scheduler::next_due() const {
  if (!ready_.empty()) return clock_.now();
  if (queue_.empty()) return std::nullopt;
  return queue_.begin()->first;
}

void Scheduler::advance_past_now(ProbeId id, Entry& e, Nanos now) {
  queue_.erase({e.next_due, id});
  e.next_due += e.interval;
  if (e.next_due <= now) {
    // Whole slots passed while we could not run; jump over them in one step.
    int64_t missed = (now - e.next_due) / e.interval + 1;
    skip(SkipCause::kMissed, static_cast<uint64_t>(missed));
    e.next_due += e.interval * missed;
  }
  queue_.emplace(e.next_due, id);
}

std::vector<Scheduler::Dispatch> Scheduler::take_due(size_t max_runs) {
  std::vector<Dispatch> out;
  const Nanos now = clock_.now();
  while (!ready_.empty() && out.size() < max_runs) {
    const ProbeId id = ready_.back();
    ready_.pop_back();
    auto it = entries_.find(id);
    if (it == entries_.end() || it->second.running || !it->second.deferred) continue;
    Entry& e = it->second;
    const Nanos due = *std::exchange(e.deferred, std::nullopt);
    // The wait for the run before it was the target's time; only what came
    // after that run ended is the loop's lateness.
    const Nanos lag = now - std::max(due, e.finished_at);
    if (admit(e, lag)) out.push_back({id, due, lag});
  }
  while (!queue_.empty() && queue_.begin()->first <= now && out.size() < max_runs) {
    auto [due, id] = *queue_.begin();
    Entry& e = entries_.at(id);
    if (e.deferred) {
      // An older slot still waits: the run outlived its grace after all.
      e.deferred.reset();
      skip(SkipCause::kOverlap);
    }
    if (now - due >= e.interval) {
      // The loop was stalled past whole slots: they are lost; only the latest
      // slot due by now may still run.
      const int64_t behind = (now - due) / e.interval;
      skip(SkipCause::kMissed, static_cast<uint64_t>(behind));
      queue_.erase({due, id});
      due += e.interval * behind;
      e.next_due = due;
      queue_.emplace(due, id);
    }
    if (e.running && on_overlap_) {
      switch (on_overlap_(id)) {
        case Overlap::kEnded:
          e.running = false;
          break;
        case Overlap::kDeferred:
          e.deferred = due;
          advance_past_now(id, e, now);
          continue;
        case Overlap::kSkipped:
          break;
      }
    }
    if (e.running) {
      // The previous run is still going: this slot is lost, never doubled up.
      skip(SkipCause::kOverlap);
      advance_past_now(id, e, now);
      continue;
    }
    advance_past_now(id, e, now);
    if (admit(e, now - due)) out.push_back({id, due, now - due});
  }
  return out;
}

bool Scheduler::admit(Entry& e, Nanos lag) {
  if (lag > admission_bound(e.interval, e.start_bound, e.late_streak)) {
    // Too late to start (DESIGN.md): canaryd's own lateness is counted as
    // such, never handed to the target as a shorter run.
    skip(SkipCause::kLate);
    if (e.late_streak < 32) ++e.late_streak;
    return false;
  }
  e.late_streak = 0;
  e.running = true;
  return true;
}

void Scheduler::finished(ProbeId id) {
  auto it = entries_.find(id);
  if (it == entries_.end()) return;
  it->second.running = false;
  it->second.finished_at = clock_.now();
  if (it->second.deferred) ready_.push_back(id);
}

bool Scheduler::running(ProbeId id) const {
  auto it = entries_.find(id);
  return it != entries_.end() && it->second.running;
}

}  // namespace canaryd
