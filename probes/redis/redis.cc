#include "probes/redis/redis.h"

#include <fmt/format.h>

#include <memory>
#include <optional>
#include <string>

#include "probes/common/resolve.h"
#include "probes/common/tcp_client.h"
#include "probes/redis/resp.h"

namespace canaryd {

namespace {

// A reply bigger than this is not what PING, AUTH, SELECT or ROLE return.
constexpr size_t kMaxReplyBytes = kRespMaxReplyBytes;

struct RedisOptions {
  std::string host;
  int port = 6379;
  std::string username;
  std::string password;
  std::optional<int64_t> db;
  std::optional<std::string> expect_role;  // "master" or "replica"
};

class RedisProbe : public Probe, private TcpClient::Handler {
 public:
  explicit RedisProbe(RedisOptions opts) : opts_(std::move(opts)) {}
  ~RedisProbe() override { release(); }

  // Probe
  void start(RunContext& ctx, Done done) override;
  CancelInfo cancel() override;
  std::string target() const override {
    return fmt::format("redis://{}:{}{}", opts_.host, opts_.port,
                       opts_.db ? fmt::format("/{}", *opts_.db) : "");
  }

 private:
  // The steps of one run, in order; each expects exactly one reply.
  enum class Step { kConnect, kAuth, kSelect, kPing, kRole };

  // TcpClient::Handler
  void on_connect(int status) override;
  void on_data(std::string_view data) override;
  void on_closed(int status) override;

  void send_next();
  void on_reply(const RespValue& reply);
  void finish(ProbeResult result);
  void release(TcpClient::Close how = TcpClient::Close::kGraceful);
  std::string phase_name() const;

