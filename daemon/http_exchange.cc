// Requests to responses: parsing what arrived, calling the handler, deferred
// answers, writing (through TLS when it is on) and the orderly close.
#include <algorithm>
#include <atomic>
#include <memory>

#include "base/guard.h"
#include "daemon/http_connection.h"
#include "daemon/http_response.h"

namespace canaryd::http_internal {

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

}  // namespace canaryd::http_internal
