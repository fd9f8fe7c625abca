#include "probes/agent_pipeline/sse_transport.h"

#include <curl/curl.h>
#include <fmt/format.h>
#include <strings.h>
#include <uv.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <optional>
#include <string>

#include "base/json_path.h"
#include "base/secrets.h"
#include "base/trace_context.h"
#include "probes/agent_pipeline/event_matcher.h"
#include "probes/agent_pipeline/sse_parser.h"
#include "probes/agent_pipeline/stream_timing.h"
#include "probes/agent_pipeline/token_fetch.h"
#include "probes/common/curl_multi.h"
#include "probes/common/response_headers.h"
#include "probes/common/ws_client.h"
#include "probes/common/ws_run.h"

namespace canaryd {

namespace {

// Whether a Content-Type value is text/event-stream, parameters and case aside.
bool is_event_stream(std::string_view value) {
  std::string_view type = value.substr(0, value.find(';'));
  while (!type.empty() && (type.back() == ' ' || type.back() == '\t')) type.remove_suffix(1);
  while (!type.empty() && (type.front() == ' ' || type.front() == '\t')) type.remove_prefix(1);
  constexpr std::string_view kWanted = "text/event-stream";
  return type.size() == kWanted.size() &&
         strncasecmp(type.data(), kWanted.data(), kWanted.size()) == 0;
}

double info_seconds(CURL* e, CURLINFO what) {
  curl_off_t us = 0;
  curl_easy_getinfo(e, what, &us);
  return static_cast<double>(us) / 1e6;
}

class SseAgentProbe : public Probe {
 public:
  SseAgentProbe(AgentOptions opts, Series series)
      : opts_(std::move(opts)), series_(std::move(series)) {
    static std::atomic<size_t> next_shard{0};
    shard_ = next_shard++;
  }
  ~SseAgentProbe() override {
    release();
    if (easy_ != nullptr) curl_easy_cleanup(easy_);
    curl_slist_free_all(header_list_);
  }

  // Probe
  void start(RunContext& ctx, Done done) override;
  CancelInfo cancel() override;
  std::string target() const override { return "POST " + opts_.sse.display_url; }
  Series series() const override { return series_; }

 private:
  void configure_easy();
  void send_request();
  static size_t on_write(char* data, size_t size, size_t nmemb, void* userp);
  static int on_progress(void* clientp, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                         curl_off_t ulnow);
  static int on_prereq(void* clientp, char* conn_primary_ip, char* conn_local_ip,
                       int conn_primary_port, int conn_local_port);
  size_t on_bytes(std::string_view bytes);
  // Judges the response's head once, as soon as it has ended; false if it
  // refused the run (verdict_ says why).
  bool judge_head();
  bool head_received() const;
  bool on_event(SseEvent&& event);
  bool on_end_sentinel(double offset, const std::string& what);
  std::optional<ProbeResult> check_head();
  void on_complete(CURLcode rc);
  ProbeResult transport_failure(CURLcode rc) const;
  void arm_timer(Duration after);
  void on_timer();
  std::string awaited() const;
  std::string connection_phase() const;
  Phases phases() const;
  ProbeDetails details() const;
  void finish(ProbeResult result);
  void release();

