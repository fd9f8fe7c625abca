// Embedded HTTP/1.x server for canaryd's own endpoints (/metrics, /api/v1/state,
// /-/healthy, /-/ready, /-/reload), in plain HTTP or over TLS.
//
// Why a separate loop and thread: every probe runs on the daemon's main libuv loop, and a
// scrape, a dashboard poll or a hostile client must never delay a probe. The server
// therefore owns a private libuv loop driven by exactly one thread (not one per
// connection). All socket I/O is non-blocking; a client that reads slowly, never reads, or
// trickles its request only ever costs its own connection a bounded amount of memory
// until the idle timeout closes it.
//
// Thread-safety:
//   * Construct, start(), stop() and destroy an HttpServer from one owner thread. port()
//     may be called from any thread (it is immutable after construction). Never call
//     stop() or destroy the server from inside the handler: it would join its own thread.
//     A handler that wants to act on the server (e.g. POST /-/reload rebinding the listen
//     address) must hand the work to the owner thread, e.g. with uv_async_send.
//   * The handler is invoked on the server thread, one request at a time, never
//     concurrently with itself. Whatever it reads must be safe to read from that thread.
//     It should be quick: while it runs, no other HTTP client is served (probes are not
//     affected, they run elsewhere). A request that has to wait answers with
//     HttpResponse::deferred instead of blocking.
//   * The server thread blocks all asynchronous signals so process-directed signals
//     (SIGTERM, SIGHUP, ...) are delivered to the daemon's other threads, and a SIGPIPE
//     from writing to a vanished client cannot kill the process.

#ifndef CANARYD_DAEMON_HTTP_SERVER_H_
#define CANARYD_DAEMON_HTTP_SERVER_H_

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "daemon/http_request_parser.h"

struct ssl_st;  // OpenSSL's SSL

namespace canaryd {

struct HttpResponse;
// Completes a deferred request. Callable from any thread; only the first call counts, and
// it does nothing if the client or the server is gone by then.
using HttpRespond = std::function<void(HttpResponse)>;

struct HttpResponse {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
  // Extra headers. Content-Length, Content-Type, Connection and Transfer-Encoding are
  // managed by the server and ignored here; CR/LF in values is replaced so a handler that
  // echoes client input cannot split the response.
  std::vector<std::pair<std::string, std::string>> headers;
  // Set by a handler that answers later, without holding the server thread (POST
  // /-/reload waits for the reload while /metrics is served). The server calls it once,
  // on the server thread, with the responder and sends nothing else until the responder
  // is called. That connection reads no further request meanwhile; its idle timeout
  // still applies. Ignored on the response given to a responder.
  std::function<void(HttpRespond)> deferred;
};

using HttpHandler = std::function<HttpResponse(const HttpRequest&)>;

// Makes the server speak TLS. Called on the server thread for each accepted
// connection, it returns a fresh server-side OpenSSL session (the server owns
// it from then on), or null to drop the connection. OpenSSL does all of TLS:
// the server only carries bytes between the socket and the session's memory
// BIOs, so TLS needs no thread and no blocking call of its own.
using TlsSessionFactory = std::function<ssl_st*()>;

struct HttpServerLimits {
  size_t max_header_bytes = 16 * 1024;  // Request line + headers; beyond -> 431 and close.
  size_t max_body_bytes = 1024 * 1024;  // Content-Length beyond -> 413 and close.
  size_t max_connections = 512;         // Beyond: accepted and closed at once.
  // A connection is closed when it makes no progress for this long: idle between
  // keep-alive requests, a request that has not fully arrived, or a response the client
  // is not reading. Trickling bytes of a request does not count as progress.
  std::chrono::milliseconds idle_timeout{30000};
  // Per connection: bytes of responses the kernel has not accepted yet. A response that
  // would exceed it closes the connection instead.
  size_t max_pending_write_bytes = 64 * 1024 * 1024;
};

class HttpServer {
 public:
  // Binds and listens immediately, so configuration errors surface at startup and
  // port() is valid before start(). `host` is a numeric IPv4 or IPv6 literal (IPv6 may be
  // bracketed); `port` 0 picks a free port. Throws std::runtime_error with a message such
  // as "cannot listen on 127.0.0.1:9464: address already in use".
  HttpServer(const std::string& host, int port, HttpHandler handler, HttpServerLimits limits = {},
             TlsSessionFactory tls = nullptr);
  ~HttpServer();  // Calls stop().

  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // The bound port (useful when constructed with port 0).
  int port() const;

  // Starts the server thread. A second call while running does nothing; calling it after
  // stop() throws std::logic_error (a server is not restartable).
  void start();

  // Wakes the server loop, closes the listener and every connection (in-flight responses
  // are dropped), and joins the thread. Idempotent; also valid if start() was never called.
  void stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// "127.0.0.1:9464" or "[::1]:9464", as used in error messages and logs.
std::string listen_address_to_string(const std::string& host, int port);

}  // namespace canaryd

#endif  // CANARYD_DAEMON_HTTP_SERVER_H_
