#include "base/work_pool.h"

#include <openssl/crypto.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace canaryd {

struct WorkPool::Job {
  uint64_t id = 0;
  Work work;
  Done done;
  RunFault fail;
  std::string error;  // what the work threw, if it did
  bool threw = false;
};

struct WorkPool::State {
  std::mutex mu;
  std::condition_variable wake;
  std::deque<Job> queue;
  std::vector<Job> finished;
  size_t running = 0;
  size_t alive = 0;  // worker threads not yet returned
  std::condition_variable gone;
  bool stopping = false;
  uv_async_t* async = nullptr;  // signalled only while !stopping

  // A worker's OpenSSL state (libpq's TLS, SCRAM) is thread-local. It is
  // released before the thread says it is gone, so that it never races
  // OpenSSL's own clean-up at process exit (which leaked it).
  void run() {
    worker();
    OPENSSL_thread_stop();
    std::lock_guard lock(mu);
    --alive;
    gone.notify_all();
  }

  void worker() {
    for (;;) {
      Job job;
      {
        std::unique_lock lock(mu);
        wake.wait(lock, [&] { return stopping || !queue.empty(); });
        if (stopping) return;
        job = std::move(queue.front());
        queue.pop_front();
        ++running;
      }
      try {
        job.work();
      } catch (const std::exception& e) {
        job.threw = true;
        job.error = e.what();
      } catch (...) {
        job.threw = true;
        job.error = "unknown exception";
      }
      std::lock_guard lock(mu);
      --running;
      if (stopping) return;  // nobody to deliver to; the job is dropped with this frame
      finished.push_back(std::move(job));
      uv_async_send(async);
    }
  }
};

WorkPool::WorkPool(uv_loop_t* loop, Spec spec)
    : spec_(std::move(spec)), state_(std::make_shared<State>()) {
  async_ = new uv_async_t;
  uv_async_init(loop, async_, &WorkPool::on_async);
  async_->data = this;
  // Like an idle uv_work queue, an idle pool does not keep the loop running.
  uv_unref(reinterpret_cast<uv_handle_t*>(async_));
  state_->async = async_;
  if (spec_.threads == 0) spec_.threads = 1;
  state_->alive = spec_.threads;
  for (size_t i = 0; i < spec_.threads; ++i) {
    // Detached, holding the state: shutdown never waits on a thread that is
    // stuck in a blocking call.
    std::thread([state = state_] { state->run(); }).detach();
  }
}

WorkPool::~WorkPool() { shutdown(); }

uint64_t WorkPool::submit(Work work, Done done, RunFault fail) {
  if (async_ == nullptr) return 0;
  uint64_t id = next_id_++;
  {
    std::lock_guard lock(state_->mu);
    if (state_->queue.size() >= spec_.max_queued) return 0;
    Job job;
    job.id = id;
    job.work = std::move(work);
    job.done = std::move(done);
    job.fail = std::move(fail);
    state_->queue.push_back(std::move(job));
  }
  state_->wake.notify_one();
  if (outstanding_++ == 0) uv_ref(reinterpret_cast<uv_handle_t*>(async_));
  return id;
}

bool WorkPool::unqueue(uint64_t id) {
  Job removed;  // destroyed after the lock is released
  {
    std::lock_guard lock(state_->mu);
    auto& q = state_->queue;
    auto it = std::find_if(q.begin(), q.end(), [id](const Job& j) { return j.id == id; });
    if (it == q.end()) return false;
    removed = std::move(*it);
    q.erase(it);
  }
  if (--outstanding_ == 0) uv_unref(reinterpret_cast<uv_handle_t*>(async_));
  return true;
}

size_t WorkPool::running() const {
  std::lock_guard lock(state_->mu);
  return state_->running;
}

size_t WorkPool::queued() const {
  std::lock_guard lock(state_->mu);
  return state_->queue.size();
}

void WorkPool::on_async(uv_async_t* async) {
  auto* self = static_cast<WorkPool*>(async->data);
  guarded(self->spec_.name, [self] { self->deliver(); });
}

void WorkPool::deliver() {
  std::vector<Job> finished;
  {
    std::lock_guard lock(state_->mu);
    finished.swap(state_->finished);
  }
  for (auto& job : finished) {
    if (async_ == nullptr) return;  // a done shut the pool down
    if (--outstanding_ == 0) uv_unref(reinterpret_cast<uv_handle_t*>(async_));
    if (job.threw) {
      guard_detail::report(job.fail, spec_.name, job.error);
    } else if (job.done) {
      guarded(job.fail, spec_.name, job.done);
    }
  }
}

void WorkPool::shutdown() {
  if (async_ == nullptr) return;
  std::deque<Job> queued;
  std::vector<Job> finished;
  {
    std::lock_guard lock(state_->mu);
    state_->stopping = true;
    state_->async = nullptr;
    queued.swap(state_->queue);
    finished.swap(state_->finished);
  }
  state_->wake.notify_all();
  {
    // Idle workers end at once; one stuck in a blocking call is left to end
    // on its own (the wait is bounded, and only as long as the job takes).
    std::unique_lock lock(state_->mu);
    state_->gone.wait_for(lock, std::chrono::seconds(1),
                          [this] { return state_->alive <= state_->running; });
  }
  async_->data = async_;
  uv_close(reinterpret_cast<uv_handle_t*>(async_),
           [](uv_handle_t* h) { delete reinterpret_cast<uv_async_t*>(h); });
  async_ = nullptr;
  outstanding_ = 0;
}

}  // namespace canaryd
