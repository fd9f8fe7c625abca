#include "probes/common/ares_channel.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <mutex>
#include <utility>

namespace canaryd {

struct AresChannel::Watch {
  uv_poll_t poll;
  AresChannel* owner;
  ares_socket_t fd;
};

namespace {

void init_library_once() {
  // ares_library_init is not thread-safe in 1.18, and configs load off the loop.
  static std::once_flag once;
  std::call_once(once, [] { ares_library_init(ARES_LIB_INIT_ALL); });
}

}  // namespace

AresChannel::AresChannel(uv_loop_t* loop, RunFault fail) : loop_(loop), fail_(std::move(fail)) {}

std::unique_ptr<AresChannel> AresChannel::create(uv_loop_t* loop, const Options& opts,
                                                 RunFault fail, std::string& error) {
  init_library_once();
  std::unique_ptr<AresChannel> self(new AresChannel(loop, std::move(fail)));
  ares_options o{};
  // NOCHECKRESP: a SERVFAIL or REFUSED is the answer to report, not a
  // reason to ask the same server again until the deadline.
  o.flags = (opts.refusal_is_answer ? ARES_FLAG_NOCHECKRESP : 0) | (opts.tcp ? ARES_FLAG_USEVC : 0);
  o.timeout = opts.try_timeout_ms;
  o.tries = opts.tries;
  o.sock_state_cb = &AresChannel::on_sock_state;
  o.sock_state_cb_data = self.get();
  int mask = ARES_OPT_FLAGS | ARES_OPT_SOCK_STATE_CB;
  if (opts.try_timeout_ms > 0) mask |= ARES_OPT_TIMEOUTMS;
  if (opts.tries > 0) mask |= ARES_OPT_TRIES;
  int rc = ares_init_options(&self->channel_, &o, mask);
  if (rc != ARES_SUCCESS) {
    self->channel_ = nullptr;
    error = fmt::format("cannot set up the resolver: {}", ares_strerror(rc));
    return nullptr;
  }
  if (!opts.servers.empty()) {
    rc = ares_set_servers_ports_csv(self->channel_, opts.servers.c_str());
    if (rc != ARES_SUCCESS) {
      error = fmt::format("invalid resolver \"{}\": {}", opts.servers, ares_strerror(rc));
      return nullptr;
    }
  }
  self->timer_ = new uv_timer_t;
  uv_timer_init(loop, self->timer_);
  self->timer_->data = self.get();
  return self;
}

AresChannel::~AresChannel() {
  destroying_ = true;
  *alive_ = false;
  // ares_destroy answers every pending query with ARES_EDESTRUCTION (dropped
  // in on_answer) and reports each socket closed (unwatch) before closing it.
  if (channel_ != nullptr) ares_destroy(channel_);
  while (!watches_.empty()) unwatch(watches_.begin()->first);
  ready_.clear();
  if (timer_ != nullptr) {
    uv_close(reinterpret_cast<uv_handle_t*>(timer_),
             [](uv_handle_t* h) { delete reinterpret_cast<uv_timer_t*>(h); });
  }
}

void AresChannel::query(const std::string& name, int dns_class, int type, Callback cb) {
  auto* pending = new Pending<Callback>{this, std::move(cb)};
  ares_query(channel_, name.c_str(), dns_class, type, &AresChannel::on_answer, pending);
  deliver_soon();
}

void AresChannel::resolve(const std::string& name, AddressCallback cb) {
  auto* pending = new Pending<AddressCallback>{this, std::move(cb)};
  ares_addrinfo_hints hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  ares_getaddrinfo(channel_, name.c_str(), nullptr, &hints, &AresChannel::on_addresses, pending);
  deliver_soon();
}

void AresChannel::deliver_soon() {
  // Also delivers an answer c-ares gave synchronously (a bad name, an
  // /etc/hosts entry), on the next loop pass rather than from inside the
  // call that asked.
  uv_timer_start(timer_, &AresChannel::on_timer, 0, 0);
}

void AresChannel::on_answer(void* arg, int status, int /*timeouts*/, unsigned char* abuf,
                            int alen) {
  std::unique_ptr<Pending<Callback>> pending(static_cast<Pending<Callback>*>(arg));
  AresChannel* self = pending->owner;
  if (self->destroying_) return;
  std::string reply;
  if (abuf != nullptr && alen > 0) reply.assign(reinterpret_cast<const char*>(abuf), alen);
  self->ready_.push_back([cb = std::move(pending->cb), status, reply = std::move(reply)]() mutable {
    cb(status, std::move(reply));
  });
}

void AresChannel::on_addresses(void* arg, int status, int /*timeouts*/, ares_addrinfo* result) {
  std::unique_ptr<Pending<AddressCallback>> pending(static_cast<Pending<AddressCallback>*>(arg));
  std::unique_ptr<ares_addrinfo, void (*)(ares_addrinfo*)> owned(result, &ares_freeaddrinfo);
  AresChannel* self = pending->owner;
  if (self->destroying_) return;
  std::vector<sockaddr_storage> found;
  for (ares_addrinfo_node* n = result != nullptr ? result->nodes : nullptr; n != nullptr;
       n = n->ai_next) {
    if (n->ai_addr == nullptr || (n->ai_family != AF_INET && n->ai_family != AF_INET6)) continue;
    sockaddr_storage a{};
    std::memcpy(&a, n->ai_addr, std::min<size_t>(n->ai_addrlen, sizeof a));
    found.push_back(a);
  }
  self->ready_.push_back([cb = std::move(pending->cb), status, found = std::move(found)]() mutable {
    cb(status, std::move(found));
  });
}

void AresChannel::on_sock_state(void* data, ares_socket_t fd, int readable, int writable) {
  auto* self = static_cast<AresChannel*>(data);
  if (readable || writable) {
    self->watch(fd, readable != 0, writable != 0);
  } else {
    self->unwatch(fd);
  }
}

void AresChannel::watch(ares_socket_t fd, bool readable, bool writable) {
  Watch*& w = watches_[fd];
  if (w == nullptr) {
    w = new Watch{{}, this, fd};
    if (uv_poll_init_socket(loop_, &w->poll, fd) != 0) {
      // Left unwatched, the query ends at c-ares's own timeout.
      delete w;
      watches_.erase(fd);
      return;
    }
    w->poll.data = w;
  }
  int events = (readable ? UV_READABLE : 0) | (writable ? UV_WRITABLE : 0);
  uv_poll_start(&w->poll, events, &AresChannel::on_poll);
}

void AresChannel::unwatch(ares_socket_t fd) {
  auto it = watches_.find(fd);
  if (it == watches_.end()) return;
  Watch* w = it->second;
  watches_.erase(it);
  // Stopped now, while the descriptor is still open: c-ares closes it next,
  // and a new socket may reuse the number at once.
  uv_poll_stop(&w->poll);
  uv_close(reinterpret_cast<uv_handle_t*>(&w->poll),
           [](uv_handle_t* h) { delete static_cast<Watch*>(h->data); });
}

void AresChannel::on_poll(uv_poll_t* handle, int status, int events) {
  auto* w = static_cast<Watch*>(handle->data);
  AresChannel* self = w->owner;
  // A copy: the callback may destroy the channel, and with it fail_.
  RunFault fail = self->fail_;
  guarded(fail, "a DNS socket callback", [self, w, status, events] {
    ares_socket_t fd = w->fd;
    // An error on the socket: let c-ares read and write, so it sees it.
    bool all = status < 0;
    ares_process_fd(self->channel_, all || (events & UV_READABLE) ? fd : ARES_SOCKET_BAD,
                    all || (events & UV_WRITABLE) ? fd : ARES_SOCKET_BAD);
    self->after_processing();
  });
}

void AresChannel::on_timer(uv_timer_t* timer) {
  auto* self = static_cast<AresChannel*>(timer->data);
  RunFault fail = self->fail_;  // see on_poll
  guarded(fail, "a DNS timer callback", [self] {
    ares_process_fd(self->channel_, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
    self->after_processing();
  });
}

void AresChannel::after_processing() {
  timeval tv{};
  if (ares_timeout(channel_, nullptr, &tv) != nullptr) {
    // Rounded up: firing a millisecond early would find nothing expired.
    uint64_t ms = static_cast<uint64_t>(tv.tv_sec) * 1000 + (tv.tv_usec + 999) / 1000;
    uv_timer_start(timer_, &AresChannel::on_timer, ms, 0);
  } else {
    uv_timer_stop(timer_);
  }
  std::weak_ptr<bool> alive = alive_;
  while (!alive.expired() && !ready_.empty()) {
    Ready deliver = std::move(ready_.front());
    ready_.pop_front();
    deliver();  // may destroy this channel
  }
}

}  // namespace canaryd
