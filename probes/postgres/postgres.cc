#include "probes/postgres/postgres.h"

#include <fmt/format.h>
#include <libpq-fe.h>

#include <algorithm>
#include <atomic>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/secrets.h"
#include "probes/common/resolve.h"
#include "probes/postgres/postgres_wire.h"

namespace canaryd {

namespace {

// PQconnectPoll runs on its own pool: one step can be seconds of CPU (the
// server picks the SCRAM iteration count), and a pool shared with name
// lookups would let a hostile database stall every probe's DNS.
const WorkPool::Spec kConnectPool{"PostgreSQL connect steps", 8, 4096};
// PQcancel blocks, with no timeout of its own, until the server closes the
// cancel connection. The keepalive and user-timeout settings below bound it
// for a host that stopped answering; a server that accepts and never closes
// still holds a thread, so this pool is small and a cancel that finds it
// busy is skipped: the connection is just closed, and the server's
// statement_timeout (set to the probe's timeout) ends the query anyway.
const WorkPool::Spec kCancelPool{"PostgreSQL cancels", 2, 8};

struct PostgresOptions {
  // Every connection parameter from the DSN except those canaryd sets itself.
  std::vector<std::pair<std::string, std::string>> params;
  std::string host;  // empty or starting with '/' means a Unix socket: no DNS
  bool has_hostaddr = false;
  int port = 5432;
  std::string user;
  std::string dbname;
  std::string query = "SELECT 1";
  std::optional<std::string> expect;
  std::string password;  // a secret: global_secrets() redacts it from every message
};

// A uv_poll on one of libpq's sockets. libpq may close a socket and open a new
// one (often with the same number) inside PQconnectPoll, which libuv cannot
// notice; so each connect step gets a fresh watcher, closed before libpq can
// reuse the number.
struct SocketWatch {
  uv_poll_t poll;
  void* owner;
  static void close(SocketWatch* w) {
    uv_poll_stop(&w->poll);
    uv_close(reinterpret_cast<uv_handle_t*>(&w->poll),
             [](uv_handle_t* h) { delete static_cast<SocketWatch*>(h->data); });
  }
};

class PostgresProbe : public Probe {
 public:
  explicit PostgresProbe(PostgresOptions opts) : opts_(std::move(opts)) {}
  ~PostgresProbe() override { release(false); }

  // Probe
  void start(RunContext& ctx, Done done) override;
  CancelInfo cancel() override;
  std::string target() const override {
    std::string where = opts_.host.empty() ? "local socket" : opts_.host;
    return fmt::format("postgresql://{}@{}:{}/{}: {}", opts_.user, where, opts_.port, opts_.dbname,
                       opts_.query);
  }

 private:
  enum class Phase { kDns, kConnect, kQuery };

  void connect(const ResolvedAddresses& addrs);
  void watch(int events, void (*cb)(uv_poll_t*, int, int));
  static void on_connect_ready(uv_poll_t* h, int status, int events);
  static void on_query_ready(uv_poll_t* h, int status, int events);
  void connect_step();
  void on_connect_poll(PostgresPollingStatusType status);
  void send_query();
  void query_step(int events);
  void on_result(PGresult* res);
  ProbeResult connect_failure() const;
  // The connection broke during the query phase; `what` says doing what.
  ProbeResult lost_connection(std::string_view what) const;
  // A libpq or server text for a message: target_text() with its lines joined.
  static std::string scrub(std::string_view text);
  void finish(ProbeResult result);
  void release(bool cancel_query);

