// The scheduling rules, driven by a fake clock: nothing here sleeps.
#include "daemon/scheduler.h"

#include <catch2/catch.hpp>
#include <vector>

using namespace std::chrono_literals;
using canaryd::FakeClock;
using canaryd::Nanos;
using canaryd::Scheduler;

namespace {
// A scheduler reading a fake clock. Each test plays the engine by hand: it sets
// the clock to a due time (or past it, as a late timer would), takes the due
// runs, advances the clock by however long a run takes and calls finished().
struct Driver {
  FakeClock clock;
  Scheduler sched{clock};
};
}  // namespace

TEST_CASE("first runs are spread across the interval by a stable hash of the name") {
  Driver d;
  d.clock.set(Nanos(1'000'000'000'000));
  for (int i = 0; i < 100; ++i) d.sched.add(i, "probe-" + std::to_string(i), 10s, 10s);
  std::set<int64_t> first_dues;
  auto start = d.clock.now();
  // The loop wakes every 100 ms, well within the start bound.
  std::vector<Scheduler::Dispatch> due;
  for (int step = 0; step < 100; ++step) {
    d.clock.advance(100ms);
    for (const auto& x : d.sched.take_due()) due.push_back(x);
  }
  REQUIRE(due.size() == 100);
  for (const auto& x : due) {
    CHECK(x.due >= start);
    CHECK(x.due < start + 10s);
    first_dues.insert((x.due - start).count());
  }
  // Not a stampede: the 100 offsets are (nearly) all different.
  CHECK(first_dues.size() > 95);

  // The same name gets the same offset on every restart.
  Driver other;
  other.clock.set(Nanos(1'000'000'000'000));
  other.sched.add(7, "probe-7", 10s, 10s);
  other.clock.advance(10s);
  auto again = other.sched.take_due();
  REQUIRE(again.size() == 1);
  auto it = std::find_if(due.begin(), due.end(), [](const auto& x) { return x.id == 7; });
  CHECK(again[0].due == it->due);
}

TEST_CASE("runs are fixed-rate: run time does not make the schedule drift") {
  Driver d;
  d.sched.add(1, "backend-health", 1s, 1s);
  auto first = d.sched.next_due();
  REQUIRE(first);
  std::vector<Nanos> dues;
  for (int i = 0; i < 5; ++i) {
    d.clock.set(*d.sched.next_due() + 3ms);  // the timer fires a little late
    auto due = d.sched.take_due();
    REQUIRE(due.size() == 1);
    CHECK(due[0].lag == 3ms);
    dues.push_back(due[0].due);
    d.clock.advance(400ms);  // the run takes 400 ms
    d.sched.finished(1);
  }
  for (size_t i = 0; i < dues.size(); ++i) CHECK(dues[i] == *first + Nanos(1s) * i);
  CHECK(d.sched.skipped_total() == 0);
}

TEST_CASE("runs of one probe never overlap: a slot that comes due mid-run is skipped") {
  Driver d;
  d.sched.add(1, "slow", 1s, 1s);
  auto first = *d.sched.next_due();
  d.clock.set(first);
  REQUIRE(d.sched.take_due().size() == 1);
  REQUIRE(d.sched.running(1));

  // Next slot arrives while the run is still going: nothing is dispatched.
  d.clock.set(first + 1s);
  CHECK(d.sched.take_due().empty());
  CHECK(d.sched.skipped_total() == 1);

  // The run ends; the following slot runs on the original grid.
  d.clock.set(first + 1500ms);
  d.sched.finished(1);
  CHECK(d.sched.take_due().empty());
  d.clock.set(first + 2s);
  auto due = d.sched.take_due();
  REQUIRE(due.size() == 1);
  CHECK(due[0].due == first + 2s);
}

TEST_CASE(
    "a stalled loop skips the missed slots instead of running them in a burst, and runs the "
    "latest slot if it is within the start bound") {
  Driver d;
  d.sched.add(1, "p", 1s, 1s);
  auto first = *d.sched.next_due();
  d.clock.set(first + 3050ms);
  auto due = d.sched.take_due();
  REQUIRE(due.size() == 1);
  CHECK(due[0].due == first + 3s);  // the latest slot, 50 ms late (the bound is 100 ms)
  CHECK(due[0].lag == 50ms);
  CHECK(d.sched.skipped(canaryd::SkipCause::kMissed) == 3);
  CHECK(d.sched.skipped_total() == 3);
  CHECK(*d.sched.next_due() == first + 4s);  // back on the grid
}

