#include "daemon/engine.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <exception>
#include <unordered_set>

#include "base/secrets.h"
#include "base/trace_context.h"

namespace canaryd {

struct Engine::Instance {
  Engine* engine;
  ProbeId id;
  ConfiguredProbe cfg;
  uv_timer_t* deadline;  // heap: freed in its close callback
  // Retries: the delay before the next attempt (heap, like `deadline`), and
  // the failed attempt's result while it runs, which stands if the timeout
  // comes first.
  uv_timer_t* retry_timer;
  std::optional<ProbeResult> retry_pending;
  int attempt = 0;                  // of the current run, from 1
  uint64_t attempt_started_ns = 0;  // the run's duration is its last attempt's
  RunContext ctx;
  bool running = false;
  bool scheduled = false;
  bool once = false;  // started by run_now()
  uint64_t generation = 0;
  uint64_t started_ns = 0;
  uint64_t deadline_ns = 0;
  // Real time when the run started (the starvation check; not the injected
  // clock, which tests move by hand).
  uint64_t started_hr = 0;
  // Set when an exception reached a C callback of this run: the run ends as
  // internal with this text, whatever the probe reports.
  std::optional<std::string> fault;
};

Engine::Engine(uv_loop_t* loop, LoopServices& services, const Clock& clock)
    : loop_(loop), services_(services), clock_(clock), scheduler_(clock) {
  tick_ = std::make_unique<PreciseTimer>(loop_, &Engine::on_tick, this);
  check_ = new uv_check_t;
  uv_check_init(loop_, check_);
  check_->data = this;
  idle_ = new uv_idle_t;
  uv_idle_init(loop_, idle_);
  idle_->data = this;
  once_timer_ = new uv_timer_t;
  uv_timer_init(loop_, once_timer_);
  once_timer_->data = this;
  scheduler_.on_overlap([this](ProbeId id) {
    auto it = instances_.find(id);
    if (it == instances_.end() || !it->second->running) return Scheduler::Overlap::kEnded;
    Instance& inst = *it->second;
    const uint64_t now = now_ns();
    if (now >= inst.deadline_ns) {
      expire(inst);
      return Scheduler::Overlap::kEnded;
    }
    // A run never loses time to the loop's lateness (DESIGN.md: canaryd
    // blames no target for its own overload). One that started a little late
    // ends a little after this slot: the next run waits for it rather than
    // losing the slot. Later than that, the slot is skipped and counted.
    const uint64_t timeout_ns = static_cast<uint64_t>(Nanos(inst.cfg.spec.timeout).count());
    const uint64_t grace_ns = std::min<uint64_t>(timeout_ns / 10, 100'000'000);
    if (inst.deadline_ns - now <= grace_ns) return Scheduler::Overlap::kDeferred;
    return Scheduler::Overlap::kSkipped;
  });
}

Engine::~Engine() { stop(); }

uint64_t Engine::now_ns() const { return static_cast<uint64_t>(clock_.now().count()); }

// A W3C trace id: the run's requests carry it in their traceparent headers,
// so the run id an SRE sees is the one to look up in the platform's traces.
std::string Engine::next_run_id() { return new_trace_id(); }

std::vector<const ConfiguredProbe*> Engine::probes() const {
  std::vector<const ConfiguredProbe*> out;
  for (const auto& [id, inst] : instances_) out.push_back(&inst->cfg);
  return out;
}

void Engine::drop_run(Instance& inst) {
  uv_timer_stop(inst.retry_timer);
  inst.retry_pending.reset();
  try {
    inst.cfg.probe->cancel();
  } catch (const std::exception& e) {
    spdlog::error("probe {}: cancel failed: {}", inst.cfg.spec.name, e.what());
  }
  inst.running = false;
  --in_flight_;
}

void Engine::discard(Instance& inst) {
  if (inst.running) drop_run(inst);
  if (inst.scheduled) scheduler_.remove(inst.id);
  for (uv_timer_t* timer : {inst.deadline, inst.retry_timer}) {
    uv_timer_stop(timer);
    timer->data = timer;
    uv_close(reinterpret_cast<uv_handle_t*>(timer),
             [](uv_handle_t* h) { delete static_cast<uv_timer_t*>(h->data); });
  }
}

void Engine::apply(std::vector<ConfiguredProbe> probes, bool schedule) {
  std::unordered_set<std::string> keep;
  for (const auto& p : probes) {
    auto it = by_name_.find(p.spec.name);
    if (it != by_name_.end() &&
        instances_.at(it->second)->cfg.spec.fingerprint == p.spec.fingerprint)
      keep.insert(p.spec.name);
  }
  for (auto it = instances_.begin(); it != instances_.end();) {
    if (keep.count(it->second->cfg.spec.name)) {
      ++it;
      continue;
    }
    discard(*it->second);
    by_name_.erase(it->second->cfg.spec.name);
    it = instances_.erase(it);
  }
  for (auto& p : probes) {
    if (keep.count(p.spec.name)) continue;
    auto inst = std::make_unique<Instance>();
    inst->engine = this;
    inst->id = next_id_++;
    inst->deadline = new uv_timer_t;
    uv_timer_init(loop_, inst->deadline);
    inst->deadline->data = inst.get();
    inst->retry_timer = new uv_timer_t;
    uv_timer_init(loop_, inst->retry_timer);
    inst->retry_timer->data = inst.get();
    inst->cfg = std::move(p);
    if (schedule) {
      scheduler_.add(inst->id, inst->cfg.spec.name,
                     std::chrono::duration_cast<Nanos>(inst->cfg.spec.interval),
                     std::chrono::duration_cast<Nanos>(inst->cfg.spec.timeout));
      inst->scheduled = true;
    }
    by_name_[inst->cfg.spec.name] = inst->id;
    instances_[inst->id] = std::move(inst);
  }
  arm_tick();
}

void Engine::arm_tick() {
  if (stopped_) return;
  auto due = scheduler_.next_due();
  if (due == tick_armed_for_) return;  // still armed for it (or stopped, and nothing is due)
  tick_armed_for_ = due;
  if (!due) {
    tick_->stop();
    return;
  }
  tick_->start(*due - clock_.now());
}

void Engine::on_tick(void* engine) {
  auto* self = static_cast<Engine*>(engine);
  self->tick_armed_for_.reset();  // fired: whatever is due next needs arming
  for (const auto& d : self->scheduler_.take_due(kStartsPerTurn)) {
    auto it = self->instances_.find(d.id);
    if (it == self->instances_.end()) continue;
    if (self->on_lag_) self->on_lag_(std::chrono::duration<double>(d.lag).count());
    self->start_run(*it->second);
  }
  self->arm_tick();
}

void Engine::retime() {
  if (stopped_) return;
  // The clock moved (tests move a FakeClock): the same due time is a
  // different wait now.
  tick_armed_for_.reset();
  for (auto& [id, inst] : instances_) {
    // A deadline that already fired waits for the poll (expiring_); arming it
    // again would only queue the same run twice.
    if (inst->running && uv_is_active(reinterpret_cast<uv_handle_t*>(inst->deadline)))
      arm_deadline(*inst);
  }
  arm_tick();
}

void Engine::start_run(Instance& inst) {
  if (inst.running) return;
  inst.running = true;
  ++in_flight_;
  const uint64_t generation = ++inst.generation;
  inst.started_ns = now_ns();
  inst.started_hr = uv_hrtime();
  inst.attempt = 1;
  inst.retry_pending.reset();
  // One timeout covers every attempt of the run.
  const uint64_t timeout_ns = static_cast<uint64_t>(Nanos(inst.cfg.spec.timeout).count());
  inst.deadline_ns = inst.started_ns + timeout_ns;
  const ProbeId id = inst.id;
  inst.ctx =
      RunContext{&services_,
                 loop_,
                 next_run_id(),
                 inst.deadline_ns,
                 [this, id, generation](std::string_view what) { fail_run(id, generation, what); },
                 &global_secrets(),
                 inst.cfg.spec.trace_sampled};
  arm_deadline(inst);
  start_attempt(inst);
}

// Each attempt starts from nothing: the probe sets up its connection, name
// lookup and TLS afresh on every start().
void Engine::start_attempt(Instance& inst) {
  const ProbeId id = inst.id;
  const uint64_t generation = inst.generation;
  inst.fault.reset();
  inst.attempt_started_ns = now_ns();
  try {
    inst.cfg.probe->start(inst.ctx, [this, id, generation](ProbeResult r) {
      complete(id, generation, std::move(r));
    });
  } catch (const std::exception& e) {
    // A probe bug must cost one result, not the daemon.
    if (inst.running && inst.generation == generation) {
      try {
        inst.cfg.probe->cancel();
      } catch (...) {
      }
      complete(
          id, generation,
          ProbeResult::failure(Reason::kInternal, fmt::format("internal error: {}", e.what())));
    }
  }
}

// A failed attempt with attempts and time left is tried again after the
// delay, from a timer: never inside the probe's own callback, where it may
// not be started again. A failure of canaryd's own (internal, a limit) is
// not the target's and is not retried.
bool Engine::retry_later(Instance& inst, ProbeResult& result) {
  if (result.success || result.canaryd_limit || result.reason == Reason::kInternal ||
      inst.attempt >= inst.cfg.spec.attempts)
    return false;
  const auto delay = inst.cfg.spec.retry_delay;
  const uint64_t delay_ns = static_cast<uint64_t>(Nanos(delay).count());
  if (now_ns() + delay_ns >= inst.deadline_ns) return false;
  inst.retry_pending = std::move(result);
  uv_timer_start(inst.retry_timer, &Engine::on_retry, static_cast<uint64_t>(delay.count()), 0);
  return true;
}

void Engine::on_retry(uv_timer_t* timer) {
  auto* inst = static_cast<Instance*>(timer->data);
  if (!inst->running || !inst->retry_pending) return;
  guarded("a retry", [inst] {
    inst->retry_pending.reset();
    ++inst->attempt;
    inst->engine->start_attempt(*inst);
  });
}

void Engine::arm_deadline(Instance& inst) {
  // The wait comes from the injected clock, not from the loop's own time, so
  // a test that moves a FakeClock and calls retime() fires this very timer.
  const uint64_t now = now_ns();
  const uint64_t wait_ns = inst.deadline_ns > now ? inst.deadline_ns - now : 0;
  uv_update_time(loop_);
  uv_timer_start(inst.deadline, &Engine::on_deadline, (wait_ns + 999'999) / 1'000'000, 0);
}

void Engine::on_deadline(uv_timer_t* timer) {
  auto* inst = static_cast<Instance*>(timer->data);
  if (!inst->running) return;
  // libuv runs timers before it polls for I/O: after a long loop iteration a
  // response may already be waiting on the socket. Expire the run only after
  // this iteration's poll, so a reply that made it in time counts.
  guarded("a deadline", [inst] { inst->engine->end_after_poll(*inst); });
}

void Engine::end_after_poll(Instance& inst) {
  // The idle handle keeps this iteration's poll from blocking.
  if (expiring_.empty()) {
    uv_check_start(check_, &Engine::on_check);
    uv_idle_start(idle_, [](uv_idle_t*) {});
  }
  expiring_.emplace_back(inst.id, inst.generation);
}

void Engine::on_check(uv_check_t* check) {
  auto* self = static_cast<Engine*>(check->data);
  guarded("ending runs", [self] { self->end_expiring(); });
}

void Engine::end_expiring() {
  auto expiring = std::move(expiring_);
  expiring_.clear();
  uv_check_stop(check_);
  uv_idle_stop(idle_);
  for (auto [id, generation] : expiring) {
    auto it = instances_.find(id);
    if (it == instances_.end()) continue;
    Instance& inst = *it->second;
    if (!inst.running || inst.generation != generation) continue;
    if (!inst.fault) {
      expire(inst);
      continue;
    }
    try {
      inst.cfg.probe->cancel();
    } catch (const std::exception& e) {
      spdlog::error("probe {}: cancel failed: {}", inst.cfg.spec.name, e.what());
    }
    complete(id, generation, ProbeResult::failure(Reason::kInternal, ""));
  }
}

void Engine::fail_run(ProbeId id, uint64_t generation, std::string_view what) {
  auto it = instances_.find(id);
  if (it == instances_.end()) return;
  Instance& inst = *it->second;
  spdlog::error("probe {}: internal error in {}", inst.cfg.spec.name, what);
  if (!inst.running || inst.generation != generation || inst.fault) return;
  inst.fault = std::string(what);
  // We may be deep inside a library's callback (libcurl's, lws's), where
  // the probe must not tear its transfer down: cancel it once this loop
  // iteration's callbacks are over, as a deadline does.
  end_after_poll(inst);
}

void Engine::skip_starved_timeouts(double share) {
  starved_share_ = share;
  if (share <= 0 || prepare_ || stopped_) return;
  uv_loop_configure(loop_, UV_METRICS_IDLE_TIME);
  prepare_ = new uv_prepare_t;
  uv_prepare_init(loop_, prepare_);
  prepare_->data = this;
  uv_prepare_start(prepare_, &Engine::on_prepare);
  // Measuring must never keep a loop alive on its own.
  uv_unref(reinterpret_cast<uv_handle_t*>(prepare_));
  last_prepare_hr_ = uv_hrtime();
  last_prepare_idle_ = uv_metrics_idle_time(loop_);
}

void Engine::on_prepare(uv_prepare_t* prepare) {
  // Called just before each poll: the time since the previous one, less what
  // that poll waited, is how long the loop could not read a socket.
  auto* self = static_cast<Engine*>(prepare->data);
  const uint64_t now = uv_hrtime();
  const uint64_t idle = uv_metrics_idle_time(self->loop_);
  const uint64_t wall = now - self->last_prepare_hr_;
  const uint64_t waited = idle - self->last_prepare_idle_;
  const uint64_t busy = wall > waited ? wall - waited : 0;
  self->last_prepare_hr_ = now;
  self->last_prepare_idle_ = idle;
  constexpr uint64_t kWorthKeeping = 1'000'000;   // 1 ms
  constexpr uint64_t kKeepFor = 300'000'000'000;  // longer than any timeout
  constexpr size_t kMaxKept = 4096;
  if (busy >= kWorthKeeping) self->stretches_.emplace_back(now, busy);
  while (!self->stretches_.empty() &&
         (self->stretches_.size() > kMaxKept || now - self->stretches_.front().first > kKeepFor))
    self->stretches_.pop_front();
}

uint64_t Engine::longest_stretch_since(uint64_t since_hr) const {
  // The stretch going on now (the deadline is judged mid-turn) counts too.
  const uint64_t now = uv_hrtime();
  const uint64_t waited = uv_metrics_idle_time(loop_) - last_prepare_idle_;
  const uint64_t wall = now - last_prepare_hr_;
  uint64_t longest = wall > waited ? wall - waited : 0;
  for (auto it = stretches_.rbegin(); it != stretches_.rend() && it->first >= since_hr; ++it)
    longest = std::max(longest, it->second);
  return longest;
}

bool Engine::starved(const Instance& inst) const {
  // A one-shot run (the deploy gate) always gets its verdict.
  if (starved_share_ <= 0 || !inst.scheduled || inst.once) return false;
  const auto timeout_ns = static_cast<double>(Nanos(inst.cfg.spec.timeout).count());
  return static_cast<double>(longest_stretch_since(inst.started_hr)) >= starved_share_ * timeout_ns;
}

void Engine::abandon(Instance& inst) {
  drop_run(inst);
  uv_timer_stop(inst.deadline);
  scheduler_.finished(inst.id);
  scheduler_.count_skip(SkipCause::kStarved);
  arm_tick();
}

void Engine::expire(Instance& inst) {
  if (inst.retry_pending) {
    // The timeout came during the delay before a retry: the last attempt's
    // verdict stands, and no attempt is left.
    uv_timer_stop(inst.retry_timer);
    ProbeResult last = std::move(*inst.retry_pending);
    inst.retry_pending.reset();
    inst.attempt = inst.cfg.spec.attempts;
    complete(inst.id, inst.generation, std::move(last));
    return;
  }
  if (starved(inst)) {
    abandon(inst);
    return;
  }
  CancelInfo info;
  try {
    info = inst.cfg.probe->cancel();
  } catch (const std::exception& e) {
    spdlog::error("probe {}: cancel failed: {}", inst.cfg.spec.name, e.what());
  }
  std::string phase = info.phase.empty() ? "run" : info.phase;
  double allowed = static_cast<double>(inst.deadline_ns - inst.started_ns) / 1e9;
  auto result = ProbeResult::failure(
      Reason::kTimeout,
      fmt::format("timed out after {} during {}{}",
                  format_duration(std::chrono::duration_cast<Duration>(
                      std::chrono::duration<double>(allowed) + std::chrono::microseconds(500))),
                  phase, info.note.empty() ? "" : " (" + info.note + ")"),
      std::move(info.phases));
  result.details = std::move(info.details);
  result.details.timeout_phase = phase;
  complete(inst.id, inst.generation, std::move(result));
}

void Engine::complete(ProbeId id, uint64_t generation, ProbeResult result) {
  auto it = instances_.find(id);
  if (it == instances_.end()) return;
  Instance& inst = *it->second;
  // A result that arrives after the deadline fired belongs to a cancelled run.
  if (!inst.running || inst.generation != generation) return;
  if (inst.fault) {
    // The probe may have carried on after the exception; its result is not
    // to be trusted.
    result = ProbeResult::failure(Reason::kInternal, "internal error in " + *inst.fault,
                                  std::move(result.phases));
    inst.fault.reset();
  }
  if (retry_later(inst, result)) return;
  inst.running = false;
  --in_flight_;
  uv_timer_stop(inst.deadline);
  if (inst.scheduled) {
    scheduler_.finished(id);
    arm_tick();  // a slot may be waiting for this run
  }
  if (result.canaryd_limit && inst.scheduled && !inst.once) {
    // canaryd's own limit says nothing of the target: no verdict, and the
    // slot counts as skipped, which the overload alert sees. The log says
    // so at most once a minute, however many runs it skips.
    scheduler_.count_skip(SkipCause::kLimit);
    ++limit_skips_unlogged_;
    const uint64_t now = uv_hrtime();
    if (limit_logged_hr_ == 0 || now - limit_logged_hr_ >= 60'000'000'000ULL) {
      spdlog::warn("{} run(s) not made, the last of probe {}: {}", limit_skips_unlogged_,
                   inst.cfg.spec.name, target_text(result.message, kResultMessageBytes));
      limit_skips_unlogged_ = 0;
      limit_logged_hr_ = now;
    }
    return;
  }
  double duration = static_cast<double>(now_ns() - inst.attempt_started_ns) / 1e9;
  // The backstop for every probe: a message may quote a target or a library
  // (a URL, a header, a server's error), so it is redacted, clipped and made
  // one line here whatever the probe did.
  result.message = target_text(result.message, kResultMessageBytes);
  // The probe's own end-to-end figure (e.g. curl's timer) is more exact than
  // ours, which includes loop latency.
  for (const auto& [phase, seconds] : result.phases) {
    if (phase == "total" && seconds > 0) duration = seconds;
  }
  if (on_result_) {
    RunRecord record{inst.cfg.spec,   inst.cfg.target, result,
                     inst.ctx.run_id, duration,        std::chrono::system_clock::now(),
                     inst.attempt};
    try {
      on_result_(record);
    } catch (const std::exception& e) {
      spdlog::error("recording result of {} failed: {}", inst.cfg.spec.name, e.what());
    }
  }
  if (inst.once) {
    inst.once = false;
    // We are inside the probe's own callback: whoever waits may tear the
    // engine down, so tell them on the next loop turn.
    if (once_pending_ > 0 && --once_pending_ == 0 && once_done_)
      uv_timer_start(once_timer_, &Engine::on_once_done, 0, 0);
  }
}

void Engine::run_now(const std::vector<std::string>& names, std::function<void()> all_done) {
  std::vector<Instance*> targets;
  for (const auto& name : names) {
    auto it = by_name_.find(name);
    if (it != by_name_.end()) targets.push_back(instances_.at(it->second).get());
  }
  once_done_ = std::move(all_done);
  once_pending_ = targets.size();
  if (targets.empty()) {
    uv_timer_start(once_timer_, &Engine::on_once_done, 0, 0);
    return;
  }
  for (Instance* inst : targets) {
    inst->once = true;
    start_run(*inst);
  }
}

void Engine::on_once_done(uv_timer_t* timer) {
  auto* self = static_cast<Engine*>(timer->data);
  auto done = std::move(self->once_done_);
  self->once_done_ = nullptr;
  if (done) guarded("the end of a one-shot run", done);
}

void Engine::stop() {
  if (stopped_) return;
  stopped_ = true;
  for (auto& [id, inst] : instances_) discard(*inst);
  instances_.clear();
  by_name_.clear();
  tick_.reset();
  expiring_.clear();
  check_->data = check_;
  uv_close(reinterpret_cast<uv_handle_t*>(check_),
           [](uv_handle_t* h) { delete static_cast<uv_check_t*>(h->data); });
  idle_->data = idle_;
  uv_close(reinterpret_cast<uv_handle_t*>(idle_),
           [](uv_handle_t* h) { delete static_cast<uv_idle_t*>(h->data); });
  if (prepare_) {
    prepare_->data = prepare_;
    uv_close(reinterpret_cast<uv_handle_t*>(prepare_),
             [](uv_handle_t* h) { delete static_cast<uv_prepare_t*>(h->data); });
  }
  uv_timer_stop(once_timer_);
  once_timer_->data = once_timer_;
  uv_close(reinterpret_cast<uv_handle_t*>(once_timer_),
           [](uv_handle_t* h) { delete static_cast<uv_timer_t*>(h->data); });
}

}  // namespace canaryd