  PostgresOptions opts_;
  Done done_;
  uv_loop_t* loop_ = nullptr;
  LoopServices* services_ = nullptr;
  RunFault fail_;
  uint64_t timeout_ms_ = 0;
  AsyncResolve resolve_;
  PGconn* conn_ = nullptr;
  struct PollJob;
  std::shared_ptr<PollJob> job_;  // a PQconnectPoll on the connect pool
  uint64_t job_id_ = 0;
  SocketWatch* watch_ = nullptr;
  Phase phase_ = Phase::kDns;
  PhaseTimer phases_;
  std::optional<ProbeResult> result_;  // first result of the query, kept until libpq is done
};

void PostgresProbe::start(RunContext& ctx, Done done) {
  done_ = std::move(done);
  loop_ = ctx.loop;
  services_ = ctx.services;
  fail_ = ctx.fail;
  uint64_t now = uv_hrtime();
  timeout_ms_ = ctx.deadline_ns > now ? (ctx.deadline_ns - now) / 1'000'000 : 1;
  result_.reset();
  phases_.start(now);
  bool unix_socket = opts_.host.empty() || opts_.host.front() == '/';
  if (unix_socket || opts_.has_hostaddr) {
    connect({});
    return;
  }
  if (auto addr = numeric_address(opts_.host, opts_.port)) {
    connect({*addr});
    return;
  }
  // libpq resolves a host name by blocking; resolve off the loop and hand it
  // the addresses.
  phase_ = Phase::kDns;
  resolve_.start(ctx, opts_.host, opts_.port, [this](ResolvedAddresses found, std::string error) {
    uint64_t t = uv_hrtime();
    phases_.end("dns", t);
    if (found.empty()) {
      finish(ProbeResult::failure(
          Reason::kDns, fmt::format("cannot resolve {}: {}", opts_.host, error), phases_.phases()));
      return;
    }
    connect(found);
  });
}

void PostgresProbe::connect(const ResolvedAddresses& addrs) {
  phase_ = Phase::kConnect;
  std::vector<const char*> keys, values;
  std::string options;
  // With several addresses libpq tries each in turn, as curl does, until one
  // connects (not past an authentication failure); each needs its host
  // entry, for TLS verification.
  std::string hosts, hostaddrs;
  for (const auto& a : addrs) {
    hosts += (hosts.empty() ? "" : ",") + opts_.host;
    hostaddrs += (hostaddrs.empty() ? "" : ",") + a.ip;
  }
  bool has_keepalives = false, has_user_timeout = false;
  for (const auto& [k, v] : opts_.params) {
    if (k == "options") {
      options = v;
      continue;
    }
    if (k == "host" && !hosts.empty()) continue;
    has_keepalives = has_keepalives || k.rfind("keepalives", 0) == 0;
    has_user_timeout = has_user_timeout || k == "tcp_user_timeout";
    keys.push_back(k.c_str());
    values.push_back(v.c_str());
  }
  if (!hosts.empty()) {
    keys.push_back("host");
    values.push_back(hosts.c_str());
  }
  // PQcancel uses these too: a cancel to a host that stopped answering gives
  // up after about the probe's timeout instead of holding its thread for
  // TCP's retransmission schedule (minutes).
  std::string user_timeout = std::to_string(std::max<uint64_t>(timeout_ms_, 1000));
  if (!has_user_timeout) {
    keys.push_back("tcp_user_timeout");
    values.push_back(user_timeout.c_str());
  }
  if (!has_keepalives) {
    static constexpr const char* kKeepalives[][2] = {{"keepalives", "1"},
                                                     {"keepalives_idle", "1"},
                                                     {"keepalives_interval", "1"},
                                                     {"keepalives_count", "3"}};
    for (const auto& [k, v] : kKeepalives) {
      keys.push_back(k);
      values.push_back(v);
    }
  }
  // The server cancels the query itself if the probe's deadline passes, so a
  // timed-out run never leaves a busy session behind.
  if (!options.empty()) options += " ";
  options += fmt::format("-c statement_timeout={}", timeout_ms_);
  keys.push_back("options");
  values.push_back(options.c_str());
  if (!hostaddrs.empty()) {
    keys.push_back("hostaddr");
    values.push_back(hostaddrs.c_str());
  }
  keys.push_back(nullptr);
  values.push_back(nullptr);
  conn_ = PQconnectStartParams(keys.data(), values.data(), 0);
  if (conn_ == nullptr) {
    finish(ProbeResult::failure(Reason::kInternal, "libpq could not allocate a connection"));
    return;
  }
  // Notices are the server's text: libpq's default printer would write them
  // raw to stderr, one line per notice, for as many as the server sends.
  PQsetNoticeProcessor(
      conn_, [](void*, const char*) {}, nullptr);
  PQsetErrorVerbosity(conn_, PQERRORS_VERBOSE);
  if (PQstatus(conn_) == CONNECTION_BAD) {
    finish(connect_failure());
    return;
  }
  // PQconnectStart has begun connecting: wait until the socket is writable.
  watch(UV_WRITABLE, &PostgresProbe::on_connect_ready);
}

void PostgresProbe::on_connect_ready(uv_poll_t* h, int, int) {
  auto* self = static_cast<PostgresProbe*>(static_cast<SocketWatch*>(h->data)->owner);
  guarded(self->fail_, "a PostgreSQL connect callback", [self] { self->connect_step(); });
}

void PostgresProbe::on_query_ready(uv_poll_t* h, int status, int events) {
  auto* self = static_cast<PostgresProbe*>(static_cast<SocketWatch*>(h->data)->owner);
  guarded(self->fail_, "a PostgreSQL query callback",
          [self, status, events] { self->query_step(status < 0 ? UV_READABLE : events); });
}

void PostgresProbe::watch(int events, void (*cb)(uv_poll_t*, int, int)) {
  if (watch_ != nullptr) {
    SocketWatch::close(watch_);
    watch_ = nullptr;
  }
  int fd = PQsocket(conn_);
  if (fd < 0) {
    finish(ProbeResult::failure(Reason::kConnect, "libpq has no socket", phases_.phases()));
    return;
  }
  auto* w = new SocketWatch{{}, this};
  if (uv_poll_init_socket(loop_, &w->poll, fd) != 0) {
    delete w;
    finish(
        ProbeResult::failure(Reason::kInternal, "cannot watch libpq's socket", phases_.phases()));
    return;
  }
  w->poll.data = w;
  watch_ = w;
  uv_poll_start(&w->poll, events, cb);
}

// One PQconnectPoll step on the connect pool. A step can be pure CPU for
// milliseconds (the client's SCRAM proof is 4,096 rounds of PBKDF2 by
// default, and the server picks the count), which on the loop would delay
// every other probe. libpq allows a connection to be used from another thread
// as long as only one thread uses it at a time.
struct PostgresProbe::PollJob {
  PGconn* conn = nullptr;
  PostgresPollingStatusType status = PGRES_POLLING_FAILED;
  // Null once the probe gave the connection up: it is then the job's to
  // close, on whichever thread lets go of the job last.
  std::atomic<PostgresProbe*> owner{nullptr};
  ~PollJob() {
    if (owner.load() == nullptr && conn != nullptr) PQfinish(conn);
  }
};

void PostgresProbe::connect_step() {
  // Close this step's watcher before libpq may close and reopen its socket.
  if (watch_ != nullptr) {
    SocketWatch::close(watch_);
    watch_ = nullptr;
  }
  if (auto refusal = absurd_scram_challenge(conn_)) {
    finish(ProbeResult::failure(Reason::kAuth, *refusal, phases_.phases()));
    return;
  }
  auto job = std::make_shared<PollJob>();
  job->conn = conn_;
  job->owner = this;
  job_ = job;
  job_id_ = services_->pool(kConnectPool)
                .submit([job] { job->status = PQconnectPoll(job->conn); },
                        [job] {
                          PostgresProbe* owner = job->owner.load();
                          if (owner == nullptr) return;  // cancelled meanwhile
                          owner->job_.reset();
                          owner->on_connect_poll(job->status);
                        },
                        fail_);
  if (job_id_ == 0) {
    job_.reset();
    finish(ProbeResult::failure(
        Reason::kInternal, "canaryd's PostgreSQL connect steps are backed up", phases_.phases()));
  }
}

void PostgresProbe::on_connect_poll(PostgresPollingStatusType status) {
  switch (status) {
    case PGRES_POLLING_READING:
      watch(UV_READABLE, &PostgresProbe::on_connect_ready);
      return;
    case PGRES_POLLING_WRITING:
      watch(UV_WRITABLE, &PostgresProbe::on_connect_ready);
      return;
    case PGRES_POLLING_OK: {
      uint64_t t = uv_hrtime();
      phases_.end("connect", t);
      send_query();
      return;
    }
    default:
      finish(connect_failure());
      return;
  }
}

void PostgresProbe::send_query() {
  phase_ = Phase::kQuery;
  PQsetnonblocking(conn_, 1);
  if (!PQsendQuery(conn_, opts_.query.c_str())) {
    finish(lost_connection("cannot send the query: "));
    return;
  }
  watch(UV_READABLE | UV_WRITABLE, &PostgresProbe::on_query_ready);
}

void PostgresProbe::query_step(int events) {
  if (events & UV_WRITABLE) {
    int f = PQflush(conn_);
    if (f < 0) {
      finish(lost_connection(""));
      return;
    }
    if (f == 0) uv_poll_start(&watch_->poll, UV_READABLE, watch_->poll.poll_cb);
  }
  if (!(events & UV_READABLE)) return;
  if (!PQconsumeInput(conn_)) {
    finish(lost_connection("connection lost: "));
    return;
  }
  while (!PQisBusy(conn_)) {
    PGresult* res = PQgetResult(conn_);
    if (res == nullptr) {
      // Every result has arrived.
      ProbeResult r = result_ ? std::move(*result_)
                              : ProbeResult::failure(Reason::kQuery, "the query returned nothing");
      r.phases = phases_.phases();
      finish(std::move(r));
      return;
    }
    on_result(res);
    PQclear(res);
  }
}

void PostgresProbe::on_result(PGresult* res) {
  if (result_ && !result_->success) return;  // the first failure is the one that matters
  uint64_t t = uv_hrtime();
  auto status = PQresultStatus(res);
  if (status == PGRES_TUPLES_OK || status == PGRES_COMMAND_OK) {
    if (result_) return;  // the first statement's rows are what `expect` checks
    phases_.end("query", t);
    phases_.end_run(t);
    if (opts_.expect) {
      if (status != PGRES_TUPLES_OK || PQntuples(res) == 0 || PQnfields(res) == 0) {
        result_ = ProbeResult::failure(
            Reason::kAssertion,
            fmt::format("the query returned no rows, expected \"{}\"", *opts_.expect));
        return;
      }
      std::string got = PQgetisnull(res, 0, 0) ? "null" : PQgetvalue(res, 0, 0);
      if (got != *opts_.expect) {
        got = target_text(got, 80);
        result_ = ProbeResult::failure(
            Reason::kAssertion,
            scrub(fmt::format("the query returned \"{}\", expected \"{}\"", got, *opts_.expect)));
        return;
      }
    }
    result_ = ProbeResult::ok();
    return;
  }
  const char* sqlstate = PQresultErrorField(res, PG_DIAG_SQLSTATE);
  const char* primary = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
  std::string message = primary ? primary : PQresultErrorMessage(res);
  std::string code = sqlstate ? sqlstate : "";
  if (code == "57014") {
    // The server's statement_timeout (set to the probe's timeout) fired just
    // before our own deadline: it is the same timeout.
    ProbeResult r =
        ProbeResult::failure(Reason::kTimeout, "the query timed out (statement_timeout)");
    r.details.timeout_phase = "query";
    result_ = std::move(r);
    return;
  }
  // An error without a SQLSTATE is libpq's own: the server broke the protocol.
  Reason reason = code.rfind("28", 0) == 0                       ? Reason::kAuth
                  : code.empty() && libpq_says_protocol(message) ? Reason::kProtocol
                                                                 : Reason::kQuery;
  // Each server text on its own, so a long message cannot push the code out.
  result_ = ProbeResult::failure(
      reason, fmt::format("query failed: {}{}", scrub(message),
                          code.empty() ? "" : " (SQLSTATE " + target_text(code, 16) + ")"));
}

ProbeResult PostgresProbe::lost_connection(std::string_view what) const {
  std::string msg = PQerrorMessage(conn_);
  take_sqlstate(msg);
  Reason reason = libpq_says_protocol(msg) ? Reason::kProtocol : Reason::kConnect;
  return ProbeResult::failure(reason, scrub(std::string(what) + msg), phases_.phases());
}

ProbeResult PostgresProbe::connect_failure() const {
  std::string msg = conn_ != nullptr ? PQerrorMessage(conn_) : "unknown error";
  std::string code = take_sqlstate(msg);
  while (!msg.empty() && (msg.back() == '\n' || msg.back() == ' ')) msg.pop_back();
  // libpq (in the C locale canaryd runs in) says what went wrong only in text.
  auto has = [&](const char* s) { return msg.find(s) != std::string::npos; };
  Reason reason = Reason::kConnect;
  // Authentication first: with several addresses, an earlier one may have
  // refused before the one that answered rejected the credentials.
  // SQLSTATE class 28 is "invalid authorization specification"; the phrases
  // are libpq's own refusals (a method it cannot do, no password to send).
  if (code.rfind("28", 0) == 0 || has("password authentication failed") ||
      has("no pg_hba.conf entry") || (has("role \"") && has("does not exist")) ||
      has("authentication failed") || has("no password supplied") || has("password is required") ||
      has("authentication method") || has("authentication not supported")) {
    reason = Reason::kAuth;
  } else if (has("Connection refused")) {
    reason = Reason::kConnectRefused;
  } else if (libpq_says_protocol(msg)) {
    reason = Reason::kProtocol;
  }
  if (!code.empty()) msg += " (SQLSTATE " + code + ")";
  std::string text = reason == Reason::kConnectRefused ? "connection refused" : scrub(msg);
  // libpq repeats the address in front of the error; keep the message short.
  return ProbeResult::failure(reason, text, phases_.phases());
}

std::string PostgresProbe::scrub(std::string_view text) {
  // libpq writes one fact per line ("...failed: FATAL: ...\n\tIs the server
  // running...?"): spaces read better there than visible "\n\t" escapes.
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.remove_suffix(1);
  return target_text(text, kTargetTextBytes, LineBreaks::kSpace);
}

void PostgresProbe::release(bool cancel_query) {
  resolve_.cancel();
  if (watch_ != nullptr) {
    SocketWatch::close(watch_);
    watch_ = nullptr;
  }
  if (job_ != nullptr) {
    // A connect step that has not started is simply dropped; one running on
    // the pool closes the connection when it returns.
    if (!services_->pool(kConnectPool).unqueue(job_id_)) {
      job_->owner = nullptr;
      conn_ = nullptr;
    }
    job_.reset();
  }
  if (conn_ == nullptr) return;
  if (cancel_query && phase_ == Phase::kQuery) {
    // Ask the server to cancel the running query. PQcancel opens a connection
    // and blocks, so it runs on the cancel pool, never on the loop. When that
    // pool is busy (see kCancelPool) the cancel is skipped.
    if (PGcancel* c = PQgetCancel(conn_)) {
      std::shared_ptr<PGcancel> cancel(c, &PQfreeCancel);
      services_->pool(kCancelPool)
          .submit(
              [cancel] {
                char err[256];
                PQcancel(cancel.get(), err, sizeof err);
              },
              [] {});
    }
  }
  PQfinish(conn_);
  conn_ = nullptr;
}

void PostgresProbe::finish(ProbeResult result) {
  release(false);
  call_done(done_, std::move(result));
}

CancelInfo PostgresProbe::cancel() {
  static constexpr const char* kNames[] = {"dns", "connect", "query"};
  CancelInfo info;
  info.phase = kNames[static_cast<int>(phase_)];
  info.phases = phases_.phases();
  release(true);
  done_ = nullptr;
  return info;
}

}  // namespace

static std::vector<Reason> postgres_probe_reasons() {
  return {Reason::kTimeout, Reason::kDns,       Reason::kConnectRefused,
          Reason::kConnect, Reason::kAuth,      Reason::kProtocol,
          Reason::kQuery,   Reason::kAssertion, Reason::kInternal};
}

static std::vector<std::string_view> postgres_probe_phases() {
  return {"dns", "connect", "query", "total"};
}

static ProbePtr make_postgres_probe(const ProbeSpec& /*spec*/, YamlSection& s) {
  PostgresOptions o;
  size_t errors_before = s.context().errors->size();
  auto dsn = s.get_string("dsn");
  if (!dsn) {
    if (!s.has("dsn")) s.error("", "missing required key dsn");
  } else {
    char* err = nullptr;
    PQconninfoOption* opts = PQconninfoParse(dsn->c_str(), &err);
    if (opts == nullptr) {
      // libpq's message quotes the text around the problem, which may be the
      // password: say what is wrong without it.
      PQfreemem(err);
      s.error("dsn",
              "not a valid libpq connection string (key=value pairs or a postgresql:// URI)");
    } else {
      for (PQconninfoOption* o2 = opts; o2->keyword != nullptr; ++o2) {
        if (o2->val == nullptr || o2->val[0] == '\0') continue;
        std::string k = o2->keyword, v = o2->val;
        if (k == "host") o.host = v;
        if (k == "hostaddr") o.has_hostaddr = true;
        if (k == "user") o.user = v;
        if (k == "dbname") o.dbname = v;
        if (k == "password") o.password = v;
        if (k == "port") {
          try {
            o.port = std::stoi(v);
          } catch (...) {
            s.error("dsn", "the port in the DSN is not a number");
          }
        }
        o.params.emplace_back(k, v);
      }
      PQconninfoFree(opts);
      if (o.host.find(',') != std::string::npos)
        s.error("dsn", "the DSN names several hosts; use one probe per host");
      if (o.user.empty()) s.error("dsn", "the DSN must name a user");
      if (o.dbname.empty()) o.dbname = o.user;
      // The password is a secret even when the DSN was written inline.
      if (!o.password.empty()) s.context().secrets->add(o.password);
      o.params.emplace_back("fallback_application_name", "canaryd");
    }
  }
  if (auto q = s.get_string("query")) {
    if (q->empty()) {
      s.error("query", "the query is empty");
    } else {
      o.query = *q;
    }
  }
  o.expect = s.get_string("expect");
  if (auto mode = s.get_string("sslmode")) {
    static const std::vector<std::string> modes = {"disable", "allow",     "prefer",
                                                   "require", "verify-ca", "verify-full"};
    if (std::find(modes.begin(), modes.end(), *mode) == modes.end()) {
      s.error("sslmode", fmt::format("unknown sslmode \"{}\" (use disable, allow, prefer, "
                                     "require, verify-ca or verify-full)",
                                     *mode));
    } else {
      std::erase_if(o.params, [](const auto& p) { return p.first == "sslmode"; });
      o.params.emplace_back("sslmode", *mode);
    }
  }
  s.finish();
  if (s.context().errors->size() != errors_before) return nullptr;
  return std::make_unique<PostgresProbe>(std::move(o));
}

ProbeType postgres_probe_type() {
  using namespace std::chrono_literals;
  return {
      .name = "postgres",
      .reasons = postgres_probe_reasons(),
      .phases = postgres_probe_phases(),
      .make = &make_postgres_probe,
      .alerts = {{.key = "database_latency_critical",
                  .name = "CanaryDatabaseLatencyCritical",
                  .severity = "P0",
                  .measure = TypeAlert::Measure::kMeanSecondsAbove,
                  .threshold = 10,
                  .for_duration = 5min,
                  .long_window = false,
                  .summary = "Database {probe} responding in more than {threshold}",
                  .description =
                      "Mean run time over the last {window} is {value} (threshold {threshold})."},
                 {.key = "database_latency_high",
                  .name = "CanaryDatabaseLatencyHigh",
                  .severity = "P1",
                  .measure = TypeAlert::Measure::kMeanSecondsAbove,
                  .threshold = 5,
                  .for_duration = 10min,
                  .long_window = false,
                  .summary = "Database {probe} responding in more than {threshold}",
                  .description =
                      "Mean run time over the last {window} is {value} (threshold {threshold})."}},
      .latency_baseline = true};
}

}  // namespace canaryd
