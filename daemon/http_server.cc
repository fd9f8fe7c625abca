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

#include "probes/common/guard.h"

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

struct StatusReason {
  int status;
  const char* reason;
};

constexpr StatusReason kReasons[] = {
    {200, "OK"},
    {201, "Created"},
    {202, "Accepted"},
    {204, "No Content"},
    {301, "Moved Permanently"},
    {302, "Found"},
    {304, "Not Modified"},
    {307, "Temporary Redirect"},
    {308, "Permanent Redirect"},
    {400, "Bad Request"},
    {401, "Unauthorized"},
    {403, "Forbidden"},
    {404, "Not Found"},
    {405, "Method Not Allowed"},
    {406, "Not Acceptable"},
    {408, "Request Timeout"},
    {409, "Conflict"},
    {411, "Length Required"},
    {413, "Content Too Large"},
    {414, "URI Too Long"},
    {415, "Unsupported Media Type"},
    {417, "Expectation Failed"},
    {422, "Unprocessable Content"},
    {429, "Too Many Requests"},
    {431, "Request Header Fields Too Large"},
    {500, "Internal Server Error"},
    {501, "Not Implemented"},
    {502, "Bad Gateway"},
    {503, "Service Unavailable"},
    {504, "Gateway Timeout"},
    {505, "HTTP Version Not Supported"},
};

// Clients ignore the reason phrase, but humans reading curl -v do not.
const char* reason_phrase(int status) {
  for (const auto& entry : kReasons) {
    if (entry.status == status) return entry.reason;
  }
  if (status < 300) return "OK";
  if (status < 400) return "Redirection";
  if (status < 500) return "Client Error";
  return "Server Error";
}

// RFC 9110 token characters (header names, methods).
bool is_tchar(unsigned char c) {
  if (c >= '0' && c <= '9') return true;
  if ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') return true;
  return c != '\0' && std::strchr("!#$%&'*+-.^_`|~", c) != nullptr;
}

bool is_token(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return is_tchar(c); });
}

char ascii_lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c; }

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (ascii_lower(a[i]) != ascii_lower(b[i])) return false;
  }
  return true;
}

std::string_view trim_ows(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// True if the comma-separated list (e.g. a Connection header) contains `token`.
bool list_has_token(std::string_view list, std::string_view token) {
  while (!list.empty()) {
    const size_t comma = list.find(',');
    if (iequals(trim_ows(list.substr(0, comma)), token)) return true;
    if (comma == std::string_view::npos) break;
    list.remove_prefix(comma + 1);
  }
  return false;
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  c = ascii_lower(c);
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

// Rejects malformed escapes and %00: a NUL in a path is never legitimate and would
// confuse any C-string consumer further down.
bool percent_decode(std::string_view in, std::string* out) {
  out->clear();
  out->reserve(in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] != '%') {
      out->push_back(in[i]);
      continue;
    }
    if (i + 2 >= in.size()) return false;
    const int hi = hex_value(in[i + 1]);
    const int lo = hex_value(in[i + 2]);
    if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) return false;
    out->push_back(static_cast<char>(hi * 16 + lo));
    i += 2;
  }
  return true;
}

// Everything learned from the request line and headers; the body is read afterwards.
struct RequestHead {
  HttpRequest request;
  size_t content_length = 0;
  bool http10 = false;
  bool keep_alive = true;
  bool expect_continue = false;
};

