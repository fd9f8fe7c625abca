// A one-shot loop timer with nanosecond resolution: a timerfd watched by a
// uv_poll_t. libuv's own timers count whole milliseconds of loop time, so a
// run due at 12.3 ms would start at 13 ms, and every probe would start on a
// millisecond boundary: up to 1 ms of lag on every run, and a fixed phase
// against the target's own millisecond clock (nginx's timers, for one), which
// biases what canaryd measures.
//
// Thread-safety: loop thread only. Linux only (timerfd).
#pragma once

#include <uv.h>

#include <chrono>

namespace canaryd {

class PreciseTimer {
 public:
  using Callback = void (*)(void* data);

  // Falls back to a libuv timer if no timerfd can be had (descriptors
  // exhausted): a millisecond late beats not running at all.
  PreciseTimer(uv_loop_t* loop, Callback cb, void* data);
  ~PreciseTimer();  // closes its handles; the memory goes in their close callbacks
  PreciseTimer(const PreciseTimer&) = delete;
  PreciseTimer& operator=(const PreciseTimer&) = delete;

  // Fires once, `wait` from now (at once if wait <= 0). Re-arming replaces.
  void start(std::chrono::nanoseconds wait);
  void stop();

 private:
  struct Handles;
  Handles* h_;  // owned by the loop once closed
};

}  // namespace canaryd