  AgentOptions opts_;
  const Series series_;
  TokenFetch token_{opts_.token};
  size_t shard_ = 0;
  CURL* easy_ = nullptr;
  curl_slist* header_list_ = nullptr;
  char error_buffer_[CURL_ERROR_SIZE] = {};
  ResponseHeaders response_headers_;
  CurlMulti* multi_ = nullptr;  // while the request is in flight
  RunContext* ctx_ = nullptr;
  Done done_;
  std::string run_id_;
  std::string body_;  // curl reads the POST body from here while it sends
  uint64_t run_start_ns_ = 0;
  bool requested_ = false;  // this run's request was started
  uint64_t sent_ns_ = 0;    // the request went out: event offsets count from here
  bool head_checked_ = false;
  bool streaming_ = false;  // a 2xx text/event-stream response is being read
  size_t total_bytes_ = 0;
  SseParser parser_;
  EventMatcher match_;
  StreamTiming timing_;
  bool all_seen_ = false;  // every expected event came; waiting for the end sentinel
  std::optional<std::pair<std::string, double>> ended_;  // the sentinel and its offset
  // Decided inside a curl callback, where the transfer cannot be removed:
  // reported once curl has ended it.
  std::optional<ProbeResult> verdict_;
  OneShotTimer timer_;
};

void SseAgentProbe::release() {
  token_.cancel();
  timer_.stop();
  if (multi_ != nullptr) {
    multi_->remove(easy_);
    multi_ = nullptr;
  }
}

void SseAgentProbe::configure_easy() {
  easy_ = curl_easy_init();
  CURL* e = easy_;
  curl_easy_setopt(e, CURLOPT_URL, opts_.sse.url.c_str());
  // A fresh connection and a full TLS handshake every run, like the token
  // step and type: http: a kept one would skip what the users' first
  // message pays for.
  set_probe_transfer_defaults(e, error_buffer_);
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, &SseAgentProbe::on_write);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, this);
  curl_easy_setopt(e, CURLOPT_PREREQFUNCTION, &SseAgentProbe::on_prereq);
  curl_easy_setopt(e, CURLOPT_PREREQDATA, this);
  // Progress calls come as soon as the head has arrived: a refused request or
  // the wrong Content-Type fails then, not when (or if) a body byte follows.
  curl_easy_setopt(e, CURLOPT_NOPROGRESS, 0L);
  curl_easy_setopt(e, CURLOPT_XFERINFOFUNCTION, &SseAgentProbe::on_progress);
  curl_easy_setopt(e, CURLOPT_XFERINFODATA, this);
  response_headers_.attach(e);
  curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(e, CURLOPT_POST, 1L);
  if (!opts_.sse.ca_file.empty()) curl_easy_setopt(e, CURLOPT_CAINFO, opts_.sse.ca_file.c_str());
  curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, opts_.sse.insecure_skip_verify ? 0L : 1L);
  curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, opts_.sse.insecure_skip_verify ? 0L : 2L);
}

void SseAgentProbe::start(RunContext& ctx, Done done) {
  release();
  done_ = std::move(done);
  ctx_ = &ctx;
  run_id_ = ctx.run_id;
  run_start_ns_ = uv_hrtime();
  requested_ = false;
  sent_ns_ = 0;
  head_checked_ = false;
  streaming_ = false;
  total_bytes_ = 0;
  parser_ = SseParser(
      {.max_line_bytes = opts_.sse.max_line_bytes, .max_event_bytes = opts_.sse.max_event_bytes});
  match_ = EventMatcher(&opts_, run_id_);
  timing_ = {};
  all_seen_ = false;
  ended_.reset();
  verdict_.reset();
  token_.start(
      ctx, shard_, run_start_ns_, [this] { send_request(); },
      [this](ProbeResult failure) { finish(std::move(failure)); });
}

void SseAgentProbe::send_request() {
  if (easy_ == nullptr) configure_easy();
  const std::string& token = token_.token();
  curl_slist_free_all(header_list_);
  header_list_ = nullptr;
  auto given = [&](const char* name) {
    return std::any_of(opts_.sse.headers.begin(), opts_.sse.headers.end(),
                       [&](const auto& h) { return strcasecmp(h.first.c_str(), name) == 0; });
  };
  for (const char* line :
       {"Content-Type: application/json", "Accept: text/event-stream", "Cache-Control: no-cache"}) {
    std::string name(line, std::string_view(line).find(':'));
    if (!given(name.c_str())) header_list_ = curl_slist_append(header_list_, line);
  }
  // No "Expect: 100-continue" round trip before a large body.
  header_list_ = curl_slist_append(header_list_, "Expect:");
  for (const auto& [name, value] : opts_.sse.headers) {
    if (is_traceparent_header(name)) continue;  // the run's own replaces it
    header_list_ = curl_slist_append(header_list_,
                                     (name + ": " + fill_template(value, "token", token)).c_str());
  }
  // A span of the run's trace, apart from the token request's.
  header_list_ = curl_slist_append(
      header_list_, (std::string(kTraceparentHeader) + ": " + ctx_->new_traceparent()).c_str());
  curl_easy_setopt(easy_, CURLOPT_HTTPHEADER, header_list_);
  body_ = fill_json(opts_.send_json.value_or(nlohmann::json::object()), run_id_, token).dump();
  curl_easy_setopt(easy_, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body_.size()));
  curl_easy_setopt(easy_, CURLOPT_POSTFIELDS, body_.c_str());
  response_headers_.reset();
  error_buffer_[0] = '\0';
  requested_ = true;
  multi_ = &ctx_->services->curl(shard_);
  multi_->add(easy_, ctx_->fail, [this](CURLcode rc) { on_complete(rc); });
}

