#include "daemon/http_server.h"

#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <uv.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <exception>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <unordered_set>

#include "base/guard.h"
#include "daemon/http_response.h"
#include "daemon/tls_channel.h"

namespace canaryd {

namespace {

constexpr size_t kReadBufferSize = size_t{64} * 1024;
constexpr int kListenBacklog = 511;
// After we have sent our last response and a FIN, we keep reading (and discarding) for a
// little while: closing a socket with unread input makes the kernel send RST, which can
// destroy the response before the client has read it (e.g. a 413 while the client is
// still uploading).
constexpr std::chrono::milliseconds kMaxLinger{2000};
constexpr std::string_view kContinueResponse = "HTTP/1.1 100 Continue\r\n\r\n";

class Server;

// One accepted client. Owned by its two handles (tcp and timer), whose data pointers
// point here; freed when both close callbacks have run.
struct Connection {
  enum class State {
    kReading,   // Waiting for (the rest of) a request.
    kDraining,  // Last response queued: flushing it, then FIN, then discarding input.
  };

  Connection(Server* s, const HttpServerLimits& limits)
      : server(s), parser(limits.max_header_bytes, limits.max_body_bytes) {}

  Server* server;
  uv_tcp_t tcp{};
  uv_timer_t timer{};
  uv_shutdown_t shutdown_req{};
  int open_handles = 0;
  bool closing = false;  // uv_close() called; nothing may touch the handles any more.
  bool reading = false;  // uv_read_start() active.
  bool paused = false;   // Output is backed up: handle no more requests until it drains.
  bool shutdown_done = false;
  bool peer_eof = false;
  bool continue_sent = false;
  bool awaiting = false;      // A deferred response is outstanding; no further request is read.
  uint64_t id = 0;            // Names the connection to a deferred responder.
  RequestHead deferred_head;  // The request a deferred response answers.
  State state = State::kReading;
  std::string in;  // Unprocessed input; in[0, in_pos) is already consumed.
  size_t in_pos = 0;
  HttpRequestParser parser;
  std::unique_ptr<TlsChannel> tls;  // TLS only

  uv_stream_t* stream() { return reinterpret_cast<uv_stream_t*>(&tcp); }
};

// Deferred responses on their way from any thread to the server loop. Shared with every
// responder, so a late one finds `async` null instead of a destroyed server.
struct DeferredMailbox {
  std::mutex mu;
  uv_async_t* async = nullptr;  // Null once the server loop no longer listens.
  std::vector<std::pair<uint64_t, HttpResponse>> done;
};

struct WriteRequest {
  uv_write_t req{};
  Connection* conn = nullptr;
  std::string head;
  std::string body;
};

class Server {
 public:
  Server(const std::string& host, int port, HttpHandler handler, HttpServerLimits limits,
         TlsSessionFactory tls);
  ~Server() { stop(); }
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  int port() const { return port_; }
  void start();
  void stop();

 private:
  enum class RunState { kIdle, kRunning, kStopped };

  // Loop-thread callbacks.
  static void on_connection(uv_stream_t* listener, int status);
  static void on_stop_async(uv_async_t* async);
  static void on_deferred_async(uv_async_t* async);
  static void on_alloc(uv_handle_t* handle, size_t suggested, uv_buf_t* buf);
  static void on_read(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf);
  static void on_write(uv_write_t* req, int status);
  static void on_shutdown(uv_shutdown_t* req, int status);
  static void on_timer(uv_timer_t* timer);
  static void on_connection_handle_closed(uv_handle_t* handle);

  void handle_read(Connection* c, ssize_t nread, const uv_buf_t* buf);
  void handle_written(Connection* c, int status);
  void accept_one();
  void close_everything();
  void close_connection(Connection* c);
  void set_reading(Connection* c, bool on);
  void restart_timer(Connection* c, std::chrono::milliseconds timeout);
  void process(Connection* c);
  void dispatch(Connection* c);
  void complete_deferred(uint64_t id, HttpResponse response);
  void send_response(Connection* c, HttpResponse response, bool head_only, bool keep_alive,
                     bool http10);
  void send_error(Connection* c, int status);
  bool queue_write(Connection* c, std::string head, std::string body);
  bool write_raw(Connection* c, std::string head, std::string body);
  bool tls_receive(Connection* c, const char* data, size_t size);
  bool tls_flush(Connection* c);
  void finish(Connection* c);
  void release_loop();

  HttpHandler handler_;
  HttpServerLimits limits_;
  TlsSessionFactory tls_;
  int port_ = 0;
  RunState run_state_ = RunState::kIdle;
  std::thread thread_;

