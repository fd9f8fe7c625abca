#include "probes/agent_pipeline/agent_pipeline.h"

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "base/json_path.h"
#include "base/secrets.h"
#include "probes/agent_pipeline/agent_options.h"
#include "probes/agent_pipeline/event_matcher.h"
#include "probes/agent_pipeline/sse_transport.h"
#include "probes/agent_pipeline/stream_timing.h"
#include "probes/agent_pipeline/token_fetch.h"
#include "probes/common/config_fields.h"
#include "probes/common/curl_multi.h"
#include "probes/common/http_call.h"
#include "probes/common/resolve.h"
#include "probes/common/ws_client.h"
#include "probes/common/ws_run.h"

namespace canaryd {

namespace {

constexpr std::string_view kMissingMetric = "canary_agent_event_missing_total";
constexpr std::string_view kFieldMissingMetric = "canary_agent_event_field_missing_total";
constexpr std::string_view kReceivedMetric = "canary_agent_events_received_total";

// The WebSocket families (the connections' facts), then the conversation's.
std::vector<TypeMetric> agent_metrics() {
  using Kind = TypeMetric::Kind;
  std::vector<TypeMetric> all = ws_metrics();
  all.push_back({kMissingMetric,
                 "Agent runs that failed without this expected event arriving.",
                 Kind::kCounter,
                 kMissingEventsField,
                 {"event"}});
  all.push_back({kFieldMissingMetric,
                 "Agent events that arrived without a required field.",
                 Kind::kCounter,
                 kMissingFieldField,
                 {"event", "field"}});
  all.push_back({kReceivedMetric,
                 "Agent event frames received, by configured type; any other type counts as "
                 "\"other\".",
                 Kind::kCounter,
                 kEventsReceivedField,
                 {"event"}});
  for (auto& m : stream_timing_metrics()) all.push_back(std::move(m));
  return all;
}

// The per-event phases and counters of a probe: both transports report them.
Probe::Series agent_series(const AgentOptions& opts) {
  Probe::Series out;
  std::vector<std::string> types;
  for (const auto& e : opts.events) {
    if (std::find(types.begin(), types.end(), e.type) != types.end()) continue;
    types.push_back(e.type);
    out.phases.push_back(e.type);
    out.counted.push_back({kMissingMetric, {e.type}});
    out.counted.push_back({kReceivedMetric, {e.type}});
    for (const auto& f : e.required) out.counted.push_back({kFieldMissingMetric, {e.type, f}});
  }
  if (!types.empty()) out.counted.push_back({kReceivedMetric, {kOtherEvent}});
  return out;
}

class AgentPipelineProbe : public Probe, private WsConnection::Handler {
 public:
  explicit AgentPipelineProbe(AgentOptions opts)
      : opts_(std::move(opts)), series_(agent_series(opts_)) {
    static std::atomic<size_t> next_shard{0};
    shard_ = next_shard++;
  }
  ~AgentPipelineProbe() override { release(); }

  // Probe
  void start(RunContext& ctx, Done done) override;
  CancelInfo cancel() override;
  std::string target() const override { return opts_.endpoint->describe(); }
  Series series() const override { return series_; }

 private:
  enum class State { kConnecting, kAwaiting, kClosing, kOk, kFailed };
  struct Session {
    WsConnection* ws = nullptr;
    std::string id;
    State state = State::kConnecting;
    uint64_t sent_ns = 0;
    EventMatcher match;
    StreamTiming timing;
    OneShotTimer timer;  // first_event_timeout, then idle_timeout
    uint64_t close_start_ns = 0;
    Phases phases;  // connect, tls, handshake, close
    std::optional<ProbeResult> failure;
  };

  // WsConnection::Handler
  void on_ws_open(WsConnection* c) override;
  void on_ws_message(WsConnection* c, std::string_view text) override;
  void on_ws_binary(WsConnection* c, size_t bytes) override;
  void on_ws_end(WsConnection* c, const WsEnd& end) override;

