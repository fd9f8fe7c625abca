#include "probes/common/ws_client.h"

#include <curl/curl.h>
#include <fmt/format.h>
#include <libwebsockets.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <stdexcept>
#include <utility>
#include <vector>

#include "base/secrets.h"
#include "probes/common/config_fields.h"
#include "probes/common/tls_verify.h"
#include "probes/common/ws_lws_log.h"

namespace canaryd {

namespace {

constexpr size_t kMaxShownValue = 64;

// What the server sent, safe to quote in a message (see target_text).
std::string shown(std::string_view value) { return target_text(value, kMaxShownValue); }

// The server has neither closed nor reset the TCP connection: when lws ends
// such a connection on its own, it refused something the server sent.
bool peer_still_connected(int fd) {
  if (fd < 0) return false;
  char b;
  ssize_t n = recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
  return n > 0 || (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK));
}

}  // namespace

// ---------------------------------------------------------------------------
// WsConnection

WsConnection::WsConnection(std::shared_ptr<const WsEndpoint> endpoint, Handler* handler)
    : endpoint_(std::move(endpoint)), handler_(handler) {}

WsConnection* WsConnection::open(WsService& service, std::shared_ptr<const WsEndpoint> endpoint,
                                 const ResolvedAddress& addr, Handler* handler,
                                 std::string traceparent) {
  auto* c = new WsConnection(std::move(endpoint), handler);
  c->traceparent_ = std::move(traceparent);
  c->live_ = service.live_;
  ++*c->live_;
  const WsEndpoint& ep = *c->endpoint_;
  bool room = *service.live_ <= service.max_live_;
  WsService::ClientVhost* cv =
      room && service.context_ && !service.shut_down_ ? service.vhost_for(ep.ca_file) : nullptr;
  lws_vhost* vhost = cv != nullptr ? cv->vhost : nullptr;
  if (vhost != nullptr) {
    c->vhost_users_ = cv->users;
    ++*c->vhost_users_;
  }
  c->start_ns_ = uv_hrtime();  // after the vhost: loading a trust store is not connect time
  std::string offered;
  for (const auto& p : ep.subprotocols) {
    if (!offered.empty()) offered += ", ";
    offered += p;
  }
  if (vhost != nullptr) {
    lws_client_connect_info ci{};
    ci.context = service.context_;
    ci.vhost = vhost;
    ci.address = addr.ip.c_str();
    ci.port = ep.port;
    ci.path = ep.path.c_str();
    ci.host = ep.host_header.c_str();
    ci.origin = ep.origin.empty() ? nullptr : ep.origin.c_str();
    ci.protocol = offered.empty() ? nullptr : offered.c_str();
    ci.local_protocol_name = kWsProtocolName;
    ci.opaque_user_data = c;
    // lws's default policy re-arms an idle ("validity") timer at every frame
    // received, and lws 4.1 inserts timers into one sorted list by walking it:
    // with 500 conversations open that walk ran for every agent event. canaryd
    // times every phase itself, so lws's idle ping and hangup are off.
    static const lws_retry_bo_t kNoIdlePolicy{};
    ci.retry_and_idle_policy = &kNoIdlePolicy;
    if (ep.tls) {
      ci.ssl_connection = LCCSCF_USE_SSL;
      if (ep.insecure_skip_verify)
        ci.ssl_connection |= LCCSCF_ALLOW_SELFSIGNED | LCCSCF_SKIP_SERVER_CERT_HOSTNAME_CHECK |
                             LCCSCF_ALLOW_EXPIRED | LCCSCF_ALLOW_INSECURE;
    }
    c->opening_ = true;
    c->wsi_ = lws_client_connect_via_info(&ci);
    c->opening_ = false;
  }
  if (c->wsi_ == nullptr && !c->ended_) {
    c->ended_ = true;
    c->pending_end_ =
        room ? WsEnd{false, Reason::kConnect, "cannot start the connection", {}, {}}
             : WsEnd{false,
                     Reason::kInternal,
                     fmt::format("canaryd holds its limit of {} WebSocket connections (3/4 of the "
                                 "open-files limit, shared by its probe loops); raise LimitNOFILE",
                                 service.max_live_),
                     {},
                     {},
                     true};
  }
  if (c->ended_) {
    // Whatever ended inside connect_via_info is reported on the next loop
    // turn: the handler is never called back from inside open().
    c->deferred_ = new uv_timer_t;
    uv_timer_init(service.loop_, c->deferred_);
    c->deferred_->data = c;
    uv_timer_start(
        c->deferred_,
        [](uv_timer_t* t) {
          auto* self = static_cast<WsConnection*>(t->data);
          if (self->handler_ != nullptr && self->pending_end_) {
            Handler* h = self->handler_;
            self->handler_ = nullptr;
            guarded("a WebSocket end", [&] { h->on_ws_end(self, *self->pending_end_); });
          }
          uv_close(reinterpret_cast<uv_handle_t*>(t), [](uv_handle_t* h) {
            auto* self = static_cast<WsConnection*>(h->data);
            delete reinterpret_cast<uv_timer_t*>(h);
            self->deferred_ = nullptr;
            if (self->wsi_ == nullptr) delete self;
          });
        },
        0, 0);
  }
  return c;
}

