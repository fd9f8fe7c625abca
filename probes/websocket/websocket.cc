#include "probes/websocket/websocket.h"

#include <fmt/format.h>
#include <re2/re2.h>

#include <algorithm>
#include <atomic>
#include <memory>
#include <optional>
#include <string>

#include "base/secrets.h"
#include "probes/common/config_fields.h"
#include "probes/common/resolve.h"
#include "probes/common/ws_client.h"
#include "probes/common/ws_run.h"

namespace canaryd {

namespace {

constexpr int64_t kMaxConnections = 1000;

struct WebSocketOptions {
  std::shared_ptr<WsEndpoint> endpoint = std::make_shared<WsEndpoint>();
  int connections = 1;
  Duration hold{0};
  std::optional<std::string> send;
  std::optional<std::string> expect_text;
  std::shared_ptr<RE2> expect_regex;
  std::string expect_regex_text;
  bool close = true;
};

class WebSocketProbe : public Probe, private WsConnection::Handler {
 public:
  explicit WebSocketProbe(WebSocketOptions opts) : opts_(std::move(opts)) {
    static std::atomic<size_t> next_shard{0};
    shard_ = next_shard++;
  }
  ~WebSocketProbe() override { release(); }

  // Probe
  void start(RunContext& ctx, Done done) override;
  CancelInfo cancel() override;
  std::string target() const override { return opts_.endpoint->describe(); }

 private:
  enum class State { kOpening, kAwaitMessage, kHolding, kClosing, kOk, kFailed };
  struct Conn {
    WsConnection* ws = nullptr;
    State state = State::kOpening;
    OneShotTimer hold;
    uint64_t message_start_ns = 0;
    uint64_t close_start_ns = 0;
    Phases phases;
  };

  // WsConnection::Handler
  void on_ws_open(WsConnection* c) override;
  void on_ws_message(WsConnection* c, std::string_view text) override;
  void on_ws_end(WsConnection* c, const WsEnd& end) override;

  void open_all(const ResolvedAddress& addr);
  Conn* find(WsConnection* c);
  void start_hold(Conn& conn);
  void end_hold(Conn& conn);
  void succeed(Conn& conn);
  void fail(Conn& conn, Reason reason, std::string message, std::optional<int> status = {},
            std::optional<int> close_code = {});
  void maybe_finish();
  std::string progress_note() const;
  ProbeDetails details() const;
  Phases merged_phases() const;
  void release();

