#include "daemon/precise_timer.h"

#include <sys/timerfd.h>
#include <unistd.h>

#include <cstdint>

#include "base/guard.h"

namespace canaryd {

struct PreciseTimer::Handles {
  int fd = -1;
  uv_poll_t poll{};
  uv_timer_t fallback{};
  Callback cb = nullptr;
  void* data = nullptr;
  int open_handles = 0;
};

PreciseTimer::PreciseTimer(uv_loop_t* loop, Callback cb, void* data) : h_(new Handles) {
  h_->cb = cb;
  h_->data = data;
  h_->fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
  if (h_->fd >= 0 && uv_poll_init(loop, &h_->poll, h_->fd) == 0) {
    h_->poll.data = h_;
    ++h_->open_handles;
    // Watched for good: re-arming is one timerfd_settime, with no epoll_ctl
    // per tick. The handle holds the loop open only while the timer is armed,
    // as an armed libuv timer would.
    uv_poll_start(&h_->poll, UV_READABLE, [](uv_poll_t* p, int /*status*/, int /*events*/) {
      auto* h = static_cast<Handles*>(p->data);
      uint64_t expirations = 0;
      // Nothing to read: the timer was re-armed or stopped after it fired.
      if (read(h->fd, &expirations, sizeof expirations) != sizeof expirations) return;
      uv_unref(reinterpret_cast<uv_handle_t*>(p));
      guarded("the scheduler tick", [h] { h->cb(h->data); });
    });
    uv_unref(reinterpret_cast<uv_handle_t*>(&h_->poll));
  } else if (h_->fd >= 0) {
    close(h_->fd);
    h_->fd = -1;
  }
  uv_timer_init(loop, &h_->fallback);
  h_->fallback.data = h_;
  ++h_->open_handles;
}

PreciseTimer::~PreciseTimer() {
  stop();
  auto on_closed = [](uv_handle_t* handle) {
    auto* h = static_cast<Handles*>(handle->data);
    if (--h->open_handles == 0) {
      if (h->fd >= 0) close(h->fd);
      delete h;
    }
  };
  if (h_->fd >= 0) uv_close(reinterpret_cast<uv_handle_t*>(&h_->poll), on_closed);
  uv_close(reinterpret_cast<uv_handle_t*>(&h_->fallback), on_closed);
}

void PreciseTimer::start(std::chrono::nanoseconds wait) {
  if (h_->fd < 0) {
    int64_t ms = wait.count() <= 0 ? 0 : (wait.count() + 999'999) / 1'000'000;
    uv_timer_start(
        &h_->fallback,
        [](uv_timer_t* t) {
          auto* h = static_cast<Handles*>(t->data);
          guarded("the scheduler tick", [h] { h->cb(h->data); });
        },
        static_cast<uint64_t>(ms), 0);
    return;
  }
  // An all-zero it_value disarms a timerfd: "now" is 1 ns.
  int64_t ns = wait.count() <= 0 ? 1 : wait.count();
  itimerspec spec{};
  spec.it_value.tv_sec = static_cast<time_t>(ns / 1'000'000'000);
  spec.it_value.tv_nsec = static_cast<long>(ns % 1'000'000'000);
  timerfd_settime(h_->fd, 0, &spec, nullptr);
  uv_ref(reinterpret_cast<uv_handle_t*>(&h_->poll));
}

void PreciseTimer::stop() {
  if (h_->fd >= 0) {
    itimerspec off{};
    timerfd_settime(h_->fd, 0, &off, nullptr);
    uv_unref(reinterpret_cast<uv_handle_t*>(&h_->poll));
  }
  uv_timer_stop(&h_->fallback);
}

}  // namespace canaryd