void WsConnection::send_text(std::string text) {
  if (wsi_ == nullptr || ended_) return;
  outbox_.push_back(std::move(text));
  lws_callback_on_writable(wsi_);
}

void WsConnection::close() {
  if (wsi_ == nullptr || ended_ || close_requested_) return;
  close_requested_ = true;
  lws_callback_on_writable(wsi_);
}

void WsConnection::abort() {
  handler_ = nullptr;
  if (deferred_ != nullptr) return;  // its close callback frees the connection
  if (wsi_ == nullptr) {
    delete this;
    return;
  }
  ended_ = true;
  int fd = lws_get_socket_fd(wsi_);
  if (fd >= 0) {
    // Reset rather than close gracefully: thousands of runs timing out each
    // second must not leave a TIME_WAIT socket each.
    linger l{1, 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
    // lws 4.1.6 ignores a kill while the TCP connect is pending, which
    // leaked a socket per timed-out run; shutting the socket down makes the
    // connect fail now, and lws then closes it.
    if (connect_end_ns_ == 0) shutdown(fd, SHUT_RDWR);
  }
  lws_set_timeout(wsi_, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
}

WsConnection::Phase WsConnection::phase() const {
  if (ended_) return Phase::kEnded;
  if (handshake_end_ns_ != 0) return close_requested_ ? Phase::kClosing : Phase::kOpen;
  if (tls_end_ns_ != 0 || (!endpoint_->tls && connect_end_ns_ != 0)) return Phase::kHandshake;
  if (connect_end_ns_ != 0) return Phase::kTls;
  if (wsi_ != nullptr) {
    // The TCP connect has no callback of its own; ask the socket.
    int fd = lws_get_socket_fd(wsi_);
    sockaddr_storage peer{};
    socklen_t len = sizeof peer;
    if (fd >= 0 && getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &len) == 0)
      return endpoint_->tls ? Phase::kTls : Phase::kHandshake;
  }
  return Phase::kConnect;
}

const char* WsConnection::phase_name(Phase p) {
  switch (p) {
    case Phase::kConnect:
      return "connect";
    case Phase::kTls:
      return "tls";
    case Phase::kHandshake:
      return "handshake";
    case Phase::kOpen:
      return "open";
    case Phase::kClosing:
      return "close";
    case Phase::kEnded:
      return "ended";
  }
  return "connect";
}

Phases WsConnection::phases() const {
  Phases out;
  if (connect_end_ns_ == 0) return out;
  out.emplace_back("connect", seconds_between(start_ns_, connect_end_ns_));
  uint64_t handshake_start = connect_end_ns_;
  if (endpoint_->tls && tls_end_ns_ != 0) {
    out.emplace_back("tls", seconds_between(connect_end_ns_, tls_end_ns_));
    handshake_start = tls_end_ns_;
  }
  if (handshake_end_ns_ != 0)
    out.emplace_back("handshake", seconds_between(handshake_start, handshake_end_ns_));
  return out;
}

void WsConnection::mark_connected(uint64_t now) {
  if (connect_end_ns_ == 0) connect_end_ns_ = now;
}

void WsConnection::end(WsEnd e) {
  if (ended_) return;
  ended_ = true;
  if (handler_ == nullptr) return;
  Handler* h = handler_;
  handler_ = nullptr;
  h->on_ws_end(this, e);
}

void WsConnection::check_negotiation(struct lws* wsi) {
  const WsEndpoint& ep = *endpoint_;
  negotiated_ = true;
  std::string got;
  int n = lws_hdr_total_length(wsi, WSI_TOKEN_PROTOCOL);
  if (n > 0) {
    got.resize(static_cast<size_t>(n) + 1);
    n = lws_hdr_copy(wsi, got.data(), n + 1, WSI_TOKEN_PROTOCOL);
    got.resize(n > 0 ? static_cast<size_t>(n) : 0);
  }
  if (got.empty()) {
    if (!ep.subprotocols.empty())
      pending_end_ = WsEnd{false,
                           Reason::kWsNoSubprotocol,
                           fmt::format("the server selected none of the offered subprotocols ({})",
                                       fmt::join(ep.subprotocol_labels, ", ")),
                           101,
                           {}};
    return;
  }
  auto it = std::find(ep.subprotocols.begin(), ep.subprotocols.end(), got);
  if (it == ep.subprotocols.end()) {
    // lws refuses this itself ("HS: PROTOCOL malformed"); kept for safety.
    pending_end_ =
        WsEnd{false,
              Reason::kWsWrongSubprotocol,
              fmt::format("the server selected \"{}\", which was not offered", shown(got)),
              101,
              {}};
    return;
  }
  selected_ = static_cast<size_t>(it - ep.subprotocols.begin());
  if (ep.expect_subprotocol && *selected_ != *ep.expect_subprotocol)
    pending_end_ = WsEnd{false,
                         Reason::kWsWrongSubprotocol,
                         fmt::format("the server selected \"{}\", expected \"{}\"",
                                     ep.subprotocol_labels[*selected_],
                                     ep.subprotocol_labels[*ep.expect_subprotocol]),
                         101,
                         {}};
}

WsEnd WsConnection::classify_error(struct lws* wsi, std::string_view lws_message) {
  auto fail = [](Reason r, std::string msg, std::optional<int> status = {}) {
    return WsEnd{false, r, std::move(msg), status, {}};
  };
  if (tls_verify_error_ != 0) {
    auto [reason, message] = classify_cert_error(tls_verify_error_);
    return fail(reason, std::move(message));
  }
  if (lws_message == "HS: PROTOCOL malformed") {
    std::string got;
    char buf[256] = {};
    if (lws_hdr_copy(wsi, buf, sizeof buf, WSI_TOKEN_PROTOCOL) > 0) got = buf;
    return fail(Reason::kWsWrongSubprotocol,
                got.empty()
                    ? "the server selected a subprotocol that was not offered"
                    : fmt::format("the server selected \"{}\", which was not offered", shown(got)),
                101);
  }
  unsigned int status = lws_http_client_http_response(wsi);
  if (status != 0 && status != 101)
    return fail(Reason::kWsUpgradeRejected,
                fmt::format("the server rejected the upgrade with HTTP {}", status),
                static_cast<int>(status));
  Phase p = phase();
  if (p == Phase::kConnect) {
    int err = 0;
    socklen_t len = sizeof err;
    int fd = lws_get_socket_fd(wsi);
    if (fd >= 0) getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err == ECONNREFUSED) return fail(Reason::kConnectRefused, "connection refused");
    if (err != 0) return fail(Reason::kConnect, fmt::format("connect failed: {}", strerror(err)));
    return fail(Reason::kConnect, fmt::format("connect failed: {}", shown(lws_message)));
  }
  if (p == Phase::kTls || lws_message.find("SSL") != std::string_view::npos)
    return fail(Reason::kTls, fmt::format("TLS handshake failed: {}", shown(lws_message)));
  return fail(Reason::kProtocol, fmt::format("WebSocket handshake failed: {}", shown(lws_message)));
}

