// The connection machine behind HttpServer, shared by its two halves:
// http_server.cc (listening, accepting, reading, timers, lifetime) and
// http_exchange.cc (requests to responses, deferred answers, writes, TLS,
// the orderly close). Nothing outside those two files includes it.
#pragma once

#include <uv.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_set>
#include <utility>
#include <vector>

#include "daemon/http_request_parser.h"
#include "daemon/http_server.h"
#include "daemon/tls_channel.h"

namespace canaryd::http_internal {

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

}  // namespace canaryd::http_internal