int SseAgentProbe::on_prereq(void* clientp, char* /*conn_primary_ip*/, char* /*conn_local_ip*/,
                             int /*conn_primary_port*/, int /*conn_local_port*/) {
  auto* self = static_cast<SseAgentProbe*>(clientp);
  // The connection is up and the request is about to leave: the agent's
  // clock starts, as when the WebSocket transport sends its message.
  bool ok = guarded(self->ctx_->fail, "libcurl's prereq callback", [self] {
    self->sent_ns_ = uv_hrtime();
    self->arm_timer(self->opts_.first_event_timeout);
  });
  return ok ? CURL_PREREQFUNC_OK : CURL_PREREQFUNC_ABORT;
}

int SseAgentProbe::on_progress(void* clientp, curl_off_t /*dltotal*/, curl_off_t /*dlnow*/,
                               curl_off_t /*ultotal*/, curl_off_t /*ulnow*/) {
  auto* self = static_cast<SseAgentProbe*>(clientp);
  bool go_on = false;
  guarded(self->ctx_->fail, "libcurl's progress callback", [&] {
    go_on = self->verdict_
                ? false
                : self->head_checked_ || !self->response_headers_.complete() || self->judge_head();
  });
  return go_on ? 0 : 1;  // non-zero ends the transfer; on_complete reports verdict_
}

bool SseAgentProbe::head_received() const {
  long status = 0;
  curl_easy_getinfo(easy_, CURLINFO_RESPONSE_CODE, &status);
  return status != 0;
}

bool SseAgentProbe::judge_head() {
  head_checked_ = true;
  if (auto refused = check_head()) {
    verdict_ = std::move(refused);
    return false;
  }
  streaming_ = true;
  return true;
}

size_t SseAgentProbe::on_write(char* data, size_t size, size_t nmemb, void* userp) {
  auto* self = static_cast<SseAgentProbe*>(userp);
  size_t n = size * nmemb;
  size_t taken = 0;
  // Returning less than n makes curl end the transfer; it then reports the
  // verdict set here.
  guarded(self->ctx_->fail, "an SSE body callback",
          [&] { taken = self->on_bytes(std::string_view(data, n)); });
  return taken;
}

size_t SseAgentProbe::on_bytes(std::string_view bytes) {
  if (verdict_ || (!head_checked_ && !judge_head())) return 0;
  total_bytes_ += bytes.size();
  if (total_bytes_ > opts_.sse.max_total_bytes) {
    verdict_ = ProbeResult::failure(
        Reason::kProtocol, fmt::format("the stream is larger than max_total_bytes ({} bytes; {})",
                                       opts_.sse.max_total_bytes, match_.after_text()));
    return 0;
  }
  parser_.feed(bytes, [this](SseEvent&& e) { return on_event(std::move(e)); });
  if (!verdict_ && parser_.error() != SseParser::Error::kNone) {
    verdict_ = ProbeResult::failure(
        Reason::kProtocol,
        fmt::format("{} ({})", sse_error_text(parser_.error()), match_.after_text()));
  }
  return verdict_ ? 0 : bytes.size();
}

std::optional<ProbeResult> SseAgentProbe::check_head() {
  long status = 0;
  curl_easy_getinfo(easy_, CURLINFO_RESPONSE_CODE, &status);
  if (status < 200 || status >= 300) {
    if (status == 401 || status == 403) token_.refused();
    auto r = ProbeResult::failure(Reason::kHttpStatus,
                                  fmt::format("the server answered the message with HTTP {}, "
                                              "expected 2xx and an event stream",
                                              status));
    r.details.status_code = static_cast<int>(status);
    return r;
  }
  const char* type = nullptr;
  curl_easy_getinfo(easy_, CURLINFO_CONTENT_TYPE, &type);
  if (type == nullptr || !is_event_stream(type)) {
    auto r = ProbeResult::failure(
        Reason::kProtocol,
        type == nullptr
            ? std::string("the response has no Content-Type, expected text/event-stream")
            : fmt::format("the response's Content-Type is \"{}\", expected "
                          "text/event-stream",
                          target_text(type, 80)));
    r.details.status_code = static_cast<int>(status);
    return r;
  }
  return std::nullopt;
}

