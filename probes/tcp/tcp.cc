#include "probes/tcp/tcp.h"

#include <fmt/format.h>
#include <re2/re2.h>

#include <algorithm>
#include <memory>
#include <optional>
#include <string>

#include "base/secrets.h"
#include "probes/common/config_fields.h"
#include "probes/common/resolve.h"
#include "probes/common/tcp_client.h"
#include "probes/tcp/tls_stream.h"

namespace canaryd {

namespace {

constexpr int64_t kDefaultReadLimit = 4096;
constexpr int64_t kMaxReadLimit = 64 * 1024;
// How much of what the peer sent a failure message quotes.
constexpr size_t kQuotedBytes = 128;

struct TcpOptions {
  std::string host;
  int port = 0;
  std::optional<TlsOptions> tls;
  std::optional<std::string> send;
  std::optional<std::string> expect_text;
  std::shared_ptr<RE2> expect_regex;
  size_t read_limit = kDefaultReadLimit;

  bool expects() const { return expect_text || expect_regex; }
  std::string expectation() const {
    return expect_text ? fmt::format("text \"{}\"", *expect_text)
                       : fmt::format("regex \"{}\"", expect_regex->pattern());
  }
};

class TcpProbe : public Probe, private TcpClient::Handler {
 public:
  explicit TcpProbe(TcpOptions opts) : opts_(std::move(opts)) {
    if (opts_.tls) tls_context_ = std::make_unique<TlsClientContext>(*opts_.tls);
  }
  ~TcpProbe() override { release(); }

  // Probe
  void start(RunContext& ctx, Done done) override;
  CancelInfo cancel() override;
  std::string target() const override {
    return fmt::format(
        "{}://{}:{}", opts_.tls ? "tls" : "tcp",
        opts_.host.find(':') != std::string::npos ? "[" + opts_.host + "]" : opts_.host,
        opts_.port);
  }

 private:
  // The steps of one run, in order.
  enum class Step { kConnect, kTls, kExpect };

  // TcpClient::Handler
  void on_connect(int status) override;
  void on_data(std::string_view data) override;
  void on_closed(int status) override;

  void start_tls();
  void on_tls_data(std::string_view data);
  void begin_exchange();
  void check_expectation();
  bool matched();
  bool flush_tls();
  void succeed();
  void fail_expectation(const std::string& why);
  void fail_tls();
  void finish(ProbeResult result);
  void release(TcpClient::Close how = TcpClient::Close::kGraceful);
  std::string phase_name() const;

