// A TCP client connection on the loop for probes that speak their protocol
// themselves (Redis). The connection owns its libuv handle and requests and
// frees itself once libuv is done with them, so a probe can drop it at any
// moment (a cancel at the deadline) without waiting for close callbacks.
#pragma once

#include <uv.h>

#include <string>
#include <string_view>

namespace canaryd {

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

  // Starts connecting; the handler hears the outcome. Never calls back
  // synchronously.
  static TcpClient* connect(uv_loop_t* loop, const struct sockaddr* addr, Handler* handler);

  void write(std::string data);
  // Detaches the handler (no more callbacks) and closes; memory is released
  // when libuv has finished with every request. The pointer is invalid after.
  // kReset sends an RST: an abandoned run (a timeout) must not leave a
  // TIME_WAIT socket behind for every run, as thousands of probes would.
  enum class Close { kGraceful, kReset };
  void close(Close how = Close::kGraceful);

 private:
  struct Write;
  explicit TcpClient(Handler* handler) : handler_(handler) {}
  void release();

  uv_tcp_t tcp_{};
  uv_connect_t connect_req_{};
  Handler* handler_;
  int refs_ = 0;  // the handle until its close callback, plus each pending request
  bool closing_ = false;
};

}  // namespace canaryd
