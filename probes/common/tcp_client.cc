#include "probes/common/tcp_client.h"

namespace canaryd {

struct TcpClient::Write {
  uv_write_t req;
  std::string data;
  TcpClient* conn;
};

void TcpClient::release() {
  if (--refs_ == 0) delete this;
}

TcpClient* TcpClient::connect(uv_loop_t* loop, const sockaddr* addr, Handler* handler) {
  auto* c = new TcpClient(handler);
  uv_tcp_init(loop, &c->tcp_);
  c->tcp_.data = c;
  c->refs_ = 1;  // the handle
  uv_tcp_nodelay(&c->tcp_, 1);
  c->connect_req_.data = c;
  ++c->refs_;
  int rc = uv_tcp_connect(&c->connect_req_, &c->tcp_, addr, [](uv_connect_t* req, int status) {
    auto* c = static_cast<TcpClient*>(req->data);
    if (c->handler_ != nullptr) {
      if (status == 0) {
        uv_read_start(
            reinterpret_cast<uv_stream_t*>(&c->tcp_),
            [](uv_handle_t*, size_t, uv_buf_t* buf) {
              // One static buffer is enough: the loop is single-threaded and
              // every read is consumed before the next alloc.
              static char storage[64 * 1024];
              *buf = uv_buf_init(storage, sizeof storage);
            },
            [](uv_stream_t* s, ssize_t n, const uv_buf_t* buf) {
              auto* c = static_cast<TcpClient*>(s->data);
              if (c->handler_ == nullptr) return;
              if (n > 0) {
                c->handler_->on_data(std::string_view(buf->base, static_cast<size_t>(n)));
              } else if (n < 0) {
                uv_read_stop(s);
                c->handler_->on_closed(static_cast<int>(n));
              }
            });
      }
      Handler* h = c->handler_;
      h->on_connect(status);
    }
    c->release();
  });
  if (rc != 0) {
    // Report asynchronously like every other outcome: the caller may not be
    // ready for a callback before connect() returns.
    --c->refs_;
    struct Failed {
      uv_timer_t timer;
      int status;
      TcpClient* conn;
    };
    auto* f = new Failed{{}, rc, c};
    ++c->refs_;
    uv_timer_init(loop, &f->timer);
    f->timer.data = f;
    uv_timer_start(
        &f->timer,
        [](uv_timer_t* t) {
          auto* f = static_cast<Failed*>(t->data);
          if (f->conn->handler_ != nullptr) f->conn->handler_->on_connect(f->status);
          f->conn->release();
          uv_close(reinterpret_cast<uv_handle_t*>(t),
                   [](uv_handle_t* h) { delete static_cast<Failed*>(h->data); });
        },
        0, 0);
  }
  return c;
}

void TcpClient::write(std::string data) {
  if (closing_) return;
  auto* w = new Write{{}, std::move(data), this};
  w->req.data = w;
  uv_buf_t buf = uv_buf_init(w->data.data(), static_cast<unsigned>(w->data.size()));
  ++refs_;
  int rc = uv_write(&w->req, reinterpret_cast<uv_stream_t*>(&tcp_), &buf, 1,
                    [](uv_write_t* req, int status) {
                      auto* w = static_cast<Write*>(req->data);
                      TcpClient* c = w->conn;
                      delete w;
                      if (status < 0 && status != UV_ECANCELED && c->handler_ != nullptr)
                        c->handler_->on_closed(status);
                      c->release();
                    });
  if (rc != 0) {
    delete w;
    --refs_;
    if (handler_ != nullptr) handler_->on_closed(rc);
  }
}

void TcpClient::close(Close how) {
  handler_ = nullptr;
  if (closing_) return;
  closing_ = true;
  auto on_closed = [](uv_handle_t* h) { static_cast<TcpClient*>(h->data)->release(); };
  // A reset fails while a shutdown is pending or before the connect finished;
  // a plain close is right then.
  if (how == Close::kReset && uv_tcp_close_reset(&tcp_, on_closed) == 0) return;
  uv_close(reinterpret_cast<uv_handle_t*>(&tcp_), on_closed);
}

}  // namespace canaryd