TEST_CASE(
    "a slot the loop comes to later than the start bound is skipped as late, never started "
    "late") {
  Driver d;
  d.sched.add(1, "p", 10s, 10s);
  auto first = *d.sched.next_due();
  // A tenth of the timeout, within [20 ms, 1 s], and never past half an
  // interval.
  CHECK(Scheduler::start_bound(10s, 10s) == 1s);
  CHECK(Scheduler::start_bound(1s, 1s) == 100ms);
  CHECK(Scheduler::start_bound(10s, 3s) == 300ms);
  CHECK(Scheduler::start_bound(10s, 50ms) == 20ms);
  CHECK(Scheduler::start_bound(30ms, 1s) == 15ms);
  d.clock.set(first + 1s);  // at the bound: still runs
  REQUIRE(d.sched.take_due().size() == 1);
  d.sched.finished(1);
  d.clock.set(first + 10s + 1001ms);  // past it
  CHECK(d.sched.take_due().empty());
  CHECK(d.sched.skipped(canaryd::SkipCause::kLate) == 1);
  CHECK(d.sched.skipped(canaryd::SkipCause::kMissed) == 0);
  CHECK(*d.sched.next_due() == first + 20s);
  d.clock.set(first + 20s);
  CHECK(d.sched.take_due().size() == 1);
  CHECK(d.sched.skipped_total() == 1);
}

TEST_CASE(
    "a loop that is late at the same moment of every interval does not starve a probe: each "
    "late skip in a row doubles how late its next slot may start, up to half an interval") {
  Driver d;
  d.sched.add(1, "p", 2s, 1500ms);  // start bound 150 ms
  auto first = *d.sched.next_due();
  CHECK(Scheduler::admission_bound(2s, 150ms, 0) == 150ms);
  CHECK(Scheduler::admission_bound(2s, 150ms, 1) == 300ms);
  CHECK(Scheduler::admission_bound(2s, 150ms, 3) == 1s);  // 1.2 s, capped at half the interval
  // 200 ms late at every slot: the first is skipped, the next one runs.
  d.clock.set(first + 200ms);
  CHECK(d.sched.take_due().empty());
  d.clock.set(first + 2s + 200ms);
  auto due = d.sched.take_due();
  REQUIRE(due.size() == 1);
  CHECK(due[0].lag == 200ms);
  d.sched.finished(1);
  // A run started, so the bound is back to 150 ms.
  d.clock.set(first + 4s + 200ms);
  CHECK(d.sched.take_due().empty());
  CHECK(d.sched.skipped(canaryd::SkipCause::kLate) == 2);
  // Far behind: skipped until the bound has doubled past the lateness, never
  // past half an interval.
  d.clock.set(first + 6s + 900ms);  // streak 1: 300 ms
  CHECK(d.sched.take_due().empty());
  d.clock.set(first + 8s + 900ms);  // streak 2: 600 ms
  CHECK(d.sched.take_due().empty());
  d.clock.set(first + 10s + 900ms);  // streak 3: 1 s
  CHECK(d.sched.take_due().size() == 1);
  d.sched.finished(1);
  CHECK(d.sched.skipped(canaryd::SkipCause::kLate) == 4);
}

TEST_CASE("removed probes are not dispatched and next_due is the earliest probe") {
  Driver d;
  d.sched.add(1, "a", 1s, 1s);
  d.sched.add(2, "b", 5s, 5s);
  auto a = *d.sched.next_due();
  d.sched.remove(1);
  CHECK(!d.sched.contains(1));
  d.clock.set(a);
  for (const auto& x : d.sched.take_due()) CHECK(x.id == 2);
  d.sched.remove(2);
  CHECK(!d.sched.next_due());
  CHECK(d.sched.size() == 0);
}

TEST_CASE("lag is measured as actual start minus due time") {
  Driver d;
  d.sched.add(1, "p", 2s, 2s);
  auto first = *d.sched.next_due();
  d.clock.set(first + 42ms);
  auto due = d.sched.take_due();
  REQUIRE(due.size() == 1);
  CHECK(due[0].lag == 42ms);
}

TEST_CASE("stable_hash is FNV-1a and does not depend on the process") {
  CHECK(canaryd::stable_hash("") == 14695981039346656037ull);
  CHECK(canaryd::stable_hash("a") == 0xaf63dc4c8601ec8cull);
}

TEST_CASE("take_due hands out at most max_runs runs and leaves the rest due for the next turn") {
  Driver d;
  // One name, so one first slot for all ten.
  for (int i = 0; i < 10; ++i) d.sched.add(i, "same-name", 1s, 1s);
  d.clock.set(*d.sched.next_due());
  const auto first = d.sched.take_due(4);
  CHECK(first.size() == 4);
  CHECK(*d.sched.next_due() <= d.clock.now());
  const auto rest = d.sched.take_due(100);
  CHECK(rest.size() == 6);
  CHECK(d.sched.skipped_total() == 0);
}
