// The engine's run cycle on a real libuv loop, with small probe types written
// for the test (the Probe interface is ours; no library is mocked). The
// scheduling and deadline paths run on a FakeClock: the test moves the clock,
// calls Engine::retime() and turns the loop without blocking, so nothing
// sleeps and the times asserted are exact.
#include "daemon/engine.h"

#include <fmt/format.h>

#include <catch2/catch.hpp>
#include <functional>
#include <stdexcept>
#include <thread>

using namespace std::chrono_literals;
using namespace canaryd;

namespace {

// Never finishes on its own: only the deadline ends it.
class HangingProbe : public Probe {
 public:
  int* cancels;
  explicit HangingProbe(int* c) : cancels(c) {}
  void start(RunContext&, Done) override {}
  CancelInfo cancel() override {
    ++*cancels;
    CancelInfo info;
    info.phase = "handshake";
    info.phases = {{"dns", 0.001}};
    return info;
  }
  std::string target() const override { return "nowhere"; }
};

class ThrowingProbe : public Probe {
 public:
  void start(RunContext&, Done) override { throw std::runtime_error("bug in probe"); }
  CancelInfo cancel() override { return {}; }
  std::string target() const override { return "bug"; }
};

// Succeeds after a loop timer, like a real network probe.
class TimerProbe : public Probe {
 public:
  explicit TimerProbe(uint64_t ms) : ms_(ms) {}
  ~TimerProbe() override {
    if (timer_)
      uv_close(reinterpret_cast<uv_handle_t*>(timer_),
               [](uv_handle_t* h) { delete reinterpret_cast<uv_timer_t*>(h); });
  }
  void start(RunContext& ctx, Done done) override {
    if (!timer_) {
      timer_ = new uv_timer_t;
      uv_timer_init(ctx.loop, timer_);
    }
    done_ = std::move(done);
    timer_->data = this;
    uv_timer_start(
        timer_,
        [](uv_timer_t* t) {
          auto* self = static_cast<TimerProbe*>(t->data);
          auto d = std::move(self->done_);
          d(ProbeResult::ok({{"total", 0.002}}));
        },
        ms_, 0);
  }
  CancelInfo cancel() override {
    uv_timer_stop(timer_);
    done_ = nullptr;
    CancelInfo info;
    info.phase = "wait";
    return info;
  }
  std::string target() const override { return "timer"; }

 private:
  uint64_t ms_;
  uv_timer_t* timer_ = nullptr;
  Done done_;
};

// A probe the test drives by hand: it keeps what the engine gave it and ends
// its run only when told to.
class ManualProbe : public Probe {
 public:
  ~ManualProbe() override {
    if (reply_)
      uv_close(reinterpret_cast<uv_handle_t*>(reply_),
               [](uv_handle_t* h) { delete reinterpret_cast<uv_async_t*>(h); });
  }
  void start(RunContext& ctx, Done done) override {
    ++starts;
    deadline_ns = ctx.deadline_ns;
    done_ = std::move(done);
    if (!reply_) {
      reply_ = new uv_async_t;
      uv_async_init(ctx.loop, reply_, [](uv_async_t* a) {
        static_cast<ManualProbe*>(a->data)->finish(ProbeResult::ok({{"total", 0.5}}));
      });
      reply_->data = this;
      uv_unref(reinterpret_cast<uv_handle_t*>(reply_));
    }
  }
  CancelInfo cancel() override {
    ++cancels;
    CancelInfo info;
    info.phase = "wait";
    return info;
  }
  std::string target() const override { return "manual"; }

  // Reports a result now. The callback is kept after cancel() on purpose, so
  // a test can play a result that arrives too late.
  void finish(ProbeResult result) {
    Done d = done_;
    if (d) d(std::move(result));
  }
  // Succeeds in the loop's next I/O poll, as a reply that reaches a socket.
  void reply_in_next_poll() { uv_async_send(reply_); }

  int starts = 0;
  int cancels = 0;
  uint64_t deadline_ns = 0;