// Splits the request target into path and query. Accepts origin-form ("/a?b") and
// absolute-form ("http://host/a?b", which RFC 9112 requires servers to accept).
int split_target(std::string_view target, HttpRequest* req) {
  std::string_view rest = target;
  if (rest.empty()) return 400;
  if (rest.front() != '/') {
    size_t scheme_len = 0;
    if (rest.size() >= 7 && iequals(rest.substr(0, 7), "http://")) {
      scheme_len = 7;
    } else if (rest.size() >= 8 && iequals(rest.substr(0, 8), "https://")) {
      scheme_len = 8;
    } else {
      return 400;
    }
    rest.remove_prefix(scheme_len);
    const size_t path_start = rest.find_first_of("/?");
    rest = path_start == std::string_view::npos ? std::string_view() : rest.substr(path_start);
  }
  if (rest.find('#') != std::string_view::npos) return 400;
  const size_t qmark = rest.find('?');
  std::string_view raw_path = rest.substr(0, qmark);
  if (qmark != std::string_view::npos) req->query.assign(rest.substr(qmark + 1));
  if (raw_path.empty()) raw_path = "/";
  if (!percent_decode(raw_path, &req->path)) return 400;
  return 0;
}

// Parses "HTTP/x.y". Returns 0, 400 (garbage) or 505 (a well-formed version other than 1.x).
int parse_version(std::string_view v, bool* http10) {
  if (v.size() != 8 || v.substr(0, 5) != "HTTP/" || v[6] != '.' || v[5] < '0' || v[5] > '9' ||
      v[7] < '0' || v[7] > '9') {
    return 400;
  }
  if (v[5] != '1') return 505;
  *http10 = v[7] == '0';
  return 0;
}

// `head` is the request line and header lines, including the terminating blank line.
// Returns 0 on success or the HTTP status to answer with before closing.
int parse_head(std::string_view head, size_t max_body_bytes, RequestHead* out) {
  HttpRequest& req = out->request;
  bool first = true;
  bool have_length = false;
  while (!head.empty()) {
    const size_t nl = head.find('\n');
    std::string_view line = head.substr(0, nl);
    head.remove_prefix(nl == std::string_view::npos ? head.size() : nl + 1);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    // A bare CR is a classic request-smuggling ingredient: reject rather than guess.
    if (line.find('\r') != std::string_view::npos) return 400;
    if (line.empty()) break;

    if (first) {
      first = false;
      const size_t sp1 = line.find(' ');
      const size_t sp2 = line.rfind(' ');
      if (sp1 == std::string_view::npos || sp1 == sp2) return 400;
      const std::string_view method = line.substr(0, sp1);
      const std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
      if (!is_token(method) || target.empty()) return 400;
      for (const char c : target) {
        const auto u = static_cast<unsigned char>(c);
        if (u <= 0x20 || u == 0x7f) return 400;
      }
      if (const int rc = parse_version(line.substr(sp2 + 1), &out->http10); rc != 0) return rc;
      req.method.assign(method);
      req.target.assign(target);
      if (const int rc = split_target(target, &req); rc != 0) return rc;
      continue;
    }

    // Obsolete line folding (RFC 9112 5.2) is rejected, as the RFC allows.
    if (line.front() == ' ' || line.front() == '\t') return 400;
    const size_t colon = line.find(':');
    if (colon == std::string_view::npos) return 400;
    const std::string_view name = line.substr(0, colon);
    if (!is_token(name)) return 400;  // Also catches whitespace before the colon.
    const std::string_view value = trim_ows(line.substr(colon + 1));
    for (const char c : value) {
      const auto u = static_cast<unsigned char>(c);
      if ((u < 0x20 && u != '\t') || u == 0x7f) return 400;
    }
    std::string lower(name);
    std::transform(lower.begin(), lower.end(), lower.begin(), ascii_lower);
    req.headers.emplace_back(std::move(lower), std::string(value));
  }
  if (first) return 400;

  bool conn_close = false;
  bool conn_keep_alive = false;
  for (const auto& [name, value] : req.headers) {
    if (name == "transfer-encoding") {
      // Only Content-Length framing is supported; refusing chunked uploads is allowed.
      return out->http10 ? 400 : 411;
    } else if (name == "content-length") {
      if (value.empty() ||
          !std::all_of(value.begin(), value.end(), [](char c) { return c >= '0' && c <= '9'; })) {
        return 400;
      }
      // Saturate instead of overflowing: anything this large is 413 anyway.
      constexpr size_t kSaturated = SIZE_MAX / 16;
      size_t length = 0;
      for (const char c : value) {
        length = std::min(kSaturated, length * 10 + static_cast<size_t>(c - '0'));
      }
      // Differing duplicates mean two parties may disagree on framing.
      if (have_length && length != out->content_length) return 400;
      have_length = true;
      out->content_length = length;
    } else if (name == "connection") {
      conn_close = conn_close || list_has_token(value, "close");
      conn_keep_alive = conn_keep_alive || list_has_token(value, "keep-alive");
    } else if (name == "expect") {
      if (!iequals(value, "100-continue")) return 417;
      out->expect_continue = !out->http10;
    }
  }
  if (out->content_length > max_body_bytes) return 413;
  out->keep_alive = out->http10 ? (conn_keep_alive && !conn_close) : !conn_close;
  return 0;
}

