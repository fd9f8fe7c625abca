// A small, bounded pool of threads for work that blocks and so must never run
// on a loop: libpq connect steps (the server picks how many rounds of SCRAM
// the client computes), PQcancel. (Name lookups run on the loop, c-ares.)
//
// One pool per kind of work, not one shared pool: a kind that hangs (a
// black-holed database holding every cancel thread) then stalls only itself,
// never another kind. Results come back to the loop through one uv_async per
// pool.
//
// Bounded: `threads` threads, made once, and at most `max_queued` jobs
// waiting. A job's owner takes it back out of the queue when its run ends
// (unqueue), so in practice the queue holds at most one job per in-flight
// run; the limit is the backstop.
#pragma once

#include <uv.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "base/guard.h"

namespace canaryd {

// Thread-safety: every member function on the loop thread only.
class WorkPool {
 public:
  struct Spec {
    std::string name;  // for logs: "PostgreSQL cancels", ...
    size_t threads = 1;
    size_t max_queued = 4096;
  };
  WorkPool(uv_loop_t* loop, Spec spec);
  ~WorkPool();
  WorkPool(const WorkPool&) = delete;
  WorkPool& operator=(const WorkPool&) = delete;

  using Work = std::function<void()>;  // on a pool thread
  using Done = std::function<void()>;  // on the loop, after the work
  // Queues `work`; `done` runs on the loop once it has finished. An exception
  // from either goes to `fail` (the run it belongs to) instead. Returns the
  // job's id, or 0 when the queue is full or the pool shut down: then
  // neither runs.
  uint64_t submit(Work work, Done done, RunFault fail = {});
  // Takes a job that has not started out of the queue: true means neither
  // its work nor its done will ever run. False means it is running or has
  // run, and its done will still come (unless the pool shuts down first).
  bool unqueue(uint64_t id);
  // Jobs running on a thread right now, and waiting for one.
  size_t running() const;
  size_t queued() const;
  const Spec& spec() const { return spec_; }

  // No done runs after this, and the loop is free to end. Threads finish the
  // job they are in and then exit on their own: a thread stuck in a blocking
  // call never holds up shutdown. Closures of jobs that never ran are
  // destroyed, so they must own what they hold.
  void shutdown();

 private:
  struct Job;
  struct State;
  static void on_async(uv_async_t* async);
  void deliver();

  Spec spec_;
  std::shared_ptr<State> state_;  // shared with the threads
  uv_async_t* async_ = nullptr;   // heap: freed in its close callback
  uint64_t next_id_ = 1;
  size_t outstanding_ = 0;  // submitted, neither delivered nor unqueued: keeps the loop alive
};

}  // namespace canaryd
