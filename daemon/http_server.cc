#include "daemon/http_server.h"

#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <uv.h>

#include <algorithm>
#include <stdexcept>

#include "base/guard.h"
#include "daemon/http_connection.h"

namespace canaryd {

namespace http_internal {

[[noreturn]] void throw_listen_error(const std::string& host, int port, const std::string& why) {
  throw std::runtime_error("cannot listen on " + listen_address_to_string(host, port) + ": " + why);
}

Server::Server(const std::string& host, int port, HttpHandler handler, HttpServerLimits limits,
               TlsSessionFactory tls)
    : handler_(std::move(handler)), limits_(limits), tls_(std::move(tls)) {
  if (!handler_) throw std::invalid_argument("HttpServer: handler must not be empty");
  if (limits_.idle_timeout < std::chrono::milliseconds(1)) {
    limits_.idle_timeout = std::chrono::milliseconds(1);
  }
  if (port < 0 || port > 65535) throw_listen_error(host, port, "port out of range");

  std::string literal = host;
  if (literal.size() >= 2 && literal.front() == '[' && literal.back() == ']') {
    literal = literal.substr(1, literal.size() - 2);
  }
  sockaddr_storage addr{};
  if (uv_ip4_addr(literal.c_str(), port, reinterpret_cast<sockaddr_in*>(&addr)) != 0 &&
      uv_ip6_addr(literal.c_str(), port, reinterpret_cast<sockaddr_in6*>(&addr)) != 0) {
    throw_listen_error(host, port, "not a numeric IPv4 or IPv6 address");
  }

  int rc = uv_loop_init(&loop_);
  if (rc != 0) throw_listen_error(host, port, uv_strerror(rc));
  loop_open_ = true;
  // Handle init cannot fail on Unix for these types; only bind/listen can.
  uv_tcp_init(&loop_, &listener_);
  listener_open_ = true;
  listener_.data = this;
  uv_async_init(&loop_, &stop_async_, &Server::on_stop_async);
  async_open_ = true;
  stop_async_.data = this;
  uv_async_init(&loop_, &deferred_async_, &Server::on_deferred_async);
  deferred_async_.data = this;
  mailbox_->async = &deferred_async_;

  // On Linux uv_tcp_bind() defers EADDRINUSE to uv_listen(); check both.
  rc = uv_tcp_bind(&listener_, reinterpret_cast<const sockaddr*>(&addr), 0);
  if (rc == 0) {
    rc = uv_listen(reinterpret_cast<uv_stream_t*>(&listener_), kListenBacklog,
                   &Server::on_connection);
  }
  sockaddr_storage bound{};
  int len = sizeof(bound);
  if (rc == 0) rc = uv_tcp_getsockname(&listener_, reinterpret_cast<sockaddr*>(&bound), &len);
  if (rc != 0) {
    close_everything();
    release_loop();
    throw_listen_error(host, port, uv_strerror(rc));
  }
  port_ = bound.ss_family == AF_INET6 ? ntohs(reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port)
                                      : ntohs(reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
}

void Server::start() {
  if (run_state_ == RunState::kRunning) return;
  if (run_state_ == RunState::kStopped) throw std::logic_error("HttpServer: start() after stop()");

  // The new thread inherits the signal mask; blocking here (not inside the thread) leaves
  // no window in which it could receive a process-directed signal. Synchronous fault
  // signals stay unblocked so crashes are still reported.
  sigset_t block;
  sigset_t saved;
  sigfillset(&block);
  for (const int sig : {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGABRT, SIGSYS}) {
    sigdelset(&block, sig);
  }
  pthread_sigmask(SIG_BLOCK, &block, &saved);
  try {
    thread_ = std::thread([this] {
#ifdef __GLIBC__
      pthread_setname_np(pthread_self(), "canaryd-http");
#endif
      uv_run(&loop_, UV_RUN_DEFAULT);
    });
  } catch (...) {
    pthread_sigmask(SIG_SETMASK, &saved, nullptr);
    throw;
  }
  pthread_sigmask(SIG_SETMASK, &saved, nullptr);
  run_state_ = RunState::kRunning;
}

void Server::stop() {
  switch (run_state_) {
    case RunState::kStopped:
      return;
    case RunState::kRunning:
      // uv_async_send is the only libuv call that is safe from another thread.
      uv_async_send(&stop_async_);
      thread_.join();
      break;
    case RunState::kIdle:
      // Never started: no connections exist, so close the handles right here.
      close_everything();
      break;
  }
  release_loop();
  run_state_ = RunState::kStopped;
}

void Server::release_loop() {
  if (!loop_open_) return;
  // Runs the close callbacks of handles closed outside a running loop.
  uv_run(&loop_, UV_RUN_DEFAULT);
  uv_loop_close(&loop_);
  loop_open_ = false;
}

void Server::close_everything() {
  if (listener_open_) {
    uv_close(reinterpret_cast<uv_handle_t*>(&listener_), nullptr);
    listener_open_ = false;
  }
  if (async_open_) {
    uv_close(reinterpret_cast<uv_handle_t*>(&stop_async_), nullptr);
    {
      std::lock_guard lock(mailbox_->mu);
      mailbox_->async = nullptr;
      mailbox_->done.clear();
    }
    uv_close(reinterpret_cast<uv_handle_t*>(&deferred_async_), nullptr);
    async_open_ = false;
  }
  while (!connections_.empty()) close_connection(*connections_.begin());
}

void Server::on_stop_async(uv_async_t* async) {
  guarded("the HTTP server's stop",
          [async] { static_cast<Server*>(async->data)->close_everything(); });
}

void Server::on_connection(uv_stream_t* listener, int status) {
  if (status < 0) return;  // e.g. EMFILE; libuv keeps the listener usable.
  guarded("the HTTP server's accept",
          [listener] { static_cast<Server*>(listener->data)->accept_one(); });
}

void Server::accept_one() {
  auto* listener = reinterpret_cast<uv_stream_t*>(&listener_);
  if (connections_.size() >= limits_.max_connections) {
    // Accept and close at once, so the client gets a clear refusal instead of lingering
    // in the backlog, and the backlog does not fill up.
    auto* reject = new uv_tcp_t;
    uv_tcp_init(&loop_, reject);
    uv_accept(listener, reinterpret_cast<uv_stream_t*>(reject));
    uv_close(reinterpret_cast<uv_handle_t*>(reject),
             [](uv_handle_t* h) { delete reinterpret_cast<uv_tcp_t*>(h); });
    return;
  }
  auto* c = new Connection(this, limits_);
  c->id = next_connection_id_++;
  uv_tcp_init(&loop_, &c->tcp);
  uv_timer_init(&loop_, &c->timer);
  c->tcp.data = c;
  c->timer.data = c;
  c->open_handles = 2;
  if (uv_accept(listener, c->stream()) != 0) {
    close_connection(c);
    return;
  }
  connections_.insert(c);
  if (tls_) {
    c->tls = std::make_unique<TlsChannel>(tls_());
    if (!c->tls->ok()) {
      close_connection(c);
      return;
    }
  }
  uv_tcp_nodelay(&c->tcp, 1);
  restart_timer(c, limits_.idle_timeout);
  set_reading(c, true);
}

void Server::close_connection(Connection* c) {
  if (c->closing) return;
  c->closing = true;
  connections_.erase(c);
  // Pending writes and the shutdown request are cancelled; their callbacks run before the
  // close callbacks, so `c` is still valid inside them.
  uv_close(reinterpret_cast<uv_handle_t*>(&c->tcp), &Server::on_connection_handle_closed);
  uv_close(reinterpret_cast<uv_handle_t*>(&c->timer), &Server::on_connection_handle_closed);
}

void Server::on_connection_handle_closed(uv_handle_t* handle) {
  auto* c = static_cast<Connection*>(handle->data);
  if (--c->open_handles == 0) delete c;
}

void Server::set_reading(Connection* c, bool on) {
  if (c->closing || c->reading == on) return;
  if (on) {
    if (uv_read_start(c->stream(), &Server::on_alloc, &Server::on_read) != 0) {
      close_connection(c);
      return;
    }
  } else {
    uv_read_stop(c->stream());
  }
  c->reading = on;
}

void Server::restart_timer(Connection* c, std::chrono::milliseconds timeout) {
  if (c->closing) return;
  uv_timer_start(&c->timer, &Server::on_timer, static_cast<uint64_t>(timeout.count()), 0);
}

void Server::on_timer(uv_timer_t* timer) {
  auto* c = static_cast<Connection*>(timer->data);
  c->server->close_connection(c);
}

void Server::on_alloc(uv_handle_t* handle, size_t /*suggested*/, uv_buf_t* buf) {
  // One buffer for all connections is enough: the loop is single-threaded and each read
  // is copied out (or discarded) before the next allocation.
  auto* c = static_cast<Connection*>(handle->data);
  *buf = uv_buf_init(c->server->read_buffer_.get(), kReadBufferSize);
}

void Server::on_read(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf) {
  auto* c = static_cast<Connection*>(stream->data);
  // A failure costs this connection, never the server.
  if (!guarded("the HTTP server's read", [&] { c->server->handle_read(c, nread, buf); }))
    c->server->close_connection(c);
}

void Server::handle_read(Connection* c, ssize_t nread, const uv_buf_t* buf) {
  Server* s = this;
  if (nread == 0) return;  // EAGAIN.
  if (nread == UV_EOF) {
    c->peer_eof = true;
    if (c->state == Connection::State::kDraining) {
      if (c->shutdown_done) {
        s->close_connection(c);
      } else {
        s->set_reading(c, false);  // on_shutdown closes once our output is flushed.
      }
      return;
    }
    // The client half-closed; every complete request was handled when it arrived, so
    // flush what we owe it and close. A partial request is simply dropped.
    s->set_reading(c, false);
    s->finish(c);
    return;
  }
  if (nread < 0) {
    s->close_connection(c);
    return;
  }
  if (c->state == Connection::State::kDraining) return;  // Discard.
  if (c->tls) {
    if (!tls_receive(c, buf->base, static_cast<size_t>(nread))) return;
  } else {
    c->in.append(buf->base, static_cast<size_t>(nread));
  }
  s->process(c);
}

}  // namespace http_internal

std::string listen_address_to_string(const std::string& host, int port) {
  if (host.find(':') != std::string::npos && (host.empty() || host.front() != '[')) {
    return "[" + host + "]:" + std::to_string(port);
  }
  return host + ":" + std::to_string(port);
}

struct HttpServer::Impl {
  Impl(const std::string& host, int port, HttpHandler handler, HttpServerLimits limits,
       TlsSessionFactory tls)
      : server(host, port, std::move(handler), limits, std::move(tls)) {}
  http_internal::Server server;
};

HttpServer::HttpServer(const std::string& host, int port, HttpHandler handler,
                       HttpServerLimits limits, TlsSessionFactory tls)
    : impl_(std::make_unique<Impl>(host, port, std::move(handler), limits, std::move(tls))) {}

HttpServer::~HttpServer() { stop(); }

int HttpServer::port() const { return impl_->server.port(); }

void HttpServer::start() { impl_->server.start(); }

void HttpServer::stop() { impl_->server.stop(); }

}  // namespace canaryd