  WebSocketOptions opts_;
  size_t shard_ = 0;  // which of the loop's lws contexts (LoopServices::ws)
  Done done_;
  RunContext* ctx_ = nullptr;
  AsyncResolve resolve_;
  std::vector<Conn> conns_;
  uint64_t run_start_ns_ = 0;
  std::optional<double> dns_seconds_;
  // The first failure decides the reason; later ones only change the count.
  std::optional<ProbeResult> first_failure_;
  NegotiationSeen negotiated_;
  std::optional<int> close_code_;
  std::optional<double> cert_expiry_;
};

void WebSocketProbe::release() {
  resolve_.cancel();
  for (auto& c : conns_) drop_connection(c.hold, c.ws);
  conns_.clear();
}

void WebSocketProbe::start(RunContext& ctx, Done done) {
  release();
  done_ = std::move(done);
  ctx_ = &ctx;
  ctx.services->ws(shard_);  // made on first use: not this run's time
  run_start_ns_ = uv_hrtime();
  dns_seconds_.reset();
  first_failure_.reset();
  negotiated_ = {};
  close_code_.reset();
  cert_expiry_.reset();
  const WsEndpoint& ep = *opts_.endpoint;
  if (auto addr = numeric_address(ep.host, ep.port)) {
    open_all(*addr);
    return;
  }
  resolve_.start(
      ctx, ep.host, ep.port, [this](std::optional<ResolvedAddress> addr, std::string error) {
        dns_seconds_ = seconds_between(run_start_ns_, uv_hrtime());
        if (!addr) {
          auto r = ProbeResult::failure(
              Reason::kDns, fmt::format("cannot resolve {}: {}", opts_.endpoint->host, error),
              {{"dns", *dns_seconds_}});
          r.details.set(kWsConnectionsOkField, 0);
          r.details.set(kWsConnectionsField, opts_.connections);
          call_done(done_, std::move(r));
          return;
        }
        open_all(*addr);
      });
}

void WebSocketProbe::open_all(const ResolvedAddress& addr) {
  conns_.resize(static_cast<size_t>(opts_.connections));
  for (auto& c : conns_)
    c.ws = WsConnection::open(ctx_->services->ws(shard_), opts_.endpoint, addr, this,
                              ctx_->new_traceparent());
}

WebSocketProbe::Conn* WebSocketProbe::find(WsConnection* c) {
  for (auto& conn : conns_)
    if (conn.ws == c) return &conn;
  return nullptr;
}

void WebSocketProbe::on_ws_open(WsConnection* c) {
  Conn* conn = find(c);
  if (conn == nullptr) return;
  conn->phases = c->phases();
  negotiated_.note(*c);
  if (c->cert_expiry_unix()) cert_expiry_ = c->cert_expiry_unix();
  if (opts_.send || opts_.expect_text || opts_.expect_regex) {
    conn->state = State::kAwaitMessage;
    conn->message_start_ns = uv_hrtime();
    if (opts_.send) c->send_text(*opts_.send);
    return;
  }
  start_hold(*conn);
}

void WebSocketProbe::on_ws_message(WsConnection* c, std::string_view text) {
  Conn* conn = find(c);
  if (conn == nullptr || conn->state != State::kAwaitMessage) return;
  // From when the message really left (not when it was queued), if one was sent.
  if (opts_.send && c->last_write_ns() != 0) conn->message_start_ns = c->last_write_ns();
  conn->phases.emplace_back("first_message", seconds_between(conn->message_start_ns, uv_hrtime()));
  if (opts_.expect_text && text != *opts_.expect_text) {
    fail(*conn, Reason::kAssertion,
         fmt::format("the message is \"{}\", expected \"{}\"", target_text(text, 64),
                     *opts_.expect_text));
    return;
  }
  if (opts_.expect_regex && !RE2::PartialMatch(text, *opts_.expect_regex)) {
    fail(*conn, Reason::kAssertion,
         fmt::format("the message does not match regex \"{}\"", opts_.expect_regex_text));
    return;
  }
  start_hold(*conn);
}

void WebSocketProbe::start_hold(Conn& conn) {
  conn.state = State::kHolding;
  uint64_t hold_ns = static_cast<uint64_t>(std::chrono::nanoseconds(opts_.hold).count());
  uint64_t until = conn.ws->open_ns() + hold_ns;
  uint64_t now = uv_hrtime();
  if (hold_ns == 0 || until <= now) {
    end_hold(conn);
    return;
  }
  Conn* target = &conn;
  conn.hold.start(ctx_->loop, (until - now + 999'999) / 1'000'000, ctx_->fail, [this, target] {
    target->hold.stop();
    end_hold(*target);
  });
}

void WebSocketProbe::end_hold(Conn& conn) {
  if (opts_.close) {
    conn.state = State::kClosing;
    conn.close_start_ns = uv_hrtime();
    conn.ws->close();
    return;
  }
  conn.ws->abort();
  conn.ws = nullptr;
  succeed(conn);
}

void WebSocketProbe::on_ws_end(WsConnection* c, const WsEnd& end) {
  Conn* conn = find(c);
  if (conn == nullptr) return;
  conn->ws = nullptr;  // it releases itself
  conn->hold.stop();
  if (end.close_code) close_code_ = end.close_code;
  if (c->cert_expiry_unix()) cert_expiry_ = c->cert_expiry_unix();
  negotiated_.note(*c);
  if (end.clean) {
    if (conn->state == State::kClosing) {
      conn->phases.emplace_back("close", seconds_between(conn->close_start_ns, uv_hrtime()));
      succeed(*conn);
    } else if (conn->state == State::kHolding) {
      // The server may end a session with 1000; it was open and healthy.
      succeed(*conn);
    } else {
      fail(*conn, Reason::kAssertion,
           "the server closed the connection (1000) before the expected message");
    }
    return;
  }
  if (end.canaryd_limit) {
    conn->state = State::kFailed;
    if (!first_failure_) first_failure_ = ProbeResult::limit(end.message);
    return maybe_finish();
  }
  if (conn->phases.empty()) conn->phases = c->phases();
  fail(*conn, end.reason, end.message, end.status_code, end.close_code);
}

void WebSocketProbe::succeed(Conn& conn) {
  conn.state = State::kOk;
  maybe_finish();
}

void WebSocketProbe::fail(Conn& conn, Reason reason, std::string message, std::optional<int> status,
                          std::optional<int> close_code) {
  conn.state = State::kFailed;
  drop_connection(conn.hold, conn.ws);
  if (!first_failure_) {
    first_failure_ = ProbeResult::failure(reason, std::move(message));
    first_failure_->details.status_code = status;
    first_failure_->details.set(kWsCloseCodeField, close_code);
  }
  maybe_finish();
}

void WebSocketProbe::maybe_finish() {
  for (const auto& c : conns_)
    if (c.state != State::kOk && c.state != State::kFailed) return;
  if (!done_) return;
  ProbeResult result;
  int ok = static_cast<int>(std::count_if(conns_.begin(), conns_.end(),
                                          [](const Conn& c) { return c.state == State::kOk; }));
  if (first_failure_) {
    result = std::move(*first_failure_);
    if (opts_.connections > 1)
      result.message = fmt::format("{} of {} connections succeeded; first failure: {}", ok,
                                   opts_.connections, result.message);
  } else {
    result = ProbeResult::ok();
    result.message = opts_.connections > 1
                         ? fmt::format("{} of {} connections succeeded", ok, opts_.connections)
                         : "ok";
  }
  result.phases = merged_phases();
  result.phases.emplace_back("total", seconds_between(run_start_ns_, uv_hrtime()));
  ProbeDetails d = details();
  d.set(kWsConnectionsOkField, ok);
  if (result.details.status_code) d.status_code = result.details.status_code;
  if (result.details.find(kWsCloseCodeField)) d.take(result.details, kWsCloseCodeField);
  result.details = std::move(d);
  conns_.clear();
  call_done(done_, std::move(result));
}

ProbeDetails WebSocketProbe::details() const {
  ProbeDetails d;
  d.set(kWsSubprotocolField, negotiated_.label(*opts_.endpoint));
  d.set(kWsCloseCodeField, close_code_);
  d.cert_expiry_unix = cert_expiry_;
  d.set(kWsConnectionsOkField,
        static_cast<int>(std::count_if(conns_.begin(), conns_.end(),
                                       [](const Conn& c) { return c.state == State::kOk; })));
  d.set(kWsConnectionsField, opts_.connections);
  return d;
}

Phases WebSocketProbe::merged_phases() const {
  Phases out;
  if (dns_seconds_) out.emplace_back("dns", *dns_seconds_);
  std::vector<const Phases*> each;
  for (const auto& c : conns_) each.push_back(&c.phases);
  append_slowest(out, each, {"connect", "tls", "handshake", "first_message", "close"});
  return out;
}

std::string WebSocketProbe::progress_note() const {
  int ok = 0, open = 0;
  for (const auto& c : conns_) {
    if (c.state == State::kOk) ++ok;
    if (c.state == State::kHolding || c.state == State::kAwaitMessage || c.state == State::kClosing)
      ++open;
  }
  if (opts_.connections <= 1) return "";
  return fmt::format("{} of {} connections succeeded, {} open", ok, opts_.connections, open);
}

CancelInfo WebSocketProbe::cancel() {
  CancelInfo info;
  if (resolve_.pending()) {
    info.phase = "dns";
  } else {
    // The least advanced connection is the one that held the run up.
    LeastAdvanced least;
    for (const auto& c : conns_) {
      switch (c.state) {
        case State::kOpening:
          least.offer_opening(c.ws);
          break;
        case State::kAwaitMessage:
          least.offer(LeastAdvanced::kAfterOpen, "first_message");
          break;
        case State::kHolding:
          least.offer(LeastAdvanced::kAfterOpen + 1, "hold");
          break;
        case State::kClosing:
          least.offer(LeastAdvanced::kAfterOpen + 2, "close");
          break;
        default:
          break;
      }
    }
    info.phase = least.phase;
  }
  info.phases = merged_phases();
  info.details = details();
  info.note = progress_note();
  done_ = nullptr;
  release();
  return info;
}

}  // namespace

static std::vector<Reason> websocket_probe_reasons() {
  auto all = ws_connection_reasons();
  all.push_back(Reason::kAssertion);
  return all;
}

static std::vector<std::string_view> websocket_probe_phases() {
  return {"dns", "connect", "tls", "handshake", "first_message", "close", "total"};
}

static ProbePtr make_websocket_probe(const ProbeSpec& spec, YamlSection& s) {
  WebSocketOptions o;
  size_t errors_before = s.context().errors->size();
  read_ws_endpoint(s, *o.endpoint);
  if (auto n = s.get_int("connections", 1, kMaxConnections)) o.connections = static_cast<int>(*n);
  if (auto hold = s.get_duration("hold")) {
    if (*hold >= spec.timeout && spec.timeout.count() > 0) {
      s.error("hold", "must be shorter than the probe's timeout");
    } else {
      o.hold = *hold;
    }
  }
  o.send = s.get_string("send");
  if (auto expect = s.get_section("expect")) {
    o.expect_text = expect->get_string("text");
    if ((o.expect_regex = read_regex(*expect, "regex")))
      o.expect_regex_text = o.expect_regex->pattern();
    if (o.expect_text && o.expect_regex) expect->error("regex", "use either text or regex");
    if (!o.expect_text && !o.expect_regex && !expect->has("regex"))
      expect->error("", "expected text or regex");
    expect->finish();
  }
  if (auto close = s.get_bool("close")) o.close = *close;
  s.finish();
  if (s.context().errors->size() != errors_before) return nullptr;
  return std::make_unique<WebSocketProbe>(std::move(o));
}

ProbeType websocket_probe_type() {
  using namespace std::chrono_literals;
  return {
      .name = "websocket",
      .reasons = websocket_probe_reasons(),
      .phases = websocket_probe_phases(),
      .make = &make_websocket_probe,
      .metrics = ws_metrics(),
      .alerts = {
          {.key = "websocket_success_critical",
           .name = "CanaryWebSocketSuccessCritical",
           .severity = "P0",
           .measure = TypeAlert::Measure::kSuccessBelow,
           .threshold = 0.5,
           .for_duration = 5min,
           .long_window = false,
           .summary = "WebSocket {probe} success below {threshold}",
           .description = "Success over the last {window} is {value} (threshold {threshold})."},
          {.key = "websocket_success_low",
           .name = "CanaryWebSocketSuccessLow",
           .severity = "P1",
           .measure = TypeAlert::Measure::kSuccessBelow,
           .threshold = 0.7,
           .for_duration = 10min,
           .long_window = false,
           .summary = "WebSocket {probe} success below {threshold}",
           .description = "Success over the last {window} is {value} (threshold {threshold})."}}};
}

}  // namespace canaryd
