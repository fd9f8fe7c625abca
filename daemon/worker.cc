#include "daemon/worker.h"

#include <prometheus/histogram.h>
#include <spdlog/spdlog.h>

#include <algorithm>

#include "base/guard.h"
#include "daemon/shard.h"
#include "probes/common/loop_close.h"

namespace canaryd {

int worker_of(std::string_view probe_name, int workers) {
  if (workers <= 1) return 0;
  // A different key from the shard's (shard.h): with the same one, the probes
  // of shard 1 of 2 would all land on worker 1 of 2.
  const uint64_t key = stable_hash(probe_name) ^ 0x9e3779b97f4a7c15ULL;
  return jump_consistent_hash(key * 0xff51afd7ed558ccdULL, workers);
}

ProbeWorker::ProbeWorker(int index, int workers, prometheus::Histogram& lag, ResultHook on_result,
                         std::chrono::milliseconds beat, std::optional<DebugStall> stall)
    : index_(index), lag_(lag), on_result_(std::move(on_result)) {
  uv_loop_init(&loop_);
  // Idle time (time blocked in the poll) gives the loop's saturation.
  uv_loop_configure(&loop_, UV_METRICS_IDLE_TIME);
  services_ = std::make_unique<LoopServices>(&loop_, workers);
  engine_ = std::make_unique<Engine>(&loop_, *services_, clock_);
  engine_->on_result([this](const RunRecord& rec) {
    auto transition = book_.record(rec);
    if (on_result_) on_result_(rec, transition);
  });
  engine_->on_lag([this](double s) { lag_.Observe(s); });
  // Only a stretch as long as the whole timeout without a poll: then the
  // loop cannot have read any reply in time, whatever the exchange. Shorter
  // bounds (a quarter, a half) judged the fault matrix's hostile timeouts
  // starved under ASan on a machine at load 9, where its loop still polls
  // often enough for those verdicts; admission control (start_bound) and the
  // per-turn start budget keep healthy runs served under overload.
  engine_->skip_starved_timeouts(1.0);
  uv_async_init(&loop_, &wake_, [](uv_async_t* h) {
    guarded("a probe set for a worker",
            [h] { static_cast<ProbeWorker*>(h->data)->take_pending(); });
  });
  wake_.data = this;
  uv_timer_init(&loop_, &stats_timer_);
  stats_timer_.data = this;
  uv_timer_start(
      &stats_timer_,
      [](uv_timer_t* h) {
        guarded("worker stats", [h] { static_cast<ProbeWorker*>(h->data)->refresh_stats(); });
      },
      0, static_cast<uint64_t>(std::max<int64_t>(1, beat.count())));
  uv_timer_init(&loop_, &debug_stall_timer_);
  debug_stall_timer_.data = this;
  if (stall) {
    debug_stall_for_ = stall->duration;
    uv_timer_start(
        &debug_stall_timer_,
        [](uv_timer_t* h) {
          guarded("a debug stall", [h] {
            auto* self = static_cast<ProbeWorker*>(h->data);
            spdlog::warn("probe loop {} stalls for {} ms on purpose (--debug.stall-probe-loop)",
                         self->index_, self->debug_stall_for_.count());
            // Blocks the loop, as a hung library call would: no timer, probe
            // or heartbeat of this loop runs meanwhile.
            std::this_thread::sleep_for(self->debug_stall_for_);
          });
        },
        static_cast<uint64_t>(std::max<int64_t>(0, stall->after.count())), 0);
  }
  thread_ = std::thread([this] { run_loop(); });
}

ProbeWorker::~ProbeWorker() { stop(); }

void ProbeWorker::run_loop() {
  uv_run(&loop_, UV_RUN_DEFAULT);
  // Stopped: the engine and the services let go of their handles, and the
  // loop runs once more for their close callbacks.
  engine_.reset();
  services_.reset();
  close_probe_loop(
      &loop_, [this](const std::string& what) { spdlog::warn("probe loop {}: {}", index_, what); });
}

bool ProbeWorker::apply(std::vector<ConfiguredProbe> probes,
                        std::vector<std::pair<std::string, std::string>> global_labels, int history,
                        std::chrono::milliseconds wait) {
  std::unique_lock lock(mu_);
  if (stopping_) return false;
  const uint64_t ticket = ++next_ticket_;
  // A newer set replaces one the loop has not taken yet.
  pending_ = Pending{std::move(probes), std::move(global_labels), history, ticket};
  uv_async_send(&wake_);
  return applied_cv_.wait_for(lock, wait, [&] { return applied_ticket_ >= ticket; });
}

void ProbeWorker::take_pending() {
  std::optional<Pending> p;
  bool stop = false;
  std::shared_ptr<StopGate> gate;
  {
    std::lock_guard lock(mu_);
    p.swap(pending_);
    stop = stopping_;
    gate = stop_gate_;
  }
  if (stop) {
    engine_->stop();
    // Blocking: lws must not serve the cancelled connections before their
    // context goes (they would then close on lws's own paths).
    if (gate) gate->arrive_and_wait();
    services_->shutdown();
    for (auto* h :
         {reinterpret_cast<uv_handle_t*>(&wake_), reinterpret_cast<uv_handle_t*>(&stats_timer_),
          reinterpret_cast<uv_handle_t*>(&debug_stall_timer_)}) {
      if (!uv_is_closing(h)) uv_close(h, nullptr);
    }
    return;
  }
  if (!p) return;
  engine_->apply(std::move(p->probes));
  book_.install(engine_->probes(), p->global_labels, p->history);
  refresh_stats();
  {
    std::lock_guard lock(mu_);
    applied_ticket_ = std::max(applied_ticket_, p->ticket);
  }
  applied_cv_.notify_all();
}

void ProbeWorker::refresh_stats() {
  const uint64_t now = uv_hrtime();
  const uint64_t idle = uv_metrics_idle_time(&loop_);
  if (last_stats_ns_ != 0 && now > last_stats_ns_) {
    const double wall = static_cast<double>(now - last_stats_ns_);
    const double idle_share = static_cast<double>(idle - last_idle_ns_) / wall;
    stats_.saturation = std::clamp(1.0 - idle_share, 0.0, 1.0);
  }
  last_stats_ns_ = now;
  last_idle_ns_ = idle;
  stats_.in_flight = engine_->in_flight();
  stats_.probes = engine_->probe_count();
  for (SkipCause cause : kSkipCauses)
    stats_.skipped[static_cast<size_t>(cause)] = engine_->skipped(cause);
  stats_.heartbeat_ns = now;
}

void StopGate::arrive_and_wait() {
  std::unique_lock lock(mu_);
  if (left_ > 0) --left_;
  cv_.notify_all();
  cv_.wait_for(lock, wait_, [&] { return left_ == 0; });
}

void ProbeWorker::request_stop(std::shared_ptr<StopGate> gate) {
  std::lock_guard lock(mu_);
  if (stopping_) return;
  stopping_ = true;
  stop_gate_ = std::move(gate);
  uv_async_send(&wake_);
}

void ProbeWorker::stop() {
  request_stop(nullptr);
  applied_cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

}  // namespace canaryd