bool SseAgentProbe::on_event(SseEvent&& e) {
  double offset = seconds_between(sent_ns_ != 0 ? sent_ns_ : run_start_ns_, uv_hrtime());
  timing_.on_event(offset);
  const SseOptions& o = opts_.sse;
  if (o.end_data && e.data == *o.end_data)
    return on_end_sentinel(offset, fmt::format("data {}", *o.end_data));
  auto is_configured = [&](const std::string& type) {
    return std::any_of(opts_.events.begin(), opts_.events.end(),
                       [&](const ExpectedEvent& x) { return x.type == type; });
  };
  EventMatcher::Step step;
  std::string type;
  auto protocol = [&](std::string message) {
    verdict_ = ProbeResult::failure(Reason::kProtocol, std::move(message));
    return false;
  };
  if (o.type_from_data) {
    auto parsed = parse_target_json(e.data);
    if (!parsed.ok())
      return protocol(fmt::format("an event's data is {} ({})", parsed.error, match_.after_text()));
    if (const auto* t = json_at_path(parsed.value, opts_.type_field); t && t->is_string())
      type = t->get<std::string>();
    step = match_.on_frame(parsed.value, offset);
  } else {
    type = e.type;
    nlohmann::json doc;
    // The data is read as JSON only when a check needs a field of it, so a
    // plain-text event (a token of a chat reply) is fine.
    bool needs_json =
        is_configured(type) &&
        (!opts_.correlation_field.empty() ||
         std::any_of(opts_.events.begin(), opts_.events.end(), [&](const ExpectedEvent& x) {
           return x.type == type && !x.required.empty();
         }));
    auto parsed = parse_target_json(e.data);
    if (parsed.ok()) {
      doc = std::move(parsed.value);
    } else if (needs_json) {
      return protocol(
          fmt::format("the data of event {} is {} ({})", type, parsed.error, match_.after_text()));
    }
    step = match_.on_event(type, doc, offset);
  }
  switch (step) {
    case EventMatcher::Step::kFailed:
      verdict_ = *match_.failure();
      return false;
    case EventMatcher::Step::kDone:
      if (o.end_event.empty() && !o.end_data) {
        verdict_ = ProbeResult::ok();
        return false;
      }
      all_seen_ = true;
      arm_timer(opts_.idle_timeout);
      break;
    case EventMatcher::Step::kProgress:
      arm_timer(opts_.idle_timeout);
      break;
    case EventMatcher::Step::kOther:
      break;
  }
  if (!o.end_event.empty() && type == o.end_event)
    return on_end_sentinel(offset, fmt::format("event {}", o.end_event));
  return true;
}

bool SseAgentProbe::on_end_sentinel(double offset, const std::string& what) {
  ended_ = std::make_pair(what, offset);
  std::string wait = match_.awaited();
  if (wait.empty()) {
    verdict_ = ProbeResult::ok();
    return false;
  }
  auto r = ProbeResult::failure(Reason::kMissingEvent,
                                fmt::format("{} ({}; the stream ended with {} at {})", wait,
                                            match_.after_text(), what, format_offset(offset)));
  r.details.set(kMissingEventsField, match_.missing());
  verdict_ = std::move(r);
  return false;
}

std::string SseAgentProbe::awaited() const {
  std::string wait = match_.awaited();
  if (!wait.empty() || !all_seen_) return wait;
  return opts_.sse.end_data ? fmt::format("data {}", *opts_.sse.end_data)
                            : fmt::format("event {}", opts_.sse.end_event);
}

