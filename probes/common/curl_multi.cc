#include "probes/common/curl_multi.h"

#include <vector>

#ifndef CANARYD_VERSION
#define CANARYD_VERSION "dev"
#endif

namespace canaryd {

void set_probe_transfer_defaults(CURL* easy, char* error_buffer) {
  curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, error_buffer);
  curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(easy, CURLOPT_USERAGENT, "canaryd/" CANARYD_VERSION);
  curl_easy_setopt(easy, CURLOPT_FRESH_CONNECT, 1L);
  curl_easy_setopt(easy, CURLOPT_FORBID_REUSE, 1L);
  curl_easy_setopt(easy, CURLOPT_SSL_SESSIONID_CACHE, 0L);
}

struct CurlMulti::SocketWatch {
  uv_poll_t poll;
  curl_socket_t fd;
  CurlMulti* owner;
};

CurlMulti::CurlMulti(uv_loop_t* loop) : loop_(loop) {
  static const CURLcode global_init = curl_global_init(CURL_GLOBAL_DEFAULT);
  (void)global_init;
  multi_ = curl_multi_init();
  curl_multi_setopt(multi_, CURLMOPT_SOCKETFUNCTION, &CurlMulti::on_socket);
  curl_multi_setopt(multi_, CURLMOPT_SOCKETDATA, this);
  curl_multi_setopt(multi_, CURLMOPT_TIMERFUNCTION, &CurlMulti::on_timer);
  curl_multi_setopt(multi_, CURLMOPT_TIMERDATA, this);
  timer_ = new uv_timer_t;
  uv_timer_init(loop_, timer_);
  timer_->data = this;
}

CurlMulti::~CurlMulti() { shutdown(); }

void CurlMulti::add(CURL* easy, RunFault fail, Completion on_done) {
  transfers_[easy] = Transfer{std::move(on_done), std::move(fail)};
  CURLMcode rc = curl_multi_add_handle(multi_, easy);
  if (rc != CURLM_OK) {
    // Only reachable on misuse or out-of-memory; report it as the transfer's end.
    auto done = std::move(transfers_[easy].done);
    transfers_.erase(easy);
    done(CURLE_FAILED_INIT);
  }
}

void CurlMulti::remove(CURL* easy) {
  if (transfers_.erase(easy) == 0) return;
  curl_multi_remove_handle(multi_, easy);
}

void CurlMulti::shutdown() {
  if (multi_ == nullptr) return;
  for (auto& [easy, done] : transfers_) curl_multi_remove_handle(multi_, easy);
  transfers_.clear();
  curl_multi_cleanup(multi_);
  multi_ = nullptr;
  for (SocketWatch* w : watches_) {
    uv_poll_stop(&w->poll);
    w->poll.data = w;
    uv_close(reinterpret_cast<uv_handle_t*>(&w->poll),
             [](uv_handle_t* h) { delete static_cast<SocketWatch*>(h->data); });
  }
  watches_.clear();
  uv_timer_stop(timer_);
  timer_->data = timer_;
  uv_close(reinterpret_cast<uv_handle_t*>(timer_),
           [](uv_handle_t* h) { delete static_cast<uv_timer_t*>(h->data); });
  timer_ = nullptr;
}

void CurlMulti::forget_watch(SocketWatch* watch) {
  watches_.erase(watch);
  // No uv_poll_stop first: closing stops the handle, and each stop is an
  // epoll_ctl(DEL) of its own (the second one fails, ENOENT) on every run.
  watch->poll.data = watch;
  uv_close(reinterpret_cast<uv_handle_t*>(&watch->poll),
           [](uv_handle_t* h) { delete static_cast<SocketWatch*>(h->data); });
}

int CurlMulti::on_socket(CURL* easy, curl_socket_t fd, int what, void* userp, void* socketp) {
  int rc = -1;  // curl fails the transfer if this throws
  guarded("libcurl's socket callback", [&] { rc = watch_socket(easy, fd, what, userp, socketp); });
  return rc;
}