 private:
  Done done_;
  uv_async_t* reply_ = nullptr;
};

ConfiguredProbe configured(std::string name, ProbePtr p, Duration interval, Duration timeout,
                           std::string fingerprint = "v1") {
  static const ProbeType* http = find_probe_type("http");
  ConfiguredProbe c;
  c.spec.name = std::move(name);
  c.spec.type = "http";
  c.spec.category = "default";
  c.spec.interval = interval;
  c.spec.timeout = timeout;
  c.spec.fingerprint = std::move(fingerprint);
  c.type = http;
  c.probe = std::move(p);
  c.target = std::string("t");
  return c;
}

struct Loop {
  uv_loop_t loop;
  MonotonicClock clock;
  LoopServices services{&loop};
  Loop() { uv_loop_init(&loop); }
  ~Loop() {
    services.shutdown();
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
  }
};

// Turns the loop without blocking until `done` holds. Bounded, so an engine
// that never gets there fails the test instead of hanging it.
bool turn_until(uv_loop_t* loop, const std::function<bool()>& done) {
  for (int i = 0; i < 100'000 && !done(); ++i) uv_run(loop, UV_RUN_NOWAIT);
  return done();
}

// A few turns, to show that something does not happen.
void turn(uv_loop_t* loop) {
  for (int i = 0; i < 20; ++i) uv_run(loop, UV_RUN_NOWAIT);
}

uint64_t ns(Nanos t) { return static_cast<uint64_t>(t.count()); }

// An engine on a FakeClock (at 0) with one scheduled ManualProbe.
struct FakeTimeEngine {
  Loop l;
  FakeClock clock;
  Engine engine{&l.loop, l.services, clock};
  ManualProbe* probe = nullptr;
  std::vector<ProbeResult> results;
  std::vector<double> lags;
  Nanos first_slot{0};  // where the scheduler puts the first run (see scheduler.h)

  FakeTimeEngine(Duration interval, Duration timeout) {
    engine.on_result([this](const RunRecord& r) { results.push_back(r.result); });
    engine.on_lag([this](double seconds) { lags.push_back(seconds); });
    auto p = std::make_unique<ManualProbe>();
    probe = p.get();
    std::vector<ConfiguredProbe> probes;
    probes.push_back(configured("manual", std::move(p), interval, timeout));
    first_slot = Nanos(stable_hash("manual") % ns(interval));
    engine.apply(std::move(probes));
  }
  // Moves the clock to `t` and lets the engine's timers see it; a turn of
  // the loop then runs whatever came due.
  void at(Nanos t) {
    clock.set(t);
    engine.retime();
  }
  bool turn_until(const std::function<bool()>& done) { return ::turn_until(&l.loop, done); }
  void turn() { ::turn(&l.loop); }
};

}  // namespace

TEST_CASE("the deadline cancels a run: the result is timeout with the phase it was in") {
  Loop l;
  int cancels = 0;
  std::vector<ProbeResult> results;
  {
    Engine engine(&l.loop, l.services, l.clock);
    engine.on_result([&](const RunRecord& r) { results.push_back(r.result); });
    std::vector<ConfiguredProbe> probes;
    probes.push_back(configured("hang", std::make_unique<HangingProbe>(&cancels), 1s, 50ms));
    engine.apply(std::move(probes), false);
    engine.run_now({"hang"}, [&] { engine.stop(); });
    uv_run(&l.loop, UV_RUN_DEFAULT);
  }
  REQUIRE(results.size() == 1);
  CHECK_FALSE(results[0].success);
  CHECK(results[0].reason == Reason::kTimeout);
  CHECK(results[0].message == "timed out after 50ms during handshake");
  CHECK(results[0].details.timeout_phase == "handshake");
  CHECK(results[0].phases.size() == 1);
  CHECK(cancels == 1);
}

TEST_CASE("an exception from a probe becomes reason internal and the engine runs on") {
  Loop l;
  std::map<std::string, ProbeResult> results;
  {
    Engine engine(&l.loop, l.services, l.clock);
    engine.on_result([&](const RunRecord& r) { results.emplace(r.spec.name, r.result); });
    std::vector<ConfiguredProbe> probes;
    probes.push_back(configured("bug", std::make_unique<ThrowingProbe>(), 1s, 1s));
    probes.push_back(configured("fine", std::make_unique<TimerProbe>(5), 1s, 1s));
    engine.apply(std::move(probes), false);
    engine.run_now({"bug", "fine"}, [&] { engine.stop(); });
    uv_run(&l.loop, UV_RUN_DEFAULT);
  }
  REQUIRE(results.size() == 2);
  CHECK(results["bug"].reason == Reason::kInternal);
  CHECK(results["bug"].message == "internal error: bug in probe");
  CHECK(results["fine"].success);
}

namespace {

// Runs `step` on the loop after `ms`, as a reload or a signal would arrive.
class LoopStep {
 public:
  LoopStep(uv_loop_t* loop, uint64_t ms, std::function<void()> step) : step_(std::move(step)) {
    timer_ = new uv_timer_t;  // the loop frees it, after its close callback
    uv_timer_init(loop, timer_);
    timer_->data = this;
    uv_timer_start(
        timer_, [](uv_timer_t* t) { static_cast<LoopStep*>(t->data)->step_(); }, ms, 0);
  }
  ~LoopStep() {
    uv_close(reinterpret_cast<uv_handle_t*>(timer_),
             [](uv_handle_t* h) { delete reinterpret_cast<uv_timer_t*>(h); });
  }
  LoopStep(const LoopStep&) = delete;
  LoopStep& operator=(const LoopStep&) = delete;