  TcpOptions opts_;
  std::unique_ptr<TlsClientContext> tls_context_;
  Done done_;
  AsyncResolve resolve_;
  TcpClient* conn_ = nullptr;
  std::unique_ptr<TlsStream> tls_;
  Step step_ = Step::kConnect;
  std::string received_;  // what the peer sent (decrypted), at most read_limit bytes
  size_t searched_ = 0;   // how much of received_ the text search has covered
  PhaseTimer phases_;
};

std::string TcpProbe::phase_name() const {
  if (resolve_.pending()) return "dns";
  switch (step_) {
    case Step::kConnect:
      return "connect";
    case Step::kTls:
      return "tls";
    default:
      return "expect";
  }
}

void TcpProbe::start(RunContext& ctx, Done done) {
  done_ = std::move(done);
  received_.clear();
  searched_ = 0;
  tls_.reset();
  phases_.start();
  step_ = Step::kConnect;
  dial(ctx, resolve_, phases_, opts_.host, opts_.port, this, conn_,
       [this](ProbeResult unresolved) { finish(std::move(unresolved)); });
}

void TcpProbe::on_connect(int status) {
  if (status != 0) {
    finish(tcp_connect_failure(status));
    return;
  }
  phases_.end("connect");
  if (opts_.tls) {
    start_tls();
  } else {
    begin_exchange();
  }
}

void TcpProbe::start_tls() {
  step_ = Step::kTls;
  std::string error;
  auto ctx = tls_context_->get(error);
  if (!ctx) {
    finish(ProbeResult::failure(Reason::kTls, error, phases_.phases()));
    return;
  }
  const TlsOptions& t = tls_context_->options();
  tls_ = std::make_unique<TlsStream>(std::move(ctx), t.server_name.value_or(opts_.host),
                                     !t.insecure_skip_verify);
  tls_->start();
  if (tls_->state() == TlsStream::State::kFailed) {
    fail_tls();
    return;
  }
  flush_tls();
}

bool TcpProbe::flush_tls() {
  // A failed write reports on_closed synchronously, which ends the run.
  std::string wire = tls_->take_wire();
  if (!wire.empty()) conn_->write(std::move(wire));
  return conn_ != nullptr;
}

void TcpProbe::begin_exchange() {
  step_ = Step::kExpect;
  if (opts_.send) {
    if (tls_) {
      tls_->write(*opts_.send);
      if (tls_->state() == TlsStream::State::kFailed) {
        fail_tls();
        return;
      }
      if (!flush_tls()) return;
    } else {
      conn_->write(*opts_.send);
      if (conn_ == nullptr) return;
    }
  }
  if (!opts_.expects()) {
    succeed();
    return;
  }
  // The peer may have spoken first (a banner), even during the handshake.
  check_expectation();
}

void TcpProbe::on_data(std::string_view data) {
  if (tls_) {
    on_tls_data(data);
    return;
  }
  if (step_ != Step::kExpect) return;
  // Never more than read_limit is kept, whatever the peer sends.
  received_.append(data.substr(0, opts_.read_limit - received_.size()));
  check_expectation();
}

void TcpProbe::on_tls_data(std::string_view data) {
  bool was_open = tls_->state() == TlsStream::State::kOpen;
  tls_->feed(data, received_, opts_.read_limit);
  if (!flush_tls()) return;
  switch (tls_->state()) {
    case TlsStream::State::kHandshaking:
      return;
    case TlsStream::State::kFailed:
      fail_tls();
      return;
    case TlsStream::State::kOpen:
    case TlsStream::State::kClosed:
      if (was_open) {
        check_expectation();
      } else if (tls_->handshake_done()) {
        phases_.end("tls");
        begin_exchange();
      } else {
        finish(ProbeResult::failure(Reason::kTls, "the peer closed TLS during the handshake",
                                    phases_.phases()));
        return;
      }
      // A peer may finish the handshake, speak and close in one burst: what
      // it said before its close_notify still counts.
      if (conn_ != nullptr && tls_->state() == TlsStream::State::kClosed)
        fail_expectation("the peer closed the TLS session");
      return;
  }
}

bool TcpProbe::matched() {
  // RE2 runs in linear time, so matching again after each read costs at most
  // read_limit (64 KiB) per read, and the deadline bounds the reads.
  if (opts_.expect_regex) return RE2::PartialMatch(received_, *opts_.expect_regex);
  // Only the new bytes (and a needle's length before them) are searched, so
  // a peer that sends one byte at a time costs linear work, not quadratic.
  const std::string& needle = *opts_.expect_text;
  size_t from = searched_ >= needle.size() ? searched_ - needle.size() + 1 : 0;
  searched_ = received_.size();
  return received_.find(needle, from) != std::string::npos;
}

void TcpProbe::check_expectation() {
  if (step_ != Step::kExpect || !opts_.expects() || received_.empty()) return;
  if (matched()) {
    phases_.end("expect");
    succeed();
  } else if (received_.size() >= opts_.read_limit) {
    fail_expectation(fmt::format("read_limit ({} bytes) reached", opts_.read_limit));
  }
}

void TcpProbe::succeed() {
  phases_.end_run();
  finish(ProbeResult::ok(phases_.take()));
}

void TcpProbe::fail_expectation(const std::string& why) {
  std::string message =
      received_.empty()
          ? fmt::format("expected {}, but {} before sending anything", opts_.expectation(), why)
          : fmt::format("expected {} not seen: {} after {} bytes: \"{}\"", opts_.expectation(), why,
                        received_.size(), target_text(received_, kQuotedBytes));
  finish(ProbeResult::failure(Reason::kAssertion, std::move(message), phases_.phases()));
}

void TcpProbe::fail_tls() {
  auto [reason, message] = tls_->failure();
  finish(ProbeResult::failure(reason, std::move(message), phases_.phases()));
}

void TcpProbe::on_closed(int status) {
  if (status != UV_EOF) {
    finish(ProbeResult::failure(Reason::kConnect,
                                fmt::format("connection broken: {}", uv_strerror(status)),
                                phases_.phases()));
  } else if (step_ == Step::kTls) {
    finish(ProbeResult::failure(
        Reason::kTls, "the peer closed the connection during the TLS handshake", phases_.phases()));
  } else {
    // Only reachable while waiting for the expectation: the run ends as soon
    // as it is met, or right after sending when nothing is expected.
    fail_expectation("the peer closed the connection");
  }
}

void TcpProbe::release(TcpClient::Close how) {
  resolve_.cancel();
  if (conn_ != nullptr) {
    conn_->close(how);
    conn_ = nullptr;
  }
}

void TcpProbe::finish(ProbeResult result) {
  if (tls_) result.details.cert_expiry_unix = tls_->cert_expiry_unix();
  release();
  tls_.reset();
  received_.clear();
  received_.shrink_to_fit();
  call_done(done_, std::move(result));
}

CancelInfo TcpProbe::cancel() {
  CancelInfo info;
  info.phase = phase_name();
  info.phases = phases_.phases();
  if (tls_) info.details.cert_expiry_unix = tls_->cert_expiry_unix();
  if (step_ == Step::kExpect && opts_.expects())
    info.note = fmt::format("{} bytes read, {} not seen", received_.size(), opts_.expectation());
  release(TcpClient::Close::kReset);
  tls_.reset();
  received_.clear();
  received_.shrink_to_fit();
  done_ = nullptr;
  return info;
}

}  // namespace

static std::vector<Reason> tcp_probe_reasons() {
  return {Reason::kTimeout,    Reason::kDns,       Reason::kConnectRefused,
          Reason::kConnect,    Reason::kTls,       Reason::kTlsHostname,
          Reason::kTlsExpired, Reason::kAssertion, Reason::kInternal};
}

static std::vector<std::string_view> tcp_probe_phases() {
  return {"dns", "connect", "tls", "expect", "total"};
}

static void read_expect(YamlSection& s, TcpOptions& o) {
  auto expect = s.get_section("expect");
  if (!expect) return;
  o.expect_text = expect->get_string("text");
  if (o.expect_text && o.expect_text->empty()) {
    expect->error("text", "must not be empty");
    o.expect_text.reset();
  }
  o.expect_regex = read_regex(*expect, "regex");
  if (expect->has("text") && expect->has("regex")) {
    expect->error("regex", "give either text or regex, not both");
  } else if (!expect->has("text") && !expect->has("regex")) {
    expect->error("", "missing text or regex");
  }
  expect->finish();
}

static ProbePtr make_tcp_probe(const ProbeSpec& /*spec*/, YamlSection& s) {
  TcpOptions o;
  size_t errors_before = s.context().errors->size();
  if (auto address = s.get_string("address")) {
    auto host_port = split_host_port(*address);
    if (!host_port) {
      s.error("address", fmt::format("invalid address \"{}\" (use host:port)", *address));
    } else {
      o.host = host_port->first;
      o.port = host_port->second;
    }
  } else if (!s.has("address")) {
    s.error("", "missing required key address");
  }
  if (auto tls = s.get_section("tls")) {
    o.tls = read_tls_options(*tls);
    tls->finish();
  }
  o.send = s.get_string("send");
  if (o.send && o.send->empty()) {
    s.error("send", "must not be empty (leave it out to send nothing)");
    o.send.reset();
  }
  read_expect(s, o);
  if (auto limit = s.get_int("read_limit", 1, kMaxReadLimit))
    o.read_limit = static_cast<size_t>(*limit);
  s.finish();
  if (s.context().errors->size() != errors_before) return nullptr;
  return std::make_unique<TcpProbe>(std::move(o));
}

ProbeType tcp_probe_type() {
  return {.name = "tcp",
          .reasons = tcp_probe_reasons(),
          .phases = tcp_probe_phases(),
          .make = &make_tcp_probe,
          .latency_baseline = true};
}

}  // namespace canaryd