void SseAgentProbe::on_complete(CURLcode rc) {
  multi_ = nullptr;
  timer_.stop();
  if (verdict_) return finish(std::move(*verdict_));
  if (auto problem = response_headers_.problem(easy_, rc))
    return finish(ProbeResult::failure(Reason::kProtocol, "invalid HTTP response: " + *problem));
  if (!head_checked_ && rc == CURLE_OK && !judge_head()) return finish(std::move(*verdict_));
  if (!streaming_) return finish(transport_failure(rc));
  // The stream ended before the run did: cleanly, or cut off.
  std::string how =
      rc == CURLE_OK
          ? std::string("the server ended the stream")
          : "the connection broke: " +
                target_text(error_buffer_[0] != '\0' ? error_buffer_ : curl_easy_strerror(rc));
  if (parser_.pending()) how += "; an unfinished event was discarded";
  auto r = ProbeResult::failure(Reason::kMissingEvent,
                                fmt::format("{} ({}; {})", awaited(), match_.after_text(), how));
  r.details.set(kMissingEventsField, match_.missing());
  finish(std::move(r));
}

ProbeResult SseAgentProbe::transport_failure(CURLcode rc) const {
  std::string detail =
      target_text(error_buffer_[0] != '\0' ? error_buffer_ : curl_easy_strerror(rc));
  switch (rc) {
    case CURLE_COULDNT_RESOLVE_HOST:
      return ProbeResult::failure(Reason::kDns, "DNS resolution failed: " + detail);
    case CURLE_COULDNT_CONNECT: {
      long os_errno = 0;
      curl_easy_getinfo(easy_, CURLINFO_OS_ERRNO, &os_errno);
      if (os_errno == ECONNREFUSED)
        return ProbeResult::failure(Reason::kConnectRefused, "connection refused");
      return ProbeResult::failure(Reason::kConnect, "connect failed: " + detail);
    }
    case CURLE_PEER_FAILED_VERIFICATION: {
      long verify = 0;
      curl_easy_getinfo(easy_, CURLINFO_SSL_VERIFYRESULT, &verify);
      // X509_V_ERR_CERT_HAS_EXPIRED is 10; a host name mismatch shows only in
      // curl's message.
      if (verify == 10 || detail.find("expired") != std::string::npos)
        return ProbeResult::failure(Reason::kTlsExpired, "TLS certificate has expired: " + detail);
      if (detail.find("subject name") != std::string::npos ||
          detail.find("does not match") != std::string::npos ||
          detail.find("host name") != std::string::npos)
        return ProbeResult::failure(Reason::kTlsHostname,
                                    "TLS certificate is not valid for the host: " + detail);
      return ProbeResult::failure(Reason::kTls, "TLS verification failed: " + detail);
    }
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_USE_SSL_FAILED:
      return ProbeResult::failure(Reason::kTls, "TLS handshake failed: " + detail);
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
      return ProbeResult::failure(Reason::kConnect, "connection broken: " + detail);
    default:
      // Everything else before a response was read is the server's reply
      // breaking HTTP (curl's own limits included), never canaryd's fault.
      return ProbeResult::failure(Reason::kProtocol, "invalid HTTP response: " + detail);
  }
}

void SseAgentProbe::arm_timer(Duration after) {
  timer_.start(ctx_->loop,
               static_cast<uint64_t>(std::chrono::ceil<std::chrono::milliseconds>(after).count()),
               ctx_->fail, [this] { on_timer(); });
}

void SseAgentProbe::on_timer() {
  bool any = match_.last_event().has_value() || all_seen_;
  std::string wait = awaited();
  auto r = ProbeResult::failure(
      Reason::kTimeout,
      any ? fmt::format("{}: no event for {} (idle_timeout) {}", wait,
                        format_duration(opts_.idle_timeout), match_.after_text())
          : fmt::format("{}: no event within {} of the message (first_event_timeout)", wait,
                        format_duration(opts_.first_event_timeout)));
  r.details.timeout_phase = any ? "idle" : "first_event";
  r.details.set(kMissingEventsField, match_.missing());
  finish(std::move(r));
}

std::string SseAgentProbe::connection_phase() const {
  if (info_seconds(easy_, CURLINFO_NAMELOOKUP_TIME_T) <= 0) return "dns";
  if (info_seconds(easy_, CURLINFO_CONNECT_TIME_T) <= 0) return "connect";
  if (opts_.sse.https && info_seconds(easy_, CURLINFO_APPCONNECT_TIME_T) <= 0) return "tls";
  return "handshake";
}

