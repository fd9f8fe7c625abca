// A probe loop on a thread of its own. It owns everything its probes'
// runs touch: a libuv loop, its LoopServices (curl multi handles, the lws
// context, c-ares lookups, the blocking-work pools), an engine with its
// scheduler, its ProbeBook and its lag histogram. Nothing on the run path is
// shared with another worker; the HTTP thread reads every worker's book and
// merges them at read time (Envoy's per-worker stats are the model).
//
// Thread-safety: apply(), request_stop() and stop() from the main thread; book() and the
// stats from any thread; everything else is the worker's own.
#pragma once

#include <uv.h>

#include <array>
#include <atomic>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "daemon/clock.h"
#include "daemon/config.h"
#include "daemon/engine.h"
#include "daemon/probe_book.h"

namespace prometheus {
class Histogram;
}

namespace canaryd {

// The worker that runs a probe: a consistent hash of its name (salted apart
// from the shard's), so that every restart with the same count agrees.
int worker_of(std::string_view probe_name, int workers);

// Where the workers stopping together wait for each other, between
// cancelling their runs and tearing down their services: no loop then opens
// sockets while another destroys its lws context (WsService::hold_pipe_number
// says why that matters). A stalled loop holds the others up for `wait` at
// most.
class StopGate {
 public:
  StopGate(size_t parties, std::chrono::milliseconds wait) : left_(parties), wait_(wait) {}
  void arrive_and_wait();

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  size_t left_;
  std::chrono::milliseconds wait_;
};

// Test only: the loop blocks for `duration`, `after` its start, inside a timer
// callback, as a library call that hangs would (`canaryd run
// --debug.stall-probe-loop`, see ServiceOptions::debug_stall).
struct DebugStall {
  std::chrono::milliseconds after{0};
  std::chrono::milliseconds duration{0};
};

class ProbeWorker {
 public:
  // Called on the worker's thread for every result, after the book has it.
  using ResultHook = std::function<void(const RunRecord&, ProbeBook::Transition)>;
  // Worker `index` of `workers`. The loop refreshes its stats and heartbeat
  // every `beat` (the watchdog needs several beats per ping period).
  // With `stall`, the loop stalls once on purpose (a test's; DebugStall).
  ProbeWorker(int index, int workers, prometheus::Histogram& lag, ResultHook on_result,
              std::chrono::milliseconds beat = std::chrono::seconds(1),
              std::optional<DebugStall> stall = std::nullopt);
  ~ProbeWorker();
  ProbeWorker(const ProbeWorker&) = delete;
  ProbeWorker& operator=(const ProbeWorker&) = delete;

  // Installs this worker's share of a config and waits (at most `wait`) until
  // the loop has: a reload answers with the probes in place. False if the loop
  // did not take them in time (they are then installed when it does).
  bool apply(std::vector<ConfiguredProbe> probes,
             std::vector<std::pair<std::string, std::string>> global_labels, int history,
             std::chrono::milliseconds wait);
  // Starts stopping: the loop cancels every run, waits at `gate` (if given)
  // until every worker sharing it has done the same, and closes every handle.
  void request_stop(std::shared_ptr<StopGate> gate);
  // Stops (request_stop without a gate, unless requested already) and joins
  // the thread.
  void stop();

  int index() const { return index_; }
  const ProbeBook& book() const { return book_; }
  // Before the first apply() only (ProbeBook::restore_from).
  ProbeBook& book() { return book_; }

  // Refreshed once a second by the worker's own timer.
  struct Stats {
    std::atomic<uint64_t> heartbeat_ns{0};  // uv_hrtime() of the last refresh
    std::atomic<double> saturation{0};      // share of the last second spent working
    std::atomic<size_t> in_flight{0};
    std::atomic<size_t> probes{0};
    std::array<std::atomic<uint64_t>, kSkipCauseCount> skipped{};  // by SkipCause
  };
  const Stats& stats() const { return stats_; }

 private:
  struct Pending {
    std::vector<ConfiguredProbe> probes;
    std::vector<std::pair<std::string, std::string>> global_labels;
    int history = 0;
    uint64_t ticket = 0;
  };
  void run_loop();
  void take_pending();
  void refresh_stats();

  const int index_;
  prometheus::Histogram& lag_;
  ResultHook on_result_;
  uv_loop_t loop_{};
  MonotonicClock clock_;
  std::unique_ptr<LoopServices> services_;
  std::unique_ptr<Engine> engine_;
  ProbeBook book_;
  Stats stats_;
  uv_async_t wake_{};
  uv_timer_t stats_timer_{};
  uv_timer_t debug_stall_timer_{};  // started only with a DebugStall
  std::chrono::milliseconds debug_stall_for_{0};
  uint64_t last_stats_ns_ = 0;
  uint64_t last_idle_ns_ = 0;

  std::mutex mu_;  // the mailbox below
  std::condition_variable applied_cv_;
  std::optional<Pending> pending_;
  uint64_t next_ticket_ = 0;
  uint64_t applied_ticket_ = 0;
  bool stopping_ = false;
  std::shared_ptr<StopGate> stop_gate_;
  std::thread thread_;
};

}  // namespace canaryd
