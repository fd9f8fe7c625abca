// The run cycle of every probe, on the one libuv loop: the scheduler says what
// is due, the engine starts it, arms its deadline, cancels it on timeout and
// hands the result on. There is no thread per run; a hung target costs one
// timer and whatever the probe holds, nothing more.
#pragma once

#include <uv.h>

#include <chrono>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "daemon/clock.h"
#include "daemon/config.h"
#include "daemon/precise_timer.h"
#include "daemon/scheduler.h"

namespace canaryd {

// One finished run, as sinks (metrics, state, log) see it.
struct RunRecord {
  const ProbeSpec& spec;
  const std::string& target;
  const ProbeResult& result;
  std::string run_id;
  double duration_seconds;                         // monotonic: the last attempt's start to result
  std::chrono::system_clock::time_point finished;  // wall clock, for timestamps only
  // Attempts made (retries, ProbeSpec::attempts): every one but the last failed.
  int attempts = 1;
};

// Thread-safety: loop thread only.
class Engine {
 public:
  // `clock` times everything the engine does. The daemon passes a
  // MonotonicClock, which must stay uv_hrtime() (see clock.h); tests pass a
  // FakeClock and call retime() after moving it.
  Engine(uv_loop_t* loop, LoopServices& services, const Clock& clock);
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  using ResultCallback = std::function<void(const RunRecord&)>;
  using LagCallback = std::function<void(double seconds)>;
  void on_result(ResultCallback cb) { on_result_ = std::move(cb); }
  void on_lag(LagCallback cb) { on_lag_ = std::move(cb); }

  // Installs a probe set. A probe whose name and fingerprint are unchanged
  // keeps its schedule and its in-flight run; changed and removed ones are
  // cancelled and replaced. With `schedule` false the probes only run when
  // run_now() says so (the one-shot deploy gate).
  void apply(std::vector<ConfiguredProbe> probes, bool schedule = true);

  // Starts the given probes immediately, outside the schedule; `all_done` runs
  // once every one of them has a result, on a later loop turn (never inside a
  // probe's callback, so it may stop the engine and destroy the probes).
  void run_now(const std::vector<std::string>& names, std::function<void()> all_done);

  // Cancels every in-flight run without recording it and closes all handles.
  void stop();

  // Re-arms the next-slot timer and every pending deadline from the clock's
  // reading now. The real clock moves with the loop's own time, so the daemon
  // never needs it; a test calls it after moving a FakeClock, then turns the
  // loop, and the same timer callbacks as in production fire.
  void retime();

  // A scheduled run whose deadline passes after its loop went without
  // polling for I/O for `share` of its timeout or more, at a stretch, is
  // ended without a verdict and counted as skipped, cause starved: a reply
  // may have waited unread through that stretch, and a few such waits (one
  // per step of an exchange) add up to the timeout, so the timeout says
  // nothing about the target. Off (0) by default. Turns on libuv's idle-time
  // metric, which tells a busy stretch from a wait in the poll.
  void skip_starved_timeouts(double share);

  // Runs started per turn of the loop at most. The rest stay due for the next
  // turn, after a poll: the I/O of runs in flight is never queued behind a
  // burst of starts, which would stretch a turn to hundreds of milliseconds.
  static constexpr size_t kStartsPerTurn = 32;

  size_t in_flight() const { return in_flight_; }
  size_t probe_count() const { return instances_.size(); }
  uint64_t skipped_total() const { return scheduler_.skipped_total(); }
  uint64_t skipped(SkipCause cause) const { return scheduler_.skipped(cause); }
  std::vector<const ConfiguredProbe*> probes() const;

 private:
  struct Instance;

  void arm_tick();
  static void on_tick(void* self);
  static void on_deadline(uv_timer_t* timer);
  static void on_check(uv_check_t* check);
  static void on_once_done(uv_timer_t* timer);
  static void on_retry(uv_timer_t* timer);
  void start_run(Instance& inst);
  void start_attempt(Instance& inst);
  bool retry_later(Instance& inst, ProbeResult& result);
  void arm_deadline(Instance& inst);
  uint64_t now_ns() const;
  void end_after_poll(Instance& inst);
  void end_expiring();
  void expire(Instance& inst);
  bool starved(const Instance& inst) const;
  static void on_prepare(uv_prepare_t* prepare);
  uint64_t longest_stretch_since(uint64_t since_hr) const;
  void abandon(Instance& inst);
  // Cancels a running run that gets no result: it is no longer in flight.
  void drop_run(Instance& inst);
  void fail_run(ProbeId id, uint64_t generation, std::string_view what);
  void complete(ProbeId id, uint64_t generation, ProbeResult result);
  void discard(Instance& inst);
  std::string next_run_id();

  uv_loop_t* loop_;
  LoopServices& services_;
  // Every time reading: starts, deadlines, durations, the overlap check. What
  // it reads is what probes get as RunContext::deadline_ns.
  const Clock& clock_;
  Scheduler scheduler_;
  std::unique_ptr<PreciseTimer> tick_;  // runs start on time to the microsecond
  // The due time tick_ is armed for and has not fired yet. Every run's end
  // asks for the tick again, and it is almost always the same: re-arming
  // would be a timerfd_settime per run for nothing.
  std::optional<Nanos> tick_armed_for_;
  // Runs that end after this loop iteration's I/O poll: deadlines that fired
  // (see on_deadline) and runs an exception ended (fail_run): (probe,
  // generation).
  std::vector<std::pair<ProbeId, uint64_t>> expiring_;
  uv_check_t* check_;       // heap
  uv_timer_t* once_timer_;  // heap: runs run_now()'s all_done on a fresh loop turn
  uv_idle_t* idle_;         // heap
  std::unordered_map<ProbeId, std::unique_ptr<Instance>> instances_;
  std::unordered_map<std::string, ProbeId> by_name_;
  ProbeId next_id_ = 1;
  size_t in_flight_ = 0;
  bool stopped_ = false;
  double starved_share_ = 0;
  // The loop's busy stretches (time between two polls, less the time the
  // poll waited) of 1 ms or more: (end, length) in uv_hrtime() nanoseconds,
  // oldest first, the last few minutes.
  uv_prepare_t* prepare_ = nullptr;  // heap
  std::deque<std::pair<uint64_t, uint64_t>> stretches_;
  uint64_t last_prepare_hr_ = 0;
  // Runs skipped at a limit of canaryd's own since it last said so in the log.
  uint64_t limit_skips_unlogged_ = 0;
  uint64_t limit_logged_hr_ = 0;
  uint64_t last_prepare_idle_ = 0;
  ResultCallback on_result_;
  LagCallback on_lag_;
  std::function<void()> once_done_;
  size_t once_pending_ = 0;
};

}  // namespace canaryd