Phases SseAgentProbe::phases() const {
  Phases out = token_.phase();
  if (requested_) {
    // curl's timers are cumulative from the start of the transfer.
    double dns = info_seconds(easy_, CURLINFO_NAMELOOKUP_TIME_T);
    double connect = info_seconds(easy_, CURLINFO_CONNECT_TIME_T);
    double tls = info_seconds(easy_, CURLINFO_APPCONNECT_TIME_T);
    double sent = info_seconds(easy_, CURLINFO_PRETRANSFER_TIME_T);
    double head = info_seconds(easy_, CURLINFO_STARTTRANSFER_TIME_T);
    if (dns > 0 || connect > 0) out.emplace_back("dns", dns);
    if (connect > 0) out.emplace_back("connect", std::max(0.0, connect - dns));
    if (opts_.sse.https && tls > 0) out.emplace_back("tls", std::max(0.0, tls - connect));
    // The request sent to the response's head: the SSE counterpart of the
    // WebSocket upgrade.
    if (sent > 0 && head > 0) out.emplace_back("handshake", std::max(0.0, head - sent));
  }
  std::optional<double> first;
  for (const auto& t : match_.first_at())
    if (t) first = std::min(first.value_or(*t), *t);
  if (first) out.emplace_back("first_event", *first);
  for (const auto& type : series_.phases) {
    for (size_t i = 0; i < opts_.events.size(); ++i) {
      if (opts_.events[i].type == type && match_.first_at()[i]) {
        out.emplace_back(type, *match_.first_at()[i]);
        break;
      }
    }
  }
  return out;
}

ProbeDetails SseAgentProbe::details() const {
  ProbeDetails d;
  if (std::string wait = awaited(); !wait.empty() && sent_ns_ != 0) d.set(kAwaitedEventField, wait);
  auto timeline = nlohmann::ordered_json::array();
  for (const auto& e : match_.timeline())
    timeline.push_back({{"type", e.type}, {"offset_ms", std::lround(e.offset_seconds * 1000)}});
  d.set(kTimelineField, timeline);
  d.set(kEventsReceivedField, match_.received());
  if (sent_ns_ != 0) timing_.report(d);
  if (easy_ != nullptr && head_checked_) {
    long status = 0;
    curl_easy_getinfo(easy_, CURLINFO_RESPONSE_CODE, &status);
    if (status > 0) d.status_code = static_cast<int>(status);
  }
  return d;
}

void SseAgentProbe::finish(ProbeResult result) {
  if (!done_) return;
  ProbeDetails d = details();
  d.timeout_phase = result.details.timeout_phase;
  if (result.details.status_code) d.status_code = result.details.status_code;
  for (const char* key : {kMissingEventsField, kMissingFieldField}) d.take(result.details, key);
  if (result.success) {
    d.fields.erase(kAwaitedEventField);
    if (const auto& last = match_.last_event())
      result.message = fmt::format("{} at {}", last->first, format_offset(last->second));
    if (ended_)
      result.message += fmt::format("{}{} at {}", result.message.empty() ? "" : "; then ",
                                    ended_->first, format_offset(ended_->second));
  }
  result.details = std::move(d);
  Phases all = phases();
  all.emplace_back("total", seconds_between(run_start_ns_, uv_hrtime()));
  result.phases = std::move(all);
  release();
  call_done(done_, std::move(result));
}

CancelInfo SseAgentProbe::cancel() {
  CancelInfo info;
  if (token_.in_flight()) {
    info.phase = "token";
  } else if (multi_ != nullptr && sent_ns_ == 0) {
    info.phase = connection_phase();
  } else if (multi_ != nullptr && !head_received()) {
    info.phase = "handshake";
  } else {
    info.phase = match_.last_event() ? "events" : "first_event";
  }
  info.phases = phases();
  info.details = details();
  if (multi_ != nullptr && head_checked_) {
    info.details.set(kMissingEventsField, match_.missing());
    info.note = fmt::format("awaiting {}, {}", awaited(), match_.after_text());
  }
  done_ = nullptr;
  release();
  return info;
}

}  // namespace

ProbePtr make_sse_agent_probe(AgentOptions opts, Probe::Series series) {
  return std::make_unique<SseAgentProbe>(std::move(opts), std::move(series));
}

}  // namespace canaryd
