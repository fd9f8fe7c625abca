// A TCP client connection on the loop for probes that speak their protocol
// themselves (Redis). The connection owns its libuv handle and requests and
// frees itself once libuv is done with them, so a probe can drop it at any
// moment (a cancel at the deadline) without waiting for close callbacks.
#pragma once

#include <uv.h>

#include <functional>
#include <string>
#include <string_view>

#include "base/guard.h"
#include "probes/common/resolve.h"

namespace canaryd {

// The result of a connect that failed with libuv error `status`: the peer
// refused it, or something else (unreachable, reset, ...) went wrong.
ProbeResult tcp_connect_failure(int status);

class TcpClient {
 public:
  class Handler {
   public:
    virtual ~Handler() = default;
    // status 0: connected; otherwise a negative libuv error (UV_ECONNREFUSED, ...).
    virtual void on_connect(int status) = 0;
    virtual void on_data(std::string_view data) = 0;
    // The peer closed (UV_EOF) or the connection broke (another error).
    virtual void on_closed(int status) = 0;
  };

  // Starts connecting to each address in turn until one accepts, as curl
  // does: a name whose first address is down (or is IPv6 where only IPv4
  // listens) still works. The handler hears one on_connect: 0, or the last
  // address's error. Never calls back synchronously. An exception from the
  // handler goes to `fail` (the run). `addrs` must not be empty.
  static TcpClient* connect(uv_loop_t* loop, ResolvedAddresses addrs, Handler* handler,
                            RunFault fail = {});

  void write(std::string data);
  // Detaches the handler (no more callbacks) and closes; memory is released
  // when libuv has finished with every request. The pointer is invalid after.
  // kReset sends an RST: an abandoned run (a timeout) must not leave a
  // TIME_WAIT socket behind for every run, as thousands of probes would.
  enum class Close { kGraceful, kReset };
  void close(Close how = Close::kGraceful);

 private:
  struct Write;
  TcpClient(uv_loop_t* loop, ResolvedAddresses addrs, Handler* handler, RunFault fail)
      : loop_(loop), addrs_(std::move(addrs)), handler_(handler), fail_(std::move(fail)) {}
  void release();
  int attempt();  // connects to the next address; a libuv error if it could not start
  void close_handle(Close how);
  static void on_connect(uv_connect_t* req, int status);
  static void on_read(uv_stream_t* s, ssize_t n, const uv_buf_t* buf);
  void report_later(int status);

  uv_loop_t* loop_;
  ResolvedAddresses addrs_;
  size_t next_addr_ = 0;
  uv_tcp_t* tcp_ = nullptr;  // heap, one per attempt: freed in its close callback
  uv_connect_t connect_req_{};
  Handler* handler_;
  RunFault fail_;
  int refs_ = 0;  // each open handle until its close callback, plus each pending request
  bool closing_ = false;
};

// Dials host:port for one run: at once for a numeric address, otherwise
// after resolving the name on the loop, when the "dns" phase ends in
// `phases`. `conn` is set as the connect starts and the handler hears
// on_connect; a name that does not resolve ends the run through
// `unresolved` with a `dns` result instead. While `resolve.pending()` the run
// is in its dns phase.
void dial(const RunContext& ctx, AsyncResolve& resolve, PhaseTimer& phases, const std::string& host,
          int port, TcpClient::Handler* handler, TcpClient*& conn,
          std::function<void(ProbeResult)> unresolved);

}  // namespace canaryd
