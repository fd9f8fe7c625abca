#include "probes/common/tcp_client.h"

#include <fmt/format.h>

namespace canaryd {

ProbeResult tcp_connect_failure(int status) {
  if (status == UV_ECONNREFUSED)
    return ProbeResult::failure(Reason::kConnectRefused, "connection refused");
  return ProbeResult::failure(Reason::kConnect,
                              fmt::format("connect failed: {}", uv_strerror(status)));
}

struct TcpClient::Write {
  uv_write_t req;
  std::string data;
  TcpClient* conn;
};

void TcpClient::release() {
  if (--refs_ == 0) delete this;
}

TcpClient* TcpClient::connect(uv_loop_t* loop, ResolvedAddresses addrs, Handler* handler,
                              RunFault fail) {
  auto* c = new TcpClient(loop, std::move(addrs), handler, std::move(fail));
  ++c->refs_;  // held until the outcome is reported
  int rc = UV_EINVAL;
  while (c->next_addr_ < c->addrs_.size() && (rc = c->attempt()) != 0) {
  }
  if (rc != 0) {
    // Report asynchronously like every other outcome: the caller may not be
    // ready for a callback before connect() returns.
    c->report_later(rc);
  }
  return c;
}

int TcpClient::attempt() {
  if (tcp_ != nullptr) close_handle(Close::kReset);
  tcp_ = new uv_tcp_t;
  uv_tcp_init(loop_, tcp_);
  tcp_->data = this;
  ++refs_;  // the handle
  uv_tcp_nodelay(tcp_, 1);
  connect_req_.data = this;
  return uv_tcp_connect(&connect_req_, tcp_, addrs_[next_addr_++].addr(), &TcpClient::on_connect);
}

void TcpClient::close_handle(Close how) {
  auto on_closed = [](uv_handle_t* h) {
    auto* c = static_cast<TcpClient*>(h->data);
    delete reinterpret_cast<uv_tcp_t*>(h);
    c->release();
  };
  uv_tcp_t* t = tcp_;
  tcp_ = nullptr;
  // A reset fails while a shutdown is pending or before the connect finished;
  // a plain close is right then.
  if (how == Close::kReset && uv_tcp_close_reset(t, on_closed) == 0) return;
  uv_close(reinterpret_cast<uv_handle_t*>(t), on_closed);
}

void TcpClient::report_later(int status) {
  struct Failed {
    uv_timer_t timer;
    int status;
    TcpClient* conn;
  };
  auto* f = new Failed{{}, status, this};
  uv_timer_init(loop_, &f->timer);
  f->timer.data = f;
  uv_timer_start(
      &f->timer,
      [](uv_timer_t* t) {
        auto* f = static_cast<Failed*>(t->data);
        TcpClient* c = f->conn;
        if (c->handler_ != nullptr) {
          guarded(c->fail_, "a TCP connect callback",
                  [c, f] { c->handler_->on_connect(f->status); });
        }
        c->release();
        uv_close(reinterpret_cast<uv_handle_t*>(t),
                 [](uv_handle_t* h) { delete static_cast<Failed*>(h->data); });
      },
      0, 0);
}

void TcpClient::on_connect(uv_connect_t* req, int status) {
  auto* c = static_cast<TcpClient*>(req->data);
  if (status != 0 && status != UV_ECANCELED && c->handler_ != nullptr) {
    // The next address, if any; the run's deadline bounds the attempts. The
    // outcome of a new attempt is reported instead of this one.
    while (c->next_addr_ < c->addrs_.size()) {
      status = c->attempt();
      if (status == 0) return;
    }
  }
  if (c->handler_ != nullptr) {
    guarded(c->fail_, "a TCP connect callback", [c, status] {
      if (status == 0) {
        uv_read_start(
            reinterpret_cast<uv_stream_t*>(c->tcp_),
            [](uv_handle_t*, size_t, uv_buf_t* buf) {
              // One static buffer is enough: the loop is single-threaded and
              // every read is consumed before the next alloc.
              static char storage[64 * 1024];
              *buf = uv_buf_init(storage, sizeof storage);
            },
            &TcpClient::on_read);
      }
      c->handler_->on_connect(status);
    });
  }
  c->release();
}

void TcpClient::on_read(uv_stream_t* s, ssize_t n, const uv_buf_t* buf) {
  auto* c = static_cast<TcpClient*>(s->data);
  if (c->handler_ == nullptr) return;
  guarded(c->fail_, "a TCP read callback", [c, s, n, buf] {
    if (n > 0) {
      c->handler_->on_data(std::string_view(buf->base, static_cast<size_t>(n)));
    } else if (n < 0) {
      uv_read_stop(s);
      c->handler_->on_closed(static_cast<int>(n));
    }
  });
}

void TcpClient::write(std::string data) {
  if (closing_ || tcp_ == nullptr) return;
  auto* w = new Write{{}, std::move(data), this};
  w->req.data = w;
  uv_buf_t buf = uv_buf_init(w->data.data(), static_cast<unsigned>(w->data.size()));
  ++refs_;
  int rc = uv_write(&w->req, reinterpret_cast<uv_stream_t*>(tcp_), &buf, 1,
                    [](uv_write_t* req, int status) {
                      auto* w = static_cast<Write*>(req->data);
                      TcpClient* c = w->conn;
                      delete w;
                      if (status < 0 && status != UV_ECANCELED && c->handler_ != nullptr) {
                        guarded(c->fail_, "a TCP write callback",
                                [c, status] { c->handler_->on_closed(status); });
                      }
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
  if (tcp_ != nullptr) close_handle(how);
}

void dial(const RunContext& ctx, AsyncResolve& resolve, PhaseTimer& phases, const std::string& host,
          int port, TcpClient::Handler* handler, TcpClient*& conn,
          std::function<void(ProbeResult)> unresolved) {
  if (auto addr = numeric_address(host, port)) {
    conn = TcpClient::connect(ctx.loop, {std::move(*addr)}, handler, ctx.fail);
    return;
  }
  resolve.start(ctx, host, port,
                [loop = ctx.loop, fail = ctx.fail, &phases, host, handler, &conn,
                 unresolved = std::move(unresolved)](ResolvedAddresses found, std::string error) {
                  phases.end("dns");
                  if (found.empty()) {
                    unresolved(ProbeResult::failure(
                        Reason::kDns, fmt::format("cannot resolve {}: {}", host, error)));
                    return;
                  }
                  conn = TcpClient::connect(loop, std::move(found), handler, fail);
                });
}

}  // namespace canaryd