 private:
  std::function<void()> step_;
  uv_timer_t* timer_;
};

const ConfiguredProbe* find_probe(const Engine& engine, const std::string& name) {
  for (const auto* p : engine.probes())
    if (p->spec.name == name) return p;
  return nullptr;
}

}  // namespace

TEST_CASE("scheduled probes run repeatedly and a reload keeps unchanged probes") {
  Loop l;
  std::map<std::string, int> runs;
  Engine engine(&l.loop, l.services, l.clock);
  engine.on_result([&](const RunRecord& r) { runs[r.spec.name]++; });
  std::vector<ConfiguredProbe> probes;
  probes.push_back(configured("a", std::make_unique<TimerProbe>(1), 100ms, 50ms));
  probes.push_back(configured("b", std::make_unique<TimerProbe>(1), 100ms, 50ms));
  engine.apply(std::move(probes));
  const Probe* a_probe = find_probe(engine, "a")->probe.get();

  // The reload: a is unchanged (a fresh object with the same fingerprint, as
  // a config load builds it), b is gone and c is new.
  std::map<std::string, int> at_reload;
  LoopStep reload(&l.loop, 650, [&] {
    at_reload = runs;
    std::vector<ConfiguredProbe> next;
    next.push_back(configured("a", std::make_unique<TimerProbe>(1), 100ms, 50ms));
    next.push_back(configured("c", std::make_unique<TimerProbe>(1), 100ms, 50ms));
    engine.apply(std::move(next));
  });
  const Probe* a_at_stop = nullptr;
  bool b_at_stop = true;
  LoopStep stop(&l.loop, 1300, [&] {
    a_at_stop = find_probe(engine, "a")->probe.get();
    b_at_stop = find_probe(engine, "b") != nullptr;
    engine.stop();
  });
  uv_run(&l.loop, UV_RUN_DEFAULT);
  // About six runs each in 650 ms; the exact count depends on the machine.
  CHECK(at_reload["a"] >= 3);
  CHECK(at_reload["b"] >= 3);
  CHECK(engine.in_flight() == 0);
  // After it: a runs on as the same probe, b is gone and never runs again,
  // c runs.
  CHECK(a_at_stop == a_probe);
  CHECK(runs["a"] >= at_reload["a"] + 3);
  CHECK_FALSE(b_at_stop);
  CHECK(runs["b"] == at_reload["b"]);
  CHECK(runs["c"] >= 3);
}

TEST_CASE("apply() replaces changed probes and keeps unchanged ones") {
  Loop l;
  Engine engine(&l.loop, l.services, l.clock);
  int cancels = 0;
  std::vector<ConfiguredProbe> first;
  first.push_back(configured("keep", std::make_unique<TimerProbe>(1), 1s, 1s, "same"));
  first.push_back(configured("change", std::make_unique<HangingProbe>(&cancels), 1s, 1s, "v1"));
  engine.apply(std::move(first), false);
  engine.run_now({"change"}, [] {});
  auto before = engine.probes();
  const ConfiguredProbe* kept = nullptr;
  for (auto* p : before)
    if (p->spec.name == "keep") kept = p;

  std::vector<ConfiguredProbe> second;
  second.push_back(configured("keep", std::make_unique<TimerProbe>(1), 1s, 1s, "same"));
  second.push_back(configured("change", std::make_unique<TimerProbe>(1), 1s, 1s, "v2"));
  engine.apply(std::move(second), false);
  // The in-flight run of the changed probe was cancelled; the unchanged probe
  // is the very same object.
  CHECK(cancels == 1);
  CHECK(engine.in_flight() == 0);
  bool same_object = false;
  for (auto* p : engine.probes())
    if (p->spec.name == "keep") same_object = p == kept;
  CHECK(same_object);
  engine.stop();
  uv_run(&l.loop, UV_RUN_DEFAULT);
}

TEST_CASE(
    "a reload keeps an unchanged probe's run and schedule, stops removed ones and "
    "starts new ones") {
  Loop l;
  FakeClock clock;
  std::vector<std::string> results;
  std::vector<double> lags;
  Engine engine(&l.loop, l.services, clock);
  engine.on_result([&](const RunRecord& r) {
    results.push_back(r.spec.name + (r.result.success ? " ok" : " failed"));
  });
  engine.on_lag([&](double seconds) { lags.push_back(seconds); });
  auto slot_of = [](const char* name) { return Nanos(stable_hash(name) % ns(10s)); };
  auto kept = std::make_unique<ManualProbe>();
  ManualProbe* kept_probe = kept.get();
  int removed_cancels = 0;
  {
    std::vector<ConfiguredProbe> first;
    first.push_back(configured("kept", std::move(kept), 10s, 10s));
    first.push_back(
        configured("removed", std::make_unique<HangingProbe>(&removed_cancels), 10s, 10s));
    engine.apply(std::move(first));
  }
  // Both runs in flight, each started on its slot.
  const Nanos kept_slot = slot_of("kept");
  const Nanos removed_slot = slot_of("removed");
  for (Nanos slot : {std::min(kept_slot, removed_slot), std::max(kept_slot, removed_slot)}) {
    clock.set(slot);
    engine.retime();
    size_t started = lags.size() + 1;
    REQUIRE(turn_until(&l.loop, [&] { return lags.size() == started; }));
  }
  REQUIRE(engine.in_flight() == 2);
  const Probe* kept_before = find_probe(engine, "kept")->probe.get();

  // The reload, at the later slot: "kept" comes as a fresh object with the
  // same fingerprint, as a config load builds it; "added" is new.
  const Nanos reload_at = clock.now();
  auto added = std::make_unique<ManualProbe>();
  ManualProbe* added_probe = added.get();
  {
    std::vector<ConfiguredProbe> next;
    next.push_back(configured("kept", std::make_unique<ManualProbe>(), 10s, 10s));
    next.push_back(configured("added", std::move(added), 10s, 10s));
    engine.apply(std::move(next));
  }
  // The removed probe's run was cancelled and reports nothing; the kept one
  // is the same object, still in flight with its deadline.
  CHECK(removed_cancels == 1);
  CHECK(engine.in_flight() == 1);
  CHECK(find_probe(engine, "removed") == nullptr);
  CHECK(find_probe(engine, "kept")->probe.get() == kept_before);
  CHECK(kept_probe->deadline_ns == ns(kept_slot + 10s));
  kept_probe->finish(ProbeResult::ok({{"total", 0.5}}));
  CHECK(results == std::vector<std::string>{"kept ok"});

  // The kept probe's next run comes on its old schedule; the new one's first
  // slot is placed from the reload, as for any new probe.
  const Nanos added_slot = reload_at + slot_of("added");
  if (kept_slot + 10s < added_slot) {
    clock.set(kept_slot + 10s);
    engine.retime();
    REQUIRE(turn_until(&l.loop, [&] { return kept_probe->starts == 2; }));
    CHECK(lags.back() == 0.0);
  }
  clock.set(added_slot);
  engine.retime();
  REQUIRE(turn_until(&l.loop, [&] { return added_probe->starts == 1; }));
  CHECK(lags.back() == 0.0);
  if (kept_probe->starts < 2) {
    clock.set(kept_slot + 10s);
    engine.retime();
    REQUIRE(turn_until(&l.loop, [&] { return kept_probe->starts == 2; }));
    CHECK(lags.back() == 0.0);
  }
  // Past the removed probe's next slot: it never runs again.
  clock.set(std::max(removed_slot + 10s, clock.now()));
  engine.retime();
  turn(&l.loop);
  CHECK(removed_cancels == 1);
  CHECK(results == std::vector<std::string>{"kept ok"});
  CHECK(engine.in_flight() == 2);
  engine.stop();
}

TEST_CASE(
    "a late start: a slot the loop comes to past the start bound is skipped and counted as "
    "late, the slots it stalled past as missed, and the next run is on time with its whole "
    "timeout") {
  FakeTimeEngine t(10s, 2s);
  t.at(t.first_slot + 25s);  // the loop woke two and a half intervals late
  t.turn();
  t.turn();
  CHECK(t.probe->starts == 0);  // never started late, never blamed on the target
  CHECK(t.results.empty());
  CHECK(t.engine.skipped(canaryd::SkipCause::kMissed) == 2);  // first and first + 10s
  CHECK(t.engine.skipped(canaryd::SkipCause::kLate) == 1);    // first + 20s, 5 s late
  CHECK(t.engine.in_flight() == 0);
  // The schedule keeps its phase: the next run is on the next slot, on time.
  t.at(t.first_slot + 30s);
  REQUIRE(t.turn_until([&] { return t.probe->starts == 1; }));
  CHECK(t.lags == std::vector<double>{0.0});
  CHECK(t.probe->deadline_ns == ns(t.first_slot + 32s));
  t.probe->finish(ProbeResult::ok({{"total", 0.5}}));
  REQUIRE(t.results.size() == 1);
  CHECK(t.results[0].success);
  CHECK(t.engine.skipped_total() == 3);
}

TEST_CASE(
    "a late run keeps its whole timeout: the loop's lateness never shortens the time a target "
    "gets") {
  SECTION("late without reaching the next slot") {
    FakeTimeEngine t(10s, 5s);
    t.at(t.first_slot + 50ms);
    REQUIRE(t.turn_until([&] { return t.probe->starts == 1; }));
    CHECK(t.probe->deadline_ns == ns(t.first_slot + 50ms + 5s));
  }
  SECTION("a second late, with timeout == interval: past its next slot") {
    FakeTimeEngine t(10s, 10s);
    t.at(t.first_slot + 1s);
    REQUIRE(t.turn_until([&] { return t.probe->starts == 1; }));
    CHECK(t.probe->deadline_ns == ns(t.first_slot + 1s + 10s));
  }
  SECTION("a short timeout") {
    FakeTimeEngine t(500ms, 500ms);
    t.at(t.first_slot + 40ms);  // within its start bound, a tenth of the timeout
    REQUIRE(t.turn_until([&] { return t.probe->starts == 1; }));
    CHECK(t.probe->deadline_ns == ns(t.first_slot + 40ms + 500ms));
  }
}

TEST_CASE("overlap: a run still in flight when its next slot comes") {
  SECTION(
      "on time with timeout == interval: its deadline is the slot, it ends as a timeout after "
      "its whole timeout and the next run starts on time") {
    FakeTimeEngine t(10s, 10s);
    t.at(t.first_slot);
    REQUIRE(t.turn_until([&] { return t.probe->starts == 1; }));
    REQUIRE(t.probe->deadline_ns == ns(t.first_slot + 10s));
    t.at(t.first_slot + 10s);
    REQUIRE(t.turn_until([&] { return t.probe->starts == 2; }));
    REQUIRE(t.results.size() == 1);
    CHECK(t.results[0].reason == Reason::kTimeout);
    CHECK(t.results[0].details.timeout_phase == "wait");
    CHECK(t.results[0].message == "timed out after 10s during wait");
    CHECK(t.probe->cancels == 1);
    CHECK(t.lags.back() == 0.0);
    CHECK(t.engine.skipped_total() == 0);
    CHECK(t.engine.in_flight() == 1);
  }
  SECTION(
      "started 50 ms late: it keeps its whole timeout, and the next run waits for it instead "
      "of losing the slot") {
    FakeTimeEngine t(10s, 10s);
    t.at(t.first_slot + 50ms);
    REQUIRE(t.turn_until([&] { return t.probe->starts == 1; }));
    t.at(t.first_slot + 10s);
    t.turn();
    CHECK(t.probe->starts == 1);
    CHECK(t.results.empty());
    CHECK(t.engine.skipped_total() == 0);
    t.at(t.first_slot + 10s + 50ms);
    REQUIRE(t.turn_until([&] { return t.probe->starts == 2; }));
    REQUIRE(t.results.size() == 1);
    CHECK(t.results[0].reason == Reason::kTimeout);
    CHECK(t.results[0].message == "timed out after 10s during wait");
    CHECK(t.engine.skipped_total() == 0);
    // It started as soon as the run before it ended: those 50 ms were that
    // run's whole timeout, not the loop's lateness, so its lag is nil.
    CHECK(t.lags.back() == Approx(0.0).margin(0.002));
    CHECK(t.probe->deadline_ns >= ns(t.first_slot + 10s + 50ms + 10s));
  }
  SECTION(
      "its deadline is further off: the slot is skipped and counted, the run goes on to its "
      "deadline") {
    FakeTimeEngine t(10s, 10s);
    t.at(t.first_slot + 1s);
    REQUIRE(t.turn_until([&] { return t.probe->starts == 1; }));
    t.at(t.first_slot + 10s);
    REQUIRE(t.turn_until([&] { return t.engine.skipped_total() == 1; }));
    t.turn();
    CHECK(t.probe->starts == 1);
    CHECK(t.probe->cancels == 0);
    CHECK(t.results.empty());
    CHECK(t.engine.in_flight() == 1);
    t.at(t.first_slot + 11s);
    REQUIRE(t.turn_until([&] { return t.results.size() == 1; }));
    CHECK(t.results[0].reason == Reason::kTimeout);
    CHECK(t.results[0].message == "timed out after 10s during wait");
    CHECK(t.engine.in_flight() == 0);
    CHECK(t.probe->starts == 1);
    // The slot after is run, on time.
    t.at(t.first_slot + 20s);
    REQUIRE(t.turn_until([&] { return t.probe->starts == 2; }));
    CHECK(t.lags.back() == 0.0);
    CHECK(t.engine.skipped_total() == 1);
  }
}

TEST_CASE(
    "deadline after the poll: a deadline that passed while the loop polled ends the run "
    "after this iteration's I/O") {
  FakeTimeEngine t(10s, 2s);
  t.at(t.first_slot);
  REQUIRE(t.turn_until([&] { return t.probe->starts == 1; }));
  CHECK(t.probe->deadline_ns == ns(t.first_slot + 2s));

  SECTION("no reply: a timeout with the phase, and a result that comes later is dropped") {
    t.at(t.first_slot + 2s + 300ms);  // the poll returned 300 ms past the deadline
    REQUIRE(t.turn_until([&] { return t.results.size() == 1; }));
    CHECK(t.results[0].reason == Reason::kTimeout);
    CHECK(t.results[0].details.timeout_phase == "wait");
    CHECK(t.results[0].message == "timed out after 2s during wait");
    CHECK(t.probe->cancels == 1);
    CHECK(t.engine.in_flight() == 0);
    t.probe->finish(ProbeResult::ok({{"total", 0.5}}));
    t.turn();
    CHECK(t.results.size() == 1);
    CHECK(t.engine.in_flight() == 0);
    // The engine runs on: the next slot starts a run.
    t.at(t.first_slot + 10s);
    REQUIRE(t.turn_until([&] { return t.probe->starts == 2; }));
  }
  SECTION("a reply read in the same iteration's poll counts") {
    t.at(t.first_slot + 2s + 300ms);
    t.probe->reply_in_next_poll();
    REQUIRE(t.turn_until([&] { return t.results.size() == 1; }));
    CHECK(t.results[0].success);
    CHECK(t.probe->cancels == 0);
    t.turn();
    CHECK(t.results.size() == 1);
    CHECK(t.engine.in_flight() == 0);
  }
}

// Hangs, and on its first start holds the loop thread for `stall`, as a loop
// buried in its own backlog does.
class StallingProbe : public Probe {
 public:
  explicit StallingProbe(std::chrono::milliseconds stall) : stall_(stall) {}
  void start(RunContext&, Done) override {
    ++starts;
    std::this_thread::sleep_for(std::exchange(stall_, std::chrono::milliseconds(0)));
  }
  CancelInfo cancel() override { return {}; }
  std::string target() const override { return "stall"; }
  int starts = 0;