// Header values a handler supplies may echo client input; never let it end the header.
std::string sanitize_header_value(std::string_view v) {
  std::string s(v);
  for (char& c : s) {
    if (c == '\r' || c == '\n' || c == '\0') c = ' ';
  }
  return s;
}

bool is_managed_header(std::string_view name) {
  return iequals(name, "content-length") || iequals(name, "content-type") ||
         iequals(name, "connection") || iequals(name, "transfer-encoding");
}

class Server;

// One accepted client. Owned by its two handles (tcp and timer), whose data pointers
// point here; freed when both close callbacks have run.
struct Connection {
  enum class State {
    kReadingHead,  // Waiting for a complete request line + headers.
    kReadingBody,  // Head parsed, waiting for Content-Length bytes.
    kDraining,     // Last response queued: flushing it, then FIN, then discarding input.
  };

  explicit Connection(Server* s) : server(s) {}

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
  bool awaiting = false;  // A deferred response is outstanding; no further request is read.
  uint64_t id = 0;        // Names the connection to a deferred responder.
  State state = State::kReadingHead;
  std::string in;  // Unprocessed input; in[0, in_pos) is already consumed.
  size_t in_pos = 0;
  size_t scan_pos = 0;  // Where to resume searching for the end of the head (from in_pos).
  RequestHead head;

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
  Server(const std::string& host, int port, HttpHandler handler, HttpServerLimits limits);
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
  int try_parse_head(Connection* c);  // -1: need more input, 0: parsed, else HTTP status.
  void dispatch(Connection* c);
  void complete_deferred(uint64_t id, HttpResponse response);
  void send_response(Connection* c, HttpResponse response, bool head_only, bool keep_alive,
                     bool http10);
  void send_error(Connection* c, int status);
  bool queue_write(Connection* c, std::string head, std::string body);
  void finish(Connection* c);
  void release_loop();