int WsConnection::on_receive(const char* data, size_t len) {
  // Returning -1 in the middle of a frame crashes lws 4.1.6; a connection
  // being dropped is killed asynchronously instead and its data ignored.
  if (handler_ == nullptr || refused_) return 0;
  const WsEndpoint& ep = *endpoint_;
  if (lws_is_first_fragment(wsi_)) {
    message_.clear();
    message_binary_ = lws_frame_is_binary(wsi_) != 0;
    utf8_.reset();
  }
  // lws hands a frame over in pieces; its header already declared the rest,
  // so an oversized message fails at its first piece, not at the deadline.
  size_t declared = message_.size() + len + lws_remaining_packet_payload(wsi_);
  if (declared > ep.max_message_bytes) {
    fail_open(Reason::kProtocol,
              fmt::format("the server sent a frame that makes a message of {} bytes, over {} {}",
                          declared, ep.max_message_key, ep.max_message_bytes));
    return 0;
  }
  std::string_view piece(data, len);
  bool last = lws_is_final_fragment(wsi_) != 0;
  if (!message_binary_ && (!utf8_.feed(piece) || (last && !utf8_.complete()))) {
    fail_open(Reason::kProtocol, "the server sent a text message that is not valid UTF-8");
    return 0;
  }
  message_.append(piece);
  if (!last) return 0;
  std::string msg = std::move(message_);
  message_.clear();
  if (message_binary_)
    handler_->on_ws_binary(this, msg.size());
  else
    handler_->on_ws_message(this, msg);
  return 0;
}