  void connect(std::shared_ptr<const WsEndpoint> endpoint);
  void open_sessions(const ResolvedAddress& addr);
  Session* find(WsConnection* c);
  void arm_timer(Session& s, Duration after);
  void on_timer(Session& s);
  void complete(Session& s);
  void fail(Session& s, ProbeResult result);
  void maybe_finish();
  void finish(ProbeResult result);
  std::string awaited(const Session& s) const { return s.match.awaited(); }
  std::vector<std::string> missing(const Session& s) const { return s.match.missing(); }
  std::string after_text(const Session& s) const { return s.match.after_text(); }
  ProbeDetails session_details(const Session& s) const;
  // Frames received by every session, by configured type and "other".
  std::map<std::string, int> events_received() const;
  // Every session's stream timing into `d`, once a message went out.
  void note_timing(ProbeDetails& d) const;
  // The negotiated subprotocol and how many sessions succeeded of how many.
  void note_connections(ProbeDetails& d) const;
  Phases token_phase() const { return token_.phase(); }
  Phases merged_phases() const;
  void release();

  AgentOptions opts_;
  const Series series_;  // from the config: every run's phases use it
  TokenFetch token_{opts_.token};
  size_t shard_ = 0;
  Done done_;
  RunContext* ctx_ = nullptr;
  std::string run_id_;
  AsyncResolve resolve_;
  std::shared_ptr<const WsEndpoint> run_endpoint_;
  std::vector<Session> sessions_;
  uint64_t run_start_ns_ = 0;
  std::optional<double> dns_seconds_;
  NegotiationSeen negotiated_;
};

void AgentPipelineProbe::release() {
  token_.cancel();
  resolve_.cancel();
  for (auto& s : sessions_) drop_connection(s.timer, s.ws);
  sessions_.clear();
}

void AgentPipelineProbe::start(RunContext& ctx, Done done) {
  release();
  done_ = std::move(done);
  ctx_ = &ctx;
  ctx.services->ws(shard_);  // made on first use: not this run's time
  run_id_ = ctx.run_id;
  run_start_ns_ = uv_hrtime();
  dns_seconds_.reset();
  negotiated_ = {};
  token_.start(
      ctx, shard_, run_start_ns_,
      [this] {
        if (!opts_.endpoint_uses_token) return connect(opts_.endpoint);
        auto ep = std::make_shared<WsEndpoint>(*opts_.endpoint);
        for (auto& p : ep->subprotocols) p = fill_template(p, "token", token_.token());
        for (auto& [name, value] : ep->headers)
          value = fill_template(value, "token", token_.token());
        connect(std::move(ep));
      },
      [this](ProbeResult failure) { finish(std::move(failure)); });
}

void AgentPipelineProbe::connect(std::shared_ptr<const WsEndpoint> endpoint) {
  run_endpoint_ = std::move(endpoint);
  const WsEndpoint& ep = *run_endpoint_;
  if (auto addr = numeric_address(ep.host, ep.port)) return open_sessions(*addr);
  uint64_t dns_start = uv_hrtime();
  resolve_.start(*ctx_, ep.host, ep.port,
                 [this, dns_start](std::optional<ResolvedAddress> addr, std::string error) {
                   dns_seconds_ = seconds_between(dns_start, uv_hrtime());
                   if (!addr) {
                     auto r = ProbeResult::failure(
                         Reason::kDns,
                         fmt::format("cannot resolve {}: {}", run_endpoint_->host, error),
                         token_phase());
                     finish(std::move(r));
                     return;
                   }
                   open_sessions(*addr);
                 });
}

void AgentPipelineProbe::open_sessions(const ResolvedAddress& addr) {
  sessions_.resize(static_cast<size_t>(opts_.sessions));
  for (size_t i = 0; i < sessions_.size(); ++i) {
    Session& s = sessions_[i];
    s.id = opts_.sessions > 1 ? fmt::format("{}-{}", run_id_, i + 1) : run_id_;
    s.match = EventMatcher(&opts_, s.id);
  }
  for (auto& s : sessions_)
    s.ws = WsConnection::open(ctx_->services->ws(shard_), run_endpoint_, addr, this,
                              ctx_->new_traceparent());
}

AgentPipelineProbe::Session* AgentPipelineProbe::find(WsConnection* c) {
  for (auto& s : sessions_)
    if (s.ws == c) return &s;
  return nullptr;
}

void AgentPipelineProbe::arm_timer(Session& s, Duration after) {
  Session* target = &s;
  s.timer.start(ctx_->loop,
                static_cast<uint64_t>(std::chrono::ceil<std::chrono::milliseconds>(after).count()),
                ctx_->fail, [this, target] { on_timer(*target); });
}

void AgentPipelineProbe::on_ws_open(WsConnection* c) {
  Session* s = find(c);
  if (s == nullptr) return;
  s->phases = c->phases();
  negotiated_.note(*c);
  std::string message =
      opts_.send_json
          ? fill_json(*opts_.send_json, s->id, token_.token()).dump()
          : fill_template(fill_template(opts_.send_text, "run_id", s->id), "token", token_.token());
  s->state = State::kAwaiting;
  s->sent_ns = uv_hrtime();
  c->send_text(std::move(message));
  arm_timer(*s, opts_.first_event_timeout);
}

ProbeDetails AgentPipelineProbe::session_details(const Session& s) const {
  ProbeDetails d;
  if (s.state == State::kAwaiting || s.state == State::kConnecting || s.failure) {
    std::string a = awaited(s);
    if (!a.empty() && s.sent_ns != 0) d.set(kAwaitedEventField, a);
  }
  auto timeline = nlohmann::ordered_json::array();
  for (const auto& e : s.match.timeline())
    timeline.push_back({{"type", e.type}, {"offset_ms", std::lround(e.offset_seconds * 1000)}});
  d.set(kTimelineField, timeline);
  return d;
}

std::map<std::string, int> AgentPipelineProbe::events_received() const {
  std::map<std::string, int> out;
  for (const auto& s : sessions_)
    for (const auto& [type, n] : s.match.received()) out[type] += n;
  return out;
}

void AgentPipelineProbe::note_timing(ProbeDetails& d) const {
  StreamTiming all;
  bool sent = false;
  for (const auto& s : sessions_) {
    all.merge(s.timing);
    sent = sent || s.sent_ns != 0;
  }
  if (sent) all.report(d);
}

void AgentPipelineProbe::note_connections(ProbeDetails& d) const {
  d.set(kWsSubprotocolField, negotiated_.label(*opts_.endpoint));
  d.set(kWsConnectionsOkField,
        static_cast<int>(std::count_if(sessions_.begin(), sessions_.end(),
                                       [](const Session& s) { return s.state == State::kOk; })));
  d.set(kWsConnectionsField, opts_.sessions);
}

void AgentPipelineProbe::on_ws_message(WsConnection* c, std::string_view text) {
  Session* sp = find(c);
  if (sp == nullptr || sp->state != State::kAwaiting) return;
  Session& s = *sp;
  uint64_t now = uv_hrtime();
  // Offsets count from when the message really left, not from when it was
  // queued: under load the two are a loop pass or more apart.
  if (c->last_write_ns() != 0) s.sent_ns = c->last_write_ns();
  double offset = seconds_between(s.sent_ns, now);
  s.timing.on_event(offset);
  auto fail_with = [&](Reason reason, std::string message) {
    auto r = ProbeResult::failure(reason, std::move(message));
    fail(s, std::move(r));
  };
  auto parsed = parse_target_json(text);
  if (!parsed.ok())
    return fail_with(Reason::kProtocol,
                     fmt::format("a frame is {} ({})", parsed.error, after_text(s)));
  switch (s.match.on_frame(parsed.value, offset)) {
    case EventMatcher::Step::kOther:
      return;
    case EventMatcher::Step::kFailed:
      return fail(s, *s.match.failure());
    case EventMatcher::Step::kDone:
      return complete(s);
    case EventMatcher::Step::kProgress:
      break;
  }
  arm_timer(s, opts_.idle_timeout);
}

void AgentPipelineProbe::on_ws_binary(WsConnection* c, size_t bytes) {
  Session* s = find(c);
  if (s == nullptr || s->state != State::kAwaiting) return;
  // Events are JSON text: a binary frame is the server breaking the protocol.
  fail(*s, ProbeResult::failure(
               Reason::kProtocol,
               fmt::format("the server sent a binary frame ({} bytes) where the agent protocol "
                           "expects JSON text ({})",
                           bytes, after_text(*s))));
}

void AgentPipelineProbe::on_timer(Session& s) {
  if (s.state != State::kAwaiting) return;
  bool any = s.match.last_event().has_value();
  std::string wait = awaited(s);
  // The awaited event leads: a one-line status cut at 80 columns keeps it.
  auto r = ProbeResult::failure(
      Reason::kTimeout,
      any ? fmt::format("{}: no event for {} (idle_timeout) {}", wait,
                        format_duration(opts_.idle_timeout), after_text(s))
          : fmt::format("{}: no event within {} of the message (first_event_timeout)", wait,
                        format_duration(opts_.first_event_timeout)));
  r.details.timeout_phase = any ? "idle" : "first_event";
  r.details.set(kMissingEventsField, missing(s));
  fail(s, std::move(r));
}

void AgentPipelineProbe::complete(Session& s) {
  s.timer.stop();
  s.state = State::kClosing;
  s.close_start_ns = uv_hrtime();
  s.ws->close();
}

void AgentPipelineProbe::on_ws_end(WsConnection* c, const WsEnd& end) {
  Session* sp = find(c);
  if (sp == nullptr) return;
  Session& s = *sp;
  s.ws = nullptr;  // it releases itself
  s.timer.stop();
  if (s.phases.empty()) s.phases = c->phases();
  negotiated_.note(*c);
  if (end.canaryd_limit) return fail(s, ProbeResult::limit(end.message));
  if (s.state == State::kClosing && end.clean) {
    s.phases.emplace_back("close", seconds_between(s.close_start_ns, uv_hrtime()));
    s.state = State::kOk;
    return maybe_finish();
  }
  if (s.state == State::kClosing) {
    // Every event came; only the goodbye went wrong.
    auto r = ProbeResult::failure(end.reason, "closing: " + end.message);
    r.details.set(kWsCloseCodeField, end.close_code);
    return fail(s, std::move(r));
  }
  if (s.state == State::kAwaiting) {
    if (end.clean) {
      auto missing_now = missing(s);
      auto r = ProbeResult::failure(
          Reason::kMissingEvent,
          fmt::format("{} ({}; the server closed the connection)", awaited(s), after_text(s)));
      r.details.set(kMissingEventsField, missing_now);
      r.details.set(kWsCloseCodeField, end.close_code);
      return fail(s, std::move(r));
    }
    if (end.reason == Reason::kWsAbnormalClose) {
      auto r = ProbeResult::failure(
          end.reason, fmt::format("closed with code {} {}, awaiting {}",
                                  end.close_code.value_or(1006), after_text(s), awaited(s)));
      r.details.set(kWsCloseCodeField, end.close_code);
      r.details.set(kMissingEventsField, missing(s));
      return fail(s, std::move(r));
    }
  }
  auto r = ProbeResult::failure(end.reason, end.message);
  r.details.status_code = end.status_code;
  r.details.set(kWsCloseCodeField, end.close_code);
  if (end.status_code == 401 || end.status_code == 403) token_.refused();
  fail(s, std::move(r));
}

void AgentPipelineProbe::fail(Session& s, ProbeResult result) {
  s.state = State::kFailed;
  drop_connection(s.timer, s.ws);
  s.failure = std::move(result);
  maybe_finish();
}

Phases AgentPipelineProbe::merged_phases() const {
  Phases out = token_phase();
  if (dns_seconds_) out.emplace_back("dns", *dns_seconds_);
  // The event phases are offsets from sending the message, per session.
  std::vector<Phases> per_session;
  for (const auto& s : sessions_) {
    Phases p = s.phases;
    std::optional<double> first;
    for (const auto& t : s.match.first_at())
      if (t) first = std::min(first.value_or(*t), *t);
    if (first) p.emplace_back("first_event", *first);
    for (size_t i = 0; i < opts_.events.size(); ++i) {
      // A type listed twice keeps its first arrival.
      const std::string& type = opts_.events[i].type;
      if (s.match.first_at()[i] &&
          std::none_of(p.begin(), p.end(), [&](const auto& x) { return x.first == type; }))
        p.emplace_back(type, *s.match.first_at()[i]);
    }
    per_session.push_back(std::move(p));
  }
  std::vector<const Phases*> each;
  for (const auto& p : per_session) each.push_back(&p);
  append_slowest(out, each, {"connect", "tls", "handshake", "first_event"});
  for (const auto& type : series_.phases) append_slowest(out, each, {type});  // the event types
  append_slowest(out, each, {"close"});
  return out;
}

void AgentPipelineProbe::maybe_finish() {
  for (const auto& s : sessions_)
    if (s.state != State::kOk && s.state != State::kFailed) return;
  if (!done_) return;
  int ok = static_cast<int>(std::count_if(sessions_.begin(), sessions_.end(),
                                          [](const Session& s) { return s.state == State::kOk; }));
  const Session* failed = nullptr;
  for (const auto& s : sessions_)
    if (s.failure && failed == nullptr) failed = &s;
  ProbeResult result;
  ProbeDetails d;
  if (failed != nullptr) {
    result = *failed->failure;
    d = session_details(*failed);
    const ProbeDetails& fd = failed->failure->details;
    d.status_code = fd.status_code;
    d.timeout_phase = fd.timeout_phase;
    for (const char* key : {kWsCloseCodeField, kMissingEventsField, kMissingFieldField})
      d.take(fd, key);
    if (opts_.sessions > 1)
      result.message = fmt::format("{} of {} sessions succeeded; first failure: {}", ok,
                                   opts_.sessions, result.message);
  } else {
    result = ProbeResult::ok();
    d = session_details(sessions_.front());
    d.set(kWsCloseCodeField, 1000);
    result.message = opts_.sessions > 1
                         ? fmt::format("{} of {} sessions succeeded", ok, opts_.sessions)
                         : fmt::format("{} at {}", sessions_.front().match.last_event()->first,
                                       format_offset(sessions_.front().match.last_event()->second));
  }
  d.set(kEventsReceivedField, events_received());
  note_timing(d);
  result.phases = merged_phases();
  result.details = std::move(d);
  finish(std::move(result));
}

void AgentPipelineProbe::finish(ProbeResult result) {
  result.phases.emplace_back("total", seconds_between(run_start_ns_, uv_hrtime()));
  note_connections(result.details);
  release();
  call_done(done_, std::move(result));
}

CancelInfo AgentPipelineProbe::cancel() {
  CancelInfo info;
  const Session* slowest = nullptr;
  if (token_.in_flight()) {
    info.phase = "token";
  } else if (resolve_.pending()) {
    info.phase = "dns";
  } else {
    LeastAdvanced least;
    for (const auto& s : sessions_) {
      int before = least.rank;
      if (s.state == State::kConnecting) {
        least.offer_opening(s.ws);
      } else if (s.state == State::kAwaiting) {
        least.offer(LeastAdvanced::kAfterOpen + (s.match.last_event() ? 1 : 0),
                    s.match.last_event() ? "events" : "first_event");
      } else if (s.state == State::kClosing) {
        least.offer(LeastAdvanced::kAfterOpen + 2, "close");
      }
      if (least.rank < before) slowest = &s;
    }
    info.phase = least.phase;
  }
  info.phases = merged_phases();
  if (slowest != nullptr) {
    info.details = session_details(*slowest);
    if (slowest->state == State::kAwaiting) {
      info.details.set(kMissingEventsField, missing(*slowest));
      info.note = fmt::format("awaiting {}, {}", awaited(*slowest), after_text(*slowest));
    }
  }
  info.details.set(kEventsReceivedField, events_received());
  note_timing(info.details);
  note_connections(info.details);
  done_ = nullptr;
  release();
  return info;
}

}  // namespace

static std::vector<Reason> agent_pipeline_probe_reasons() {
  auto all = ws_connection_reasons();
  // http_status: transport: sse's refused request.
  all.insert(all.end(),
             {Reason::kHttpStatus, Reason::kAuth, Reason::kMissingEvent, Reason::kSchema});
  return all;
}

static std::vector<std::string_view> agent_pipeline_probe_phases() {
  return {"token", "dns", "connect", "tls", "handshake", "first_event", "close", "total"};
}

static ProbePtr make_agent_pipeline_probe(const ProbeSpec& /*spec*/, YamlSection& s) {
  auto options = read_agent_options(s);
  if (!options) return nullptr;
  if (options->transport == AgentTransport::kSse) {
    Probe::Series series = agent_series(*options);
    return make_sse_agent_probe(std::move(*options), std::move(series));
  }
  return std::make_unique<AgentPipelineProbe>(std::move(*options));
}

ProbeType agent_pipeline_probe_type() {
  using namespace std::chrono_literals;
  return {.name = "agent_pipeline",
          .reasons = agent_pipeline_probe_reasons(),
          .phases = agent_pipeline_probe_phases(),
          .make = &make_agent_pipeline_probe,
          .metrics = agent_metrics(),
          // Judged over the long window: the pipeline runs every few minutes,
          // so a short window holding one run cannot decide.
          .alerts = {{.key = "agent_pipeline_down",
                      .name = "CanaryAgentPipelineDown",
                      .severity = "P0",
                      .measure = TypeAlert::Measure::kSuccessAtMost,
                      .threshold = 0,
                      .for_duration = 2h,
                      .long_window = true,
                      .summary = "Agent pipeline {probe} has not succeeded for {down_for}",
                      .description = "Success over the last {window} is {value} (at most "
                                     "{threshold}), sustained for {for}."},
                     {.key = "agent_pipeline_slow",
                      .name = "CanaryAgentPipelineSlow",
                      .severity = "P1",
                      .measure = TypeAlert::Measure::kMeanSecondsAbove,
                      .threshold = 60,
                      .for_duration = 30min,
                      .long_window = true,
                      .summary = "Agent pipeline {probe} mean time above {threshold}",
                      .description = "Mean conversation time over the last {window} is {value} "
                                     "(threshold {threshold})."},
                     // P2, the brief's "performance baseline not met": the runs
                     // still pass, and a failing or slow conversation already
                     // pages through the two above.
                     {.key = "agent_first_event_slow",
                      .name = "CanaryAgentFirstEventSlow",
                      .severity = "P2",
                      .measure = TypeAlert::Measure::kHistogramMeanAbove,
                      .threshold = 10,
                      .for_duration = 30min,
                      .long_window = true,
                      .summary = "Agent pipeline {probe} first event after more than {threshold}",
                      .description = "The mean time from the message to the stream's first "
                                     "event over the last {window} is {value} (threshold "
                                     "{threshold}).",
                      .metric = "canary_agent_first_event_seconds"},
                     {.key = "agent_stream_stalled",
                      .name = "CanaryAgentStreamStalled",
                      .severity = "P2",
                      .measure = TypeAlert::Measure::kHistogramQuantileAbove,
                      .threshold = 10,
                      .for_duration = 30min,
                      .long_window = true,
                      .summary = "Agent pipeline {probe} stream stalls: p99 gap above {threshold}",
                      .description = "The p99 gap between consecutive events of its streams over "
                                     "the last {window} is {value} (threshold {threshold}).",
                      .metric = "canary_agent_event_gap_seconds",
                      .quantile = 0.99}}};
}

}  // namespace canaryd