  uv_loop_t loop_{};
  uv_tcp_t listener_{};
  uv_async_t stop_async_{};
  uv_async_t deferred_async_{};
  std::shared_ptr<DeferredMailbox> mailbox_ = std::make_shared<DeferredMailbox>();
  bool loop_open_ = false;
  bool listener_open_ = false;
  bool async_open_ = false;
  // Loop-thread state.
  std::unordered_set<Connection*> connections_;
  uint64_t next_connection_id_ = 1;
  std::unique_ptr<char[]> read_buffer_{new char[kReadBufferSize]};
};

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

void Server::process(Connection* c) {
  while (!c->closing && !c->awaiting && c->state != Connection::State::kDraining) {
    if (uv_stream_get_write_queue_size(c->stream()) > 0) {
      // The client is not keeping up with our responses: stop reading its requests
      // (TCP flow control then slows it down) until the kernel takes our output.
      c->paused = true;
      break;
    }
    size_t used = 0;
    const auto result = c->parser.parse(std::string_view(c->in).substr(c->in_pos), &used);
    c->in_pos += used;
    if (result == HttpRequestParser::Result::kError) {
      send_error(c, c->parser.error_status());
      break;
    }
    if (result == HttpRequestParser::Result::kNeedMore) {
      if (c->parser.reading_body() && c->parser.head().expect_continue && !c->continue_sent) {
        c->continue_sent = true;
        queue_write(c, std::string(kContinueResponse), {});
      }
      break;
    }
    dispatch(c);
  }

  if (c->closing) return;
  if (c->state == Connection::State::kDraining) {
    std::string().swap(c->in);  // Leftover pipelined input is never processed.
    c->in_pos = 0;
    return;
  }
  c->in.erase(0, c->in_pos);
  c->in_pos = 0;
  if (c->in.empty() && c->in.capacity() > kReadBufferSize) std::string().swap(c->in);
  set_reading(c, !c->paused && !c->awaiting);
}

void Server::dispatch(Connection* c) {
  const RequestHead head = c->parser.take();
  c->continue_sent = false;
  HttpResponse response;
  try {
    response = handler_(head.request);
  } catch (...) {
    // The handler's failure must not take the server (or the daemon) down; the handler
    // is expected to log details itself if it wants them.
    response = HttpResponse{};
    response.status = 500;
    response.body = "internal server error\n";
  }
  if (response.deferred) {
    // The head waits in c->deferred_head until the answer comes (complete_deferred).
    c->deferred_head = head;
    c->awaiting = true;
    auto once = std::make_shared<std::atomic<bool>>(false);
    HttpRespond respond = [mailbox = mailbox_, id = c->id, once](HttpResponse r) {
      if (once->exchange(true)) return;
      r.deferred = nullptr;
      std::lock_guard lock(mailbox->mu);
      if (mailbox->async == nullptr) return;
      mailbox->done.emplace_back(id, std::move(r));
      uv_async_send(mailbox->async);
    };
    try {
      response.deferred(respond);
    } catch (...) {
      HttpResponse failed;
      failed.status = 500;
      failed.body = "internal server error\n";
      respond(std::move(failed));
    }
    // The idle timeout now bounds the wait for the answer.
    restart_timer(c, limits_.idle_timeout);
    return;
  }
  send_response(c, std::move(response), head.request.method == "HEAD", head.keep_alive,
                head.http10);
  // A complete request is progress; what follows is either the next request or idleness.
  restart_timer(c, limits_.idle_timeout);
}

void Server::on_deferred_async(uv_async_t* async) {
  auto* s = static_cast<Server*>(async->data);
  std::vector<std::pair<uint64_t, HttpResponse>> done;
  {
    std::lock_guard lock(s->mailbox_->mu);
    done.swap(s->mailbox_->done);
  }
  for (auto& [id, response] : done) s->complete_deferred(id, std::move(response));
}

void Server::complete_deferred(uint64_t id, HttpResponse response) {
  auto it = std::find_if(connections_.begin(), connections_.end(),
                         [id](const Connection* c) { return c->id == id; });
  if (it == connections_.end()) return;  // The client left (or timed out) meanwhile.
  Connection* c = *it;
  if (c->closing || !c->awaiting) return;
  c->awaiting = false;
  const RequestHead head = std::move(c->deferred_head);
  c->deferred_head = RequestHead{};
  send_response(c, std::move(response), head.request.method == "HEAD", head.keep_alive,
                head.http10);
  restart_timer(c, limits_.idle_timeout);
  // Pipelined requests that arrived meanwhile are still buffered.
  if (!c->closing && c->state != Connection::State::kDraining) process(c);
}

void Server::send_error(Connection* c, int status) {
  HttpResponse response;
  response.status = status;
  response.body = std::string(reason_phrase(status)) + "\n";
  send_response(c, std::move(response), false, false, false);
}

void Server::send_response(Connection* c, HttpResponse response, bool head_only, bool keep_alive,
                           bool http10) {
  if (response.status < 200 || response.status > 599) {
    // 1xx cannot be a final response; anything else is not HTTP.
    response = HttpResponse{};
    response.status = 500;
    response.body = "internal server error: invalid status\n";
  }
  std::string head = http_response_head(response, keep_alive, http10);
  const bool no_content = !response_has_content(response.status);
  std::string body;
  if (!head_only && !no_content) body = std::move(response.body);
  if (!queue_write(c, std::move(head), std::move(body))) return;
  if (!keep_alive) finish(c);
}

bool Server::queue_write(Connection* c, std::string head, std::string body) {
  if (c->closing) return false;
  if (!c->tls) return write_raw(c, std::move(head), std::move(body));
  if (!c->tls->send(head) || !c->tls->send(body)) {
    close_connection(c);
    return false;
  }
  return tls_flush(c);
}

// False when the connection is closing.
bool Server::tls_receive(Connection* c, const char* data, size_t size) {
  switch (c->tls->receive(data, size, c->in)) {
    case TlsChannel::Received::kMore:
      return tls_flush(c);
    case TlsChannel::Received::kPeerClosed:
      // As a FIN: answer the complete requests, then close.
      if (!tls_flush(c)) return false;
      c->peer_eof = true;
      set_reading(c, false);
      process(c);
      finish(c);
      return false;
    case TlsChannel::Received::kFailed:
      c->in.clear();
      if (tls_flush(c)) finish(c);  // the alert goes out before the FIN
      return false;
  }
  return false;
}

bool Server::tls_flush(Connection* c) {
  std::string bytes = c->tls->output();
  return bytes.empty() || write_raw(c, std::move(bytes), {});
}

bool Server::write_raw(Connection* c, std::string head, std::string body) {
  if (c->closing) return false;
  const size_t total = head.size() + body.size();
  if (uv_stream_get_write_queue_size(c->stream()) + total > limits_.max_pending_write_bytes) {
    close_connection(c);
    return false;
  }
  auto* w = new WriteRequest;
  w->conn = c;
  w->head = std::move(head);
  w->body = std::move(body);
  w->req.data = w;
  uv_buf_t bufs[2] = {uv_buf_init(w->head.data(), static_cast<unsigned>(w->head.size())),
                      uv_buf_init(w->body.data(), static_cast<unsigned>(w->body.size()))};
  const unsigned nbufs = w->body.empty() ? 1 : 2;
  if (uv_write(&w->req, c->stream(), bufs, nbufs, &Server::on_write) != 0) {
    delete w;
    close_connection(c);
    return false;
  }
  return true;
}

void Server::on_write(uv_write_t* req, int status) {
  auto* w = static_cast<WriteRequest*>(req->data);
  Connection* c = w->conn;
  delete w;
  if (c->closing) return;  // Cancelled by uv_close().
  if (!guarded("the HTTP server's write", [c, status] { c->server->handle_written(c, status); }))
    c->server->close_connection(c);
}

void Server::handle_written(Connection* c, int status) {
  Server* s = this;
  if (status < 0) {
    s->close_connection(c);
    return;
  }
  s->restart_timer(c, s->limits_.idle_timeout);
  if (c->paused && uv_stream_get_write_queue_size(c->stream()) == 0) {
    c->paused = false;
    s->process(c);
  }
}

void Server::finish(Connection* c) {
  if (c->closing || c->state == Connection::State::kDraining) return;
  c->state = Connection::State::kDraining;
  c->paused = false;
  if (c->tls) {
    // close_notify before the FIN, so the client knows the response was not cut short.
    c->tls->close_notify();
    if (!tls_flush(c)) return;
  }
  // Keep reading (and discarding) so a client still sending cannot deadlock against a
  // response it is not reading, and so close() does not turn into RST.
  if (!c->peer_eof) set_reading(c, true);
  // uv_shutdown waits for queued writes, then sends FIN.
  if (uv_shutdown(&c->shutdown_req, c->stream(), &Server::on_shutdown) != 0) close_connection(c);
}

void Server::on_shutdown(uv_shutdown_t* req, int status) {
  auto* c = static_cast<Connection*>(req->handle->data);
  if (c->closing) return;
  Server* s = c->server;
  if (status < 0 || c->peer_eof) {
    s->close_connection(c);
    return;
  }
  c->shutdown_done = true;
  s->restart_timer(c, std::min(s->limits_.idle_timeout, kMaxLinger));
}

}  // namespace

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
  Server server;
};

HttpServer::HttpServer(const std::string& host, int port, HttpHandler handler,
                       HttpServerLimits limits, TlsSessionFactory tls)
    : impl_(std::make_unique<Impl>(host, port, std::move(handler), limits, std::move(tls))) {}

HttpServer::~HttpServer() { stop(); }

int HttpServer::port() const { return impl_->server.port(); }

void HttpServer::start() { impl_->server.start(); }

void HttpServer::stop() { impl_->server.stop(); }

}  // namespace canaryd
