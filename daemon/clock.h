// Monotonic time for scheduling. The real clock reads libuv's high-resolution
// timer; tests inject a fake one and move it by hand, so nothing sleeps.
#pragma once

#include <uv.h>

#include <chrono>

namespace canaryd {

using Nanos = std::chrono::nanoseconds;

class Clock {
 public:
  virtual ~Clock() = default;
  virtual Nanos now() const = 0;
};

// The daemon's clock. It must stay uv_hrtime(): the engine hands probes
// their deadline in this clock (RunContext::deadline_ns) and probes compare it
// with uv_hrtime() themselves, so any other time base would move every
// probe's deadline.
class MonotonicClock : public Clock {
 public:
  Nanos now() const override { return Nanos(uv_hrtime()); }
};

class FakeClock : public Clock {
 public:
  Nanos now() const override { return now_; }
  void set(Nanos t) { now_ = t; }
  void advance(Nanos d) { now_ += d; }

 private:
  Nanos now_{0};
};

}  // namespace canaryd