  HttpHandler handler_;
  HttpServerLimits limits_;
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

Server::Server(const std::string& host, int port, HttpHandler handler, HttpServerLimits limits)
    : handler_(std::move(handler)), limits_(limits) {
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
  auto* c = new Connection(this);
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
  c->in.append(buf->base, static_cast<size_t>(nread));
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
    if (c->state == Connection::State::kReadingHead) {
      const int rc = try_parse_head(c);
      if (rc < 0) break;
      if (rc > 0) {
        send_error(c, rc);
        break;
      }
      c->state = Connection::State::kReadingBody;
    }
    const size_t available = c->in.size() - c->in_pos;
    const size_t needed = c->head.content_length;
    if (available < needed) {
      if (c->head.expect_continue && !c->continue_sent) {
        c->continue_sent = true;
        queue_write(c, std::string(kContinueResponse), {});
      }
      break;
    }
    c->head.request.body.assign(c->in, c->in_pos, needed);
    c->in_pos += needed;
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

int Server::try_parse_head(Connection* c) {
  if (c->scan_pos == 0) {
    // RFC 9112 2.2: ignore empty lines before a request line (some clients send an extra
    // CRLF after a body).
    while (c->in_pos < c->in.size() && (c->in[c->in_pos] == '\r' || c->in[c->in_pos] == '\n')) {
      ++c->in_pos;
    }
  }
  const std::string_view pending = std::string_view(c->in).substr(c->in_pos);
  const size_t from = c->scan_pos;
  const size_t crlf = pending.find("\n\r\n", from);
  const size_t lf = pending.find("\n\n", from);
  const size_t end = std::min(crlf == std::string_view::npos ? crlf : crlf + 3,
                              lf == std::string_view::npos ? lf : lf + 2);
  if (end == std::string_view::npos) {
    if (pending.size() > limits_.max_header_bytes) return 431;
    // The terminator may straddle the next read; re-scan only its possible start.
    c->scan_pos = pending.size() >= 2 ? pending.size() - 2 : 0;
    return -1;
  }
  if (end > limits_.max_header_bytes) return 431;
  c->head = RequestHead{};
  c->continue_sent = false;
  const int rc = parse_head(pending.substr(0, end), limits_.max_body_bytes, &c->head);
  c->in_pos += end;
  c->scan_pos = 0;
  return rc;
}

void Server::dispatch(Connection* c) {
  c->state = Connection::State::kReadingHead;
  HttpResponse response;
  try {
    response = handler_(c->head.request);
  } catch (...) {
    // The handler's failure must not take the server (or the daemon) down; the handler
    // is expected to log details itself if it wants them.
    response = HttpResponse{};
    response.status = 500;
    response.body = "internal server error\n";
  }
  if (response.deferred) {
    // The head stays in c->head until the answer comes (complete_deferred).
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
  const RequestHead head = std::move(c->head);
  c->head = RequestHead{};
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
  const RequestHead head = std::move(c->head);
  c->head = RequestHead{};
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
  // RFC 9110: these never carry content (nor, for 204, a Content-Length).
  const bool no_content = response.status == 204 || response.status == 304;

  std::string head;
  head.reserve(256);
  head += "HTTP/1.1 ";
  head += std::to_string(response.status);
  head += ' ';
  head += reason_phrase(response.status);
  head += "\r\n";
  if (!no_content) {
    head += "Content-Type: ";
    head += sanitize_header_value(response.content_type);
    head += "\r\nContent-Length: ";
    head += std::to_string(response.body.size());
    head += "\r\n";
  }
  if (!keep_alive) {
    head += "Connection: close\r\n";
  } else if (http10) {
    head += "Connection: keep-alive\r\n";
  }
  for (const auto& [name, value] : response.headers) {
    if (!is_token(name) || is_managed_header(name)) continue;
    head += name;
    head += ": ";
    head += sanitize_header_value(value);
    head += "\r\n";
  }
  head += "\r\n";
  std::string body;
  if (!head_only && !no_content) body = std::move(response.body);
  if (!queue_write(c, std::move(head), std::move(body))) return;
  if (!keep_alive) finish(c);
}

bool Server::queue_write(Connection* c, std::string head, std::string body) {
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

std::string HttpRequest::header(std::string_view lower_name) const {
  for (const auto& [name, value] : headers) {
    if (name == lower_name) return value;
  }
  return {};
}

std::string listen_address_to_string(const std::string& host, int port) {
  if (host.find(':') != std::string::npos && (host.empty() || host.front() != '[')) {
    return "[" + host + "]:" + std::to_string(port);
  }
  return host + ":" + std::to_string(port);
}

struct HttpServer::Impl {
  Impl(const std::string& host, int port, HttpHandler handler, HttpServerLimits limits)
      : server(host, port, std::move(handler), limits) {}
  Server server;
};

HttpServer::HttpServer(const std::string& host, int port, HttpHandler handler,
                       HttpServerLimits limits)
    : impl_(std::make_unique<Impl>(host, port, std::move(handler), limits)) {}

HttpServer::~HttpServer() { stop(); }

int HttpServer::port() const { return impl_->server.port(); }

void HttpServer::start() { impl_->server.start(); }

void HttpServer::stop() { impl_->server.stop(); }

}  // namespace canaryd