  RedisOptions opts_;
  Done done_;
  AsyncResolve resolve_;
  TcpClient* conn_ = nullptr;
  Step step_ = Step::kConnect;
  std::string inbuf_;
  PhaseTimer phases_;
};

std::string RedisProbe::phase_name() const {
  if (resolve_.pending()) return "dns";
  switch (step_) {
    case Step::kConnect:
      return "connect";
    case Step::kAuth:
      return "auth";
    default:
      return "command";
  }
}

void RedisProbe::start(RunContext& ctx, Done done) {
  done_ = std::move(done);
  inbuf_.clear();
  phases_.start();
  step_ = Step::kConnect;
  dial(ctx, resolve_, phases_, opts_.host, opts_.port, this, conn_,
       [this](ProbeResult unresolved) { finish(std::move(unresolved)); });
}

void RedisProbe::on_connect(int status) {
  if (status != 0) {
    finish(tcp_connect_failure(status));
    return;
  }
  phases_.end("connect");
  step_ = opts_.password.empty() ? Step::kSelect : Step::kAuth;
  send_next();
}

void RedisProbe::send_next() {
  // Skip the optional steps that are not configured.
  if (step_ == Step::kSelect && !opts_.db) step_ = Step::kPing;
  if (step_ == Step::kRole && !opts_.expect_role) {
    phases_.end("command");
    phases_.end_run();
    finish(ProbeResult::ok(phases_.take()));
    return;
  }
  switch (step_) {
    case Step::kAuth:
      if (opts_.username.empty()) {
        conn_->write(resp_command({"AUTH", opts_.password}));
      } else {
        conn_->write(resp_command({"AUTH", opts_.username, opts_.password}));
      }
      break;
    case Step::kSelect:
      conn_->write(resp_command({"SELECT", std::to_string(*opts_.db)}));
      break;
    case Step::kPing:
      conn_->write(resp_command({"PING"}));
      break;
    case Step::kRole:
      conn_->write(resp_command({"ROLE"}));
      break;
    default:
      break;
  }
}

void RedisProbe::on_data(std::string_view data) {
  inbuf_.append(data);
  if (inbuf_.size() > kMaxReplyBytes) {
    finish(ProbeResult::failure(Reason::kProtocol,
                                fmt::format("reply exceeds {} bytes", kMaxReplyBytes),
                                phases_.phases()));
    return;
  }
  while (conn_ != nullptr && !inbuf_.empty()) {
    RespValue reply;
    size_t used = 0;
    RespParse r = parse_resp(inbuf_, used, reply);
    if (r == RespParse::kIncomplete) return;
    if (r == RespParse::kInvalid) {
      finish(ProbeResult::failure(Reason::kProtocol, "reply is not valid RESP", phases_.phases()));
      return;
    }
    inbuf_.erase(0, used);
    on_reply(reply);
  }
}

void RedisProbe::on_reply(const RespValue& reply) {
  using T = RespValue::Type;
  auto is_error = reply.type == T::kError;
  // An auth error can come from any step: the server requires a password the
  // config lacks (NOAUTH), or the one given is wrong (WRONGPASS, invalid).
  if (is_error && (reply.text.rfind("NOAUTH", 0) == 0 || reply.text.rfind("WRONGPASS", 0) == 0 ||
                   (step_ == Step::kAuth))) {
    finish(ProbeResult::failure(Reason::kAuth,
                                fmt::format("authentication failed: {}", resp_brief(reply)),
                                phases_.phases()));
    return;
  }
  switch (step_) {
    case Step::kAuth:
      if (reply.type != T::kSimple || reply.text != "OK") break;
      phases_.end("auth");
      step_ = Step::kSelect;
      send_next();
      return;
    case Step::kSelect:
      if (is_error) {
        finish(ProbeResult::failure(
            Reason::kAssertion, fmt::format("SELECT {} failed: {}", *opts_.db, resp_brief(reply)),
            phases_.phases()));
        return;
      }
      if (reply.type != T::kSimple || reply.text != "OK") break;
      step_ = Step::kPing;
      send_next();
      return;
    case Step::kPing:
      if (reply.type != T::kSimple || reply.text != "PONG") break;
      step_ = Step::kRole;
      send_next();
      return;
    case Step::kRole: {
      if (reply.type != T::kArray || reply.items.empty() ||
          (reply.items[0].type != T::kBulk && reply.items[0].type != T::kSimple))
        break;
      std::string role = reply.items[0].text;
      // Redis still says "slave" for a replica.
      std::string normalized = role == "slave" ? "replica" : role;
      phases_.end("command");
      phases_.end_run();
      if (normalized != *opts_.expect_role) {
        finish(ProbeResult::failure(
            Reason::kAssertion,
            fmt::format("role is {}, expected {}", normalized, *opts_.expect_role),
            phases_.phases()));
      } else {
        finish(ProbeResult::ok(phases_.take()));
      }
      return;
    }
    default:
      break;
  }
  static constexpr const char* kCommand[] = {"", "", "AUTH", "SELECT", "PING", "ROLE"};
  finish(ProbeResult::failure(Reason::kProtocol,
                              fmt::format("unexpected reply to {}: {}",
                                          kCommand[static_cast<int>(step_)], resp_brief(reply)),
                              phases_.phases()));
}

void RedisProbe::on_closed(int status) {
  // A close (FIN) is the server choosing not to answer: it broke the
  // protocol. A reset or another socket error is the connection breaking.
  if (status == UV_EOF) {
    finish(ProbeResult::failure(Reason::kProtocol, "server closed the connection before replying",
                                phases_.phases()));
  } else {
    finish(ProbeResult::failure(Reason::kConnect,
                                fmt::format("connection broken: {}", uv_strerror(status)),
                                phases_.phases()));
  }
}

void RedisProbe::release(TcpClient::Close how) {
  resolve_.cancel();
  if (conn_ != nullptr) {
    conn_->close(how);
    conn_ = nullptr;
  }
  inbuf_.clear();
}

void RedisProbe::finish(ProbeResult result) {
  release();
  call_done(done_, std::move(result));
}

CancelInfo RedisProbe::cancel() {
  CancelInfo info;
  info.phase = phase_name();
  info.phases = phases_.phases();
  release(TcpClient::Close::kReset);
  done_ = nullptr;
  return info;
}

}  // namespace

static std::vector<Reason> redis_probe_reasons() {
  return {Reason::kTimeout, Reason::kDns,      Reason::kConnectRefused, Reason::kConnect,
          Reason::kAuth,    Reason::kProtocol, Reason::kAssertion,      Reason::kInternal};
}

static std::vector<std::string_view> redis_probe_phases() {
  return {"dns", "connect", "auth", "command", "total"};
}

static ProbePtr make_redis_probe(const ProbeSpec& /*spec*/, YamlSection& s) {
  RedisOptions o;
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
  o.username = s.get_string("username").value_or("");
  o.password = s.get_string("password").value_or("");
  if (!o.username.empty() && o.password.empty()) s.error("username", "username needs a password");
  // Even written inline (not recommended), a password is a secret.
  if (!o.password.empty()) s.context().secrets->add(o.password);
  o.db = s.get_int("db", 0, 1'000'000);
  if (auto role = s.get_string("expect_role")) {
    if (*role != "master" && *role != "replica") {
      s.error("expect_role", fmt::format("expected master or replica, got \"{}\"", *role));
    } else {
      o.expect_role = *role;
    }
  }
  s.finish();
  if (s.context().errors->size() != errors_before) return nullptr;
  return std::make_unique<RedisProbe>(std::move(o));
}

ProbeType redis_probe_type() {
  using namespace std::chrono_literals;
  return {.name = "redis",
          .reasons = redis_probe_reasons(),
          .phases = redis_probe_phases(),
          .make = &make_redis_probe,
          .alerts = {{.key = "redis_down",
                      .name = "CanaryRedisDown",
                      .severity = "P0",
                      .measure = TypeAlert::Measure::kSuccessAtMost,
                      .threshold = 0,
                      .for_duration = 4h,
                      .long_window = false,
                      .summary = "Redis {probe} unreachable: every run failing for {for}",
                      .description =
                          "Success over the last {window} is {value}, sustained for {for}."}},
          .latency_baseline = true};
}

}  // namespace canaryd
