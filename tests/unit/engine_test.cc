// The engine's run cycle on a real libuv loop, with small probe types written
// for the test (the Probe interface is ours; no library is mocked).
#include "daemon/engine.h"

#include <catch2/catch.hpp>
#include <stdexcept>

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

TEST_CASE("scheduled probes run repeatedly and a reload keeps unchanged probes") {
  Loop l;
  std::map<std::string, int> runs;
  Engine engine(&l.loop, l.services, l.clock);
  engine.on_result([&](const RunRecord& r) { runs[r.spec.name]++; });
  std::vector<ConfiguredProbe> probes;
  probes.push_back(configured("a", std::make_unique<TimerProbe>(1), 100ms, 50ms));
  probes.push_back(configured("b", std::make_unique<TimerProbe>(1), 100ms, 50ms));
  engine.apply(std::move(probes));

  uv_timer_t stop_timer;
  uv_timer_init(&l.loop, &stop_timer);
  stop_timer.data = &engine;
  uv_timer_start(
      &stop_timer, [](uv_timer_t* t) { static_cast<Engine*>(t->data)->stop(); }, 650, 0);
  uv_run(&l.loop, UV_RUN_DEFAULT);
  uv_close(reinterpret_cast<uv_handle_t*>(&stop_timer), nullptr);
  // About six runs each in 650 ms; the exact count depends on the machine.
  CHECK(runs["a"] >= 3);
  CHECK(runs["b"] >= 3);
  CHECK(engine.in_flight() == 0);
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
