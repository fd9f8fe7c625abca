// A config reload off the loop: the worker reads and checks the new file on
// a thread of its own and hands the result to the loop through the channel.
#pragma once

#include <uv.h>

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "daemon/config.h"

namespace canaryd {

// The reload worker's link to the loop. The worker is a detached thread of
// its own (not libuv's pool, whose threads the exit joins and DNS lookups
// need): nothing ever waits on it without a bound. Once the loop is gone,
// `async` is null and the worker's result is dropped.
struct ReloadChannel {
  std::mutex mu;
  std::condition_variable idle;
  uv_async_t* async = nullptr;
  std::optional<ConfigLoad> result;
  bool busy = false;
  std::atomic<bool> cancel{false};  // ends the worker's waiting reads at shutdown
};

// Loads `path` and posts the result to `ch` (dropped if the loop is gone).
// Run it on a detached thread; it never throws.
void reload_worker(std::shared_ptr<ReloadChannel> ch, std::string path) noexcept;

}  // namespace canaryd