int CurlMulti::watch_socket(CURL* /*easy*/, curl_socket_t fd, int what, void* userp,
                            void* socketp) {
  auto* self = static_cast<CurlMulti*>(userp);
  auto* watch = static_cast<SocketWatch*>(socketp);
  if (what == CURL_POLL_REMOVE) {
    if (watch != nullptr) {
      curl_multi_assign(self->multi_, fd, nullptr);
      self->forget_watch(watch);
    }
    return 0;
  }
  if (watch == nullptr) {
    watch = new SocketWatch{{}, fd, self};
    // uv_close() above removes an fd from the loop synchronously, so curl may
    // reuse a just-closed descriptor number here without a clash.
    if (uv_poll_init_socket(self->loop_, &watch->poll, fd) != 0) {
      delete watch;
      return -1;  // curl fails this transfer with an error instead of hanging
    }
    watch->poll.data = watch;
    self->watches_.insert(watch);
    curl_multi_assign(self->multi_, fd, watch);
  }
  int events = 0;
  if (what & CURL_POLL_IN) events |= UV_READABLE;
  if (what & CURL_POLL_OUT) events |= UV_WRITABLE;
  uv_poll_start(&watch->poll, events, &CurlMulti::on_poll);
  return 0;
}

int CurlMulti::on_timer(CURLM* /*multi*/, long timeout_ms, void* userp) {
  auto* self = static_cast<CurlMulti*>(userp);
  if (self->timer_ == nullptr) return 0;
  if (timeout_ms < 0) {
    uv_timer_stop(self->timer_);
  } else {
    // Even a 0 ms timeout goes through the timer: calling back into curl from
    // inside its own callback is not allowed. (uv_timer_start cannot throw.)
    // libuv 1.44 runs a timer re-armed for 0 ms from its own callback again
    // in the same pass, without polling: a target that keeps curl busy (an
    // endless trailer section) would hold the loop. From inside the timer,
    // 0 ms becomes 1 ms, so sockets are polled in between.
    uint64_t ms = static_cast<uint64_t>(timeout_ms);
    if (ms == 0 && self->in_timeout_) ms = 1;
    uv_timer_start(self->timer_, &CurlMulti::on_timeout, ms, 0);
  }
  return 0;
}

void CurlMulti::on_poll(uv_poll_t* handle, int status, int events) {
  auto* watch = static_cast<SocketWatch*>(handle->data);
  int flags = 0;
  if (status < 0) flags |= CURL_CSELECT_ERR;
  if (events & UV_READABLE) flags |= CURL_CSELECT_IN;
  if (events & UV_WRITABLE) flags |= CURL_CSELECT_OUT;
  guarded("libcurl's socket watcher",
          [watch, flags] { watch->owner->socket_action(watch->fd, flags); });
}

void CurlMulti::on_timeout(uv_timer_t* handle) {
  auto* self = static_cast<CurlMulti*>(handle->data);
  self->in_timeout_ = true;
  guarded("libcurl's timer", [self] { self->socket_action(CURL_SOCKET_TIMEOUT, 0); });
  self->in_timeout_ = false;
}

void CurlMulti::socket_action(curl_socket_t fd, int flags) {
  if (multi_ == nullptr) return;
  int running = 0;
  curl_multi_socket_action(multi_, fd, flags, &running);
  drain_completions();
}

void CurlMulti::drain_completions() {
  // Collect first: a completion may add or remove transfers, which must not
  // interleave with reading curl's message queue.
  std::vector<std::pair<CURL*, CURLcode>> finished;
  int left = 0;
  while (CURLMsg* msg = curl_multi_info_read(multi_, &left)) {
    if (msg->msg == CURLMSG_DONE) finished.emplace_back(msg->easy_handle, msg->data.result);
  }
  for (auto [easy, result] : finished) {
    auto it = transfers_.find(easy);
    if (it == transfers_.end()) continue;  // removed by an earlier completion
    Transfer t = std::move(it->second);
    transfers_.erase(it);
    curl_multi_remove_handle(multi_, easy);
    // (A structured binding cannot be captured before C++20's P1091 lands in clang.)
    CURLcode rc = result;
    guarded(t.fail, "an HTTP completion", [&t, rc] { t.done(rc); });
    if (multi_ == nullptr) return;
  }
}

}  // namespace canaryd