void WsConnection::fail_open(Reason reason, std::string message) {
  // Refuse, don't grow: a hostile server must not cost memory.
  refused_ = true;
  message_.clear();
  message_.shrink_to_fit();
  lws_set_timeout(wsi_, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
  end(WsEnd{false, reason, std::move(message), {}, {}});
}

void WsConnection::on_exception(struct lws* wsi) {
  auto* c = static_cast<WsConnection*>(lws_get_opaque_user_data(wsi));
  if (c == nullptr || c->ended_) return;
  static constexpr const char* kMessage =
      "canaryd failed while handling the connection (an exception in a libwebsockets "
      "callback; see the log)";
  // Inside open() the end is reported later, as for any failure there; else
  // as for a violation while open: killed asynchronously, since returning -1
  // mid-frame crashes lws 4.1.6.
  if (c->opening_ || c->wsi_ == nullptr) {
    c->pending_end_ = WsEnd{false, Reason::kInternal, kMessage, {}, {}};
    return;
  }
  c->fail_open(Reason::kInternal, kMessage);
}

bool WsConnection::lws_ended_it(struct lws* wsi) const {
  // A TLS close_notify is the server closing, even while its FIN is on the way.
  if (endpoint_->tls) {
    auto* ssl = static_cast<SSL*>(lws_get_ssl(wsi));
    if (ssl != nullptr && (SSL_get_shutdown(ssl) & SSL_RECEIVED_SHUTDOWN) != 0) return false;
  }
  return peer_still_connected(lws_get_socket_fd(wsi));
}

std::string WsConnection::closed_with(int code) {
  // lws 4.1.6 rewrites a close code that must not be on the wire (below
  // 1000, 1004-1006, 1015, 1016-2999), and 1012-1014 too, to 1002 before
  // canaryd sees it, and echoes 1002 back: the server's own code is lost.
  if (code == 1002)
    return "the server closed the connection with code 1002 (protocol error), or with a code "
           "not allowed on the wire (libwebsockets reports those as 1002)";
  return fmt::format("the server closed the connection with code {}", code);
}

int WsConnection::callback(struct lws* wsi, int reason, void* user, void* in, size_t len) {
  auto* c = static_cast<WsConnection*>(lws_get_opaque_user_data(wsi));
  if (c == nullptr) return 0;
  if (reason == LWS_CALLBACK_WSI_DESTROY) {
    forget_parser_complaint();
    c->wsi_ = nullptr;
    if (c->opening_) {
      if (!c->ended_) c->pending_end_ = WsEnd{false, Reason::kConnect, "cannot connect", {}, {}};
      c->ended_ = true;
      return 0;
    }
    if (!c->ended_) c->end(WsEnd{false, Reason::kConnect, "the connection was closed", {}, {}});
    // A connection that failed inside open() waits for its deferred report.
    if (c->deferred_ == nullptr && !c->opening_) delete c;
    return 0;
  }
  return c->on_callback(reason, user, in, len);
}

int WsConnection::on_callback(int reason, void* user, void* in, size_t len) {
  struct lws* wsi = wsi_;
  const WsEndpoint& ep = *endpoint_;
  uint64_t now = uv_hrtime();
  switch (reason) {
    case LWS_CALLBACK_OPENSSL_PERFORM_SERVER_CERT_VERIFICATION: {
      // The server's certificate has arrived, so TCP is up and TLS is under way.
      mark_connected(now);
      auto* store = static_cast<X509_STORE_CTX*>(user);
      if (store != nullptr) {
        if (len == 0 && tls_verify_error_ == 0) tls_verify_error_ = X509_STORE_CTX_get_error(store);
        if (X509_STORE_CTX_get_error_depth(store) == 0) {
          if (auto expiry = cert_not_after_unix(X509_STORE_CTX_get_current_cert(store)))
            cert_expiry_ = expiry;
        }
      }
      return 0;
    }
    case LWS_CALLBACK_CLIENT_APPEND_HANDSHAKE_HEADER: {
      mark_connected(now);
      if (ep.tls && tls_end_ns_ == 0) tls_end_ns_ = now;
      if (handler_ == nullptr) return -1;
      auto** p = static_cast<unsigned char**>(in);
      unsigned char* end = *p + len;
      auto add = [&](const std::string& name, const std::string& value) {
        std::string field = name + ":";
        return lws_add_http_header_by_name(wsi,
                                           reinterpret_cast<const unsigned char*>(field.c_str()),
                                           reinterpret_cast<const unsigned char*>(value.data()),
                                           static_cast<int>(value.size()), p, end) == 0;
      };
      bool fits = true;
      for (const auto& [name, value] : ep.headers) {
        // A configured traceparent gives way to the run's (http_call.cc).
        if (!traceparent_.empty() && is_traceparent_header(name)) continue;
        fits = fits && add(name, value);
      }
      if (!traceparent_.empty()) fits = fits && add(std::string(kTraceparentHeader), traceparent_);
      if (!fits) {
        pending_end_ = WsEnd{false, Reason::kInternal, "the request headers are too large", {}, {}};
        return -1;
      }
      return 0;
    }
    case LWS_CALLBACK_CLIENT_FILTER_PRE_ESTABLISH:
      // The negotiated subprotocol is readable here and gone by ESTABLISHED.
      check_negotiation(wsi);
      return pending_end_ ? -1 : 0;
    case LWS_CALLBACK_CLIENT_ESTABLISHED:
      forget_parser_complaint();
      handshake_end_ns_ = now;
      if (handler_ != nullptr) handler_->on_ws_open(this);
      return 0;
    case LWS_CALLBACK_CLIENT_CONNECTION_ERROR: {
      WsEnd e = pending_end_ ? *pending_end_
                             : classify_error(wsi, in != nullptr ? static_cast<const char*>(in)
                                                                 : std::string_view());
      if (opening_) {
        ended_ = true;
        pending_end_ = std::move(e);
        return 0;
      }
      end(std::move(e));
      return 0;
    }
    case LWS_CALLBACK_CLIENT_RECEIVE:
      forget_parser_complaint();
      return on_receive(static_cast<const char*>(in), len);
    case LWS_CALLBACK_CLIENT_WRITEABLE: {
      forget_parser_complaint();
      if (handler_ == nullptr) return 0;  // aborted: the kill is already scheduled
      if (!outbox_.empty()) {
        std::string& text = outbox_.front();
        std::vector<unsigned char> buf(LWS_PRE + text.size());
        std::memcpy(buf.data() + LWS_PRE, text.data(), text.size());
        int n = lws_write(wsi, buf.data() + LWS_PRE, text.size(), LWS_WRITE_TEXT);
        last_write_ns_ = uv_hrtime();
        outbox_.erase(outbox_.begin());
        if (n < 0) {
          pending_end_ = WsEnd{false, Reason::kConnect, "sending a message failed", {}, {}};
          return -1;
        }
        if (!outbox_.empty() || close_requested_) lws_callback_on_writable(wsi);
        return 0;
      }
      if (close_requested_ && !close_sent_) {
        close_sent_ = true;
        // lws 4.1.6 drops a client's socket without a close frame when a
        // callback sets lws_close_reason() and returns -1, so the frame is
        // written here (opcode 4 is lws's internal LWS_WRITE_CLOSE) and the
        // server's answering close ends the connection.
        unsigned char frame[LWS_PRE + 2];
        frame[LWS_PRE] = LWS_CLOSE_STATUS_NORMAL >> 8;
        frame[LWS_PRE + 1] = LWS_CLOSE_STATUS_NORMAL & 0xff;
        if (lws_write(wsi, frame + LWS_PRE, 2, static_cast<lws_write_protocol>(4)) < 0) {
          pending_end_ = WsEnd{false, Reason::kConnect, "sending the close frame failed", {}, {}};
          return -1;
        }
      }
      return 0;
    }
    case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE: {
      forget_parser_complaint();
      const auto* b = static_cast<const unsigned char*>(in);
      peer_close_code_ = len >= 2 ? (b[0] << 8) | b[1] : 1005;
      // RFC 6455 5.5.1: a close body is empty or a code then UTF-8 text.
      if (len == 1) {
        pending_end_ = WsEnd{false,
                             Reason::kProtocol,
                             "the server sent a close frame with a 1-byte body (RFC 6455 "
                             "allows none or a 2-byte code)",
                             {},
                             {}};
      } else if (len > 2) {
        Utf8Check reason_text;
        if (!reason_text.feed(std::string_view(reinterpret_cast<const char*>(b) + 2, len - 2)) ||
            !reason_text.complete()) {
          pending_end_ = WsEnd{false,
                               Reason::kProtocol,
                               fmt::format("the server closed with {} and a reason that is not "
                                           "UTF-8 (RFC 6455 5.5.1)",
                                           *peer_close_code_),
                               {},
                               peer_close_code_};
        }
      }
      // After our own close frame this is the answer: close without echoing.
      return close_sent_ ? 1 : 0;
    }
    case LWS_CALLBACK_CLIENT_CLOSED: {
      std::string_view complaint = take_parser_complaint();
      if (pending_end_) {
        end(*pending_end_);
      } else if (!complaint.empty()) {
        end(WsEnd{false, Reason::kProtocol, std::string(complaint), {}, {}});
      } else if (close_sent_) {
        end(WsEnd{true, Reason::kOk, "closed normally", {}, peer_close_code_.value_or(1000)});
      } else if (peer_close_code_ && *peer_close_code_ == 1000) {
        end(WsEnd{true, Reason::kOk, "the server closed the connection normally", {}, 1000});
      } else if (peer_close_code_) {
        // 1002: the protocol broke down, by the server's word or because lws
        // refused the code the server sent (see closed_with()).
        // For 1002 the code the server sent is unknown, so none is reported
        // as the server's.
        bool ambiguous = *peer_close_code_ == 1002;
        end(WsEnd{false,
                  ambiguous ? Reason::kProtocol : Reason::kWsAbnormalClose,
                  closed_with(*peer_close_code_),
                  {},
                  ambiguous ? std::nullopt : peer_close_code_});
      } else if (lws_ended_it(wsi)) {
        end(WsEnd{false,
                  Reason::kProtocol,
                  "libwebsockets refused data from the server that breaks RFC 6455",
                  {},
                  {}});
      } else {
        end(WsEnd{false,
                  Reason::kWsAbnormalClose,
                  "the connection dropped without a close frame (1006)",
                  {},
                  1006});
      }
      return 0;
    }
    default:
      return 0;
  }
}

}  // namespace canaryd