 private:
  std::chrono::milliseconds stall_;
};

TEST_CASE(
    "a timeout that passes after the loop went a quarter of it without polling is skipped as "
    "starved, not blamed on the target, and on an attentive loop the same hang is a timeout") {
  Loop l;
  const bool stalled = GENERATE(true, false);
  std::vector<ProbeResult> results;
  Engine engine(&l.loop, l.services, l.clock);
  engine.skip_starved_timeouts(0.25);
  engine.on_result([&](const RunRecord& r) { results.push_back(r.result); });
  auto owned = std::make_unique<StallingProbe>(stalled ? 300ms : 0ms);
  StallingProbe* probe = owned.get();
  std::vector<ConfiguredProbe> probes;
  // Its deadline (100 ms) passes during the 300 ms stall.
  probes.push_back(configured("stall", std::move(owned), 1s, 100ms));
  engine.apply(std::move(probes));
  // Blocking turns, so the loop's waits count as idle time; bounded by count
  // (the first slot is at most 1 s away) and not by a clock.
  for (int i = 0; i < 10'000 && results.empty() && engine.skipped(SkipCause::kStarved) == 0; ++i)
    uv_run(&l.loop, UV_RUN_ONCE);
  REQUIRE(probe->starts == 1);
  if (stalled) {
    CHECK(results.empty());
    CHECK(engine.skipped(SkipCause::kStarved) == 1);
  } else {
    REQUIRE(results.size() == 1);
    CHECK(results[0].reason == Reason::kTimeout);
    CHECK(engine.skipped(SkipCause::kStarved) == 0);
  }
  CHECK(engine.in_flight() == 0);
  engine.stop();
}

TEST_CASE(
    "a run canaryd could not make at a limit of its own is a skipped slot with no verdict, and "
    "a one-shot run at that limit fails as internal") {
  FakeTimeEngine t(1s, 500ms);
  t.at(t.first_slot);
  REQUIRE(t.turn_until([&] { return t.probe->starts == 1; }));
  t.probe->finish(ProbeResult::limit("canaryd holds its limit of 16 WebSocket connections"));
  t.turn();
  CHECK(t.results.empty());
  CHECK(t.engine.skipped(SkipCause::kLimit) == 1);
  CHECK(t.engine.in_flight() == 0);
  // The next slot runs as usual.
  t.at(t.first_slot + 1s);
  REQUIRE(t.turn_until([&] { return t.probe->starts == 2; }));
  t.probe->finish(ProbeResult::ok());
  t.turn();
  REQUIRE(t.results.size() == 1);
  CHECK(t.results[0].success);
  // A deploy gate must not pass what was never checked.
  bool done = false;
  t.engine.run_now({"manual"}, [&] { done = true; });
  REQUIRE(t.turn_until([&] { return t.probe->starts == 3; }));
  t.probe->finish(ProbeResult::limit("canaryd holds its limit of 16 WebSocket connections"));
  REQUIRE(t.turn_until([&] { return done; }));
  REQUIRE(t.results.size() == 2);
  CHECK(t.results[1].reason == Reason::kInternal);
  CHECK(t.engine.skipped(SkipCause::kLimit) == 1);
  t.engine.stop();
}

namespace {

// Fails its first `failures` attempts (each a loop timer later, like a
// network probe), then passes; counts the attempts it was started for.
class FlakyProbe : public Probe {
 public:
  explicit FlakyProbe(int failures) : failures_(failures) {}
  ~FlakyProbe() override {
    if (timer_)
      uv_close(reinterpret_cast<uv_handle_t*>(timer_),
               [](uv_handle_t* h) { delete reinterpret_cast<uv_timer_t*>(h); });
  }
  void start(RunContext& ctx, Done done) override {
    ++starts;
    if (!timer_) {
      timer_ = new uv_timer_t;
      uv_timer_init(ctx.loop, timer_);
    }
    done_ = std::move(done);
    timer_->data = this;
    uv_timer_start(
        timer_,
        [](uv_timer_t* t) {
          auto* self = static_cast<FlakyProbe*>(t->data);
          auto d = std::move(self->done_);
          if (self->starts <= self->failures_) {
            d(ProbeResult::failure(Reason::kHttpStatus,
                                   fmt::format("attempt {} failed", self->starts)));
          } else {
            d(ProbeResult::ok({}));
          }
        },
        1, 0);
  }
  CancelInfo cancel() override {
    if (timer_) uv_timer_stop(timer_);
    done_ = nullptr;
    return {};
  }
  std::string target() const override { return "flaky"; }
  int starts = 0;

 private:
  int failures_;
  uv_timer_t* timer_ = nullptr;
  Done done_;
};

struct Retried {
  ProbeResult result;
  int attempts;
};

// One run of a FlakyProbe through run_now, with the given retry settings.
std::vector<Retried> run_flaky(int failures, int attempts, Duration delay, Duration timeout,
                               int* starts) {
  Loop l;
  std::vector<Retried> out;
  {
    Engine engine(&l.loop, l.services, l.clock);
    engine.on_result([&](const RunRecord& r) { out.push_back({r.result, r.attempts}); });
    auto probe = std::make_unique<FlakyProbe>(failures);
    FlakyProbe* raw = probe.get();
    std::vector<ConfiguredProbe> probes;
    probes.push_back(configured("flaky", std::move(probe), 10s, timeout));
    probes.back().spec.attempts = attempts;
    probes.back().spec.retry_delay = delay;
    engine.apply(std::move(probes), false);
    engine.run_now({"flaky"}, [&] {
      *starts = raw->starts;
      engine.stop();
    });
    uv_run(&l.loop, UV_RUN_DEFAULT);
  }
  return out;
}

}  // namespace

TEST_CASE("retries: a run that fails once and then passes is one success of two attempts") {
  int starts = 0;
  auto results = run_flaky(/*failures=*/1, /*attempts=*/3, 10ms, 2s, &starts);
  REQUIRE(results.size() == 1);  // one run, one verdict: the failed attempt is not a result
  CHECK(results[0].result.success);
  CHECK(results[0].attempts == 2);
  CHECK(starts == 2);
}

TEST_CASE("retries: a run that fails every attempt reports the last attempt's failure") {
  int starts = 0;
  auto results = run_flaky(/*failures=*/10, /*attempts=*/3, 0ms, 2s, &starts);
  REQUIRE(results.size() == 1);
  CHECK_FALSE(results[0].result.success);
  CHECK(results[0].result.reason == Reason::kHttpStatus);
  CHECK(results[0].result.message == "attempt 3 failed");
  CHECK(results[0].attempts == 3);
  CHECK(starts == 3);
}

TEST_CASE("retries: no attempt starts that its delay would push past the run's timeout") {
  // Attempt 1 fails at about 1 ms and attempt 2 starts at about 301 ms; a
  // third would start at about 602 ms, past the 500 ms that covers them all.
  int starts = 0;
  auto results = run_flaky(/*failures=*/10, /*attempts=*/3, 300ms, 500ms, &starts);
  REQUIRE(results.size() == 1);
  CHECK(results[0].result.reason == Reason::kHttpStatus);
  CHECK(results[0].result.message == "attempt 2 failed");
  CHECK(results[0].attempts == 2);
  CHECK(starts == 2);
}

TEST_CASE("retries: off by default, a failure is the run's verdict at once") {
  int starts = 0;
  auto results = run_flaky(/*failures=*/1, /*attempts=*/1, 0ms, 2s, &starts);
  REQUIRE(results.size() == 1);
  CHECK_FALSE(results[0].result.success);
  CHECK(results[0].attempts == 1);
  CHECK(starts == 1);
}
