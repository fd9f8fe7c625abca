// Hostile text from targets, as a user meets it: a secret quoted by a server,
// a megabyte-long error with a forged log line, a certificate that never
// expires, and a state document from another version. Servers are real
// (tests/fixtures/hostile_wire.py, the fake platform) on 127.0.0.1.
#include <fmt/format.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <ctime>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>

#include "tests/support/harness.h"

using namespace canaryd::test;
using namespace std::chrono_literals;
using nlohmann::json;

namespace {

// One mode of tests/fixtures/hostile_wire.py on a free port.
class HostileWire {
 public:
  explicit HostileWire(std::vector<std::string> mode_args) : port_(free_port()) {
    std::vector<std::string> argv = {python3(), source_dir() + "/tests/fixtures/hostile_wire.py",
                                     "--port", std::to_string(port_)};
    argv.insert(argv.end(), mode_args.begin(), mode_args.end());
    process_ = std::make_unique<Process>(argv);
    if (!wait_for_port(port_)) throw std::runtime_error("hostile_wire: " + process_->describe());
  }
  int port() const { return port_; }
  std::string address() const { return fmt::format("127.0.0.1:{}", port_); }
  std::string url() const { return "http://" + address(); }

 private:
  int port_;
  std::unique_ptr<Process> process_;
};

// Timeouts are generous: a loaded test machine must not turn a result into a
// timeout. Runs come every 2 s.
std::string config_with(const std::string& listen, const std::string& probes) {
  return fmt::format(
      "global:\n  listen: \"{}\"\n  defaults: {{interval: 2s, timeout: 2s}}\nprobes:\n{}", listen,
      probes);
}

// Every piece of `secret` of 4 characters or more that `text` contains.
std::vector<std::string> secret_pieces_in(const std::string& text, const std::string& secret) {
  std::vector<std::string> found;
  for (size_t i = 0; i + 4 <= secret.size(); ++i) {
    std::string piece = secret.substr(i, 4);
    if (text.find(piece) != std::string::npos) found.push_back(piece);
  }
  return found;
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

// The daemon with extra command-line flags (e.g. --log-format json), started
// like the harness's Daemon: ready once /-/ready answers 200.
struct DaemonWithFlags {
  DaemonWithFlags(const std::string& probes, std::vector<std::string> flags)
      : port(free_port()),
        config(dir.write_file("canaryd.yaml",
                              config_with(fmt::format("127.0.0.1:{}", port), probes))) {
    std::vector<std::string> argv = {canaryd_bin(), "run", "--config", config};
    argv.insert(argv.end(), flags.begin(), flags.end());
    process = std::make_unique<Process>(argv, std::vector<std::string>{}, dir.path());
    bool ready = wait_until(
        [&] { return !process->running() || http_get(base_url() + "/-/ready", 2s).status == 200; });
    if (!ready || !process->running())
      throw std::runtime_error("canaryd not ready: " + process->describe());
  }
  std::string base_url() const { return fmt::format("http://127.0.0.1:{}", port); }
  double runs(const std::string& probe) {
    auto v = metric_value(http_get(base_url() + "/metrics").body, "canary_probe_runs_total",
                          {{"probe", probe}});
    return v.value_or(0);
  }

  TempDir dir;
  int port;
  std::string config;
  std::unique_ptr<Process> process;
};

}  // namespace

TEST_CASE("text: a Redis error that quotes the password shows no piece of it",
          "[text][redis][secrets]") {
  const std::string password = random_token(20);
  // 63 bytes in: where a clip of the reply before redaction (77 bytes) left
  // 14 of the password's 20 characters in view.
  HostileWire wire({"redis-auth-quote", "--password", password, "--offset", "63"});
  const std::string probes = fmt::format(
      "  - name: quoted\n    type: redis\n    redis:\n      address: \"{}\"\n"
      "      password: \"${{env:CANARYD_TEST_REDIS_PW}}\"\n",
      wire.address());
  const std::vector<std::string> env = {"CANARYD_TEST_REDIS_PW=" + password};

  TempDir dir;
  const std::string config_path =
      dir.write_file("once.yaml", config_with("127.0.0.1:9464", probes));
  auto once = run_command({canaryd_bin(), "once", "--config", config_path, "--json"}, 60s, env);
  INFO(once.out << once.err);
  CHECK(once.exit_code == 1);
  json out = json::parse(once.out, nullptr, false);
  REQUIRE_FALSE(out.is_discarded());
  CHECK(once_reason(out, "quoted") == "auth");
  CHECK(secret_pieces_in(once.out, password).empty());
  CHECK(secret_pieces_in(once.err, password).empty());

  Daemon d(config_with("{{listen}}", probes), env);
  REQUIRE(wait_until([&] { return has_run(d, "quoted", 2); }, 60s));
  const std::string state = d.state().dump();
  INFO(state);
  CHECK(d.state("quoted")["last"]["reason"] == "auth");
  CHECK(secret_pieces_in(state, password).empty());
  CHECK(secret_pieces_in(d.metrics(), password).empty());
  d.process().stop();
  const std::string log = d.process().stderr_text();
  INFO(log);
  CHECK(log.find("probe quoted is failing") != std::string::npos);
  CHECK(secret_pieces_in(log, password).empty());
}

namespace {

// A PostgreSQL probe against hostile_wire's postgres-error mode; `database`
// picks when the 1 MiB error comes (see the fixture).
std::string postgres_probe(const std::string& name, const HostileWire& wire,
                           const std::string& database) {
  return fmt::format(
      "  - name: {}\n    type: postgres\n    postgres:\n"
      "      dsn: \"host=127.0.0.1 port={} user=canary dbname={} sslmode=disable\"\n",
      name, wire.port(), database);
}

// A WebSocket probe whose server greets with the forged line, ESC and CR.
std::string websocket_probe(const std::string& name, FakePlatform& fp) {
  const std::string greeting =
      "boom%0A2030-01-01T00:00:00.000Z%20info%20%20probe%20X%20recovered"
      "%1B%5B2J%0D";
  return fmt::format(
      "  - name: {}\n    type: websocket\n    websocket:\n      url: \"ws://127.0.0.1:{}/ws?"
      "greeting={}\"\n      expect: {{text: hello}}\n",
      name, fp.http_port(), greeting);
}

// What the text log must never show: a line that is not canaryd's own (a
// forged "2030-..." line), or a raw ESC or CR that a terminal would obey.
void check_text_log(const std::string& log) {
  CHECK(log.find('\x1b') == std::string::npos);
  CHECK(log.find('\r') == std::string::npos);
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  const std::string year = std::to_string(1900 + tm.tm_year) + "-";
  for (const auto& line : lines_of(log)) {
    INFO(line.substr(0, 300));
    CHECK(line.rfind("2030-", 0) != 0);
    CHECK(line.rfind(year, 0) == 0);  // every line is one of canaryd's, with today's time
  }
}

}  // namespace

TEST_CASE("text: a megabyte-long PostgreSQL error stays small, one line and valid JSON",
          "[text][postgres]") {
  HostileWire wire({"postgres-error"});
  FakePlatform fp;
  const std::string probes = postgres_probe("pg-startup", wire, "startup") +
                             postgres_probe("pg-query", wire, "query") +
                             websocket_probe("ws-greeting", fp);

  // once: every message is bounded and one line, and the output stays small.
  TempDir dir;
  const std::string config_path =
      dir.write_file("once.yaml", config_with("127.0.0.1:9464", probes));
  auto once = run_command({canaryd_bin(), "once", "--config", config_path, "--json"});
  INFO(once.err.substr(0, 2000));
  CHECK(once.exit_code == 1);
  CHECK(once.out.size() < 64 * 1024);
  json out = json::parse(once.out, nullptr, false);
  REQUIRE_FALSE(out.is_discarded());
  for (const char* name : {"pg-startup", "pg-query", "ws-greeting"}) {
    json r = result_of(out, name);
    INFO(r.dump());
    CHECK(r["success"] == false);
    const std::string message = r["message"].get<std::string>();
    CHECK(message.size() <= 1024);
    CHECK(message.find_first_of("\n\r\x1b") == std::string::npos);
    // The server's text is quoted, its forged line and ESC shown as text.
    CHECK(message.find("2030-01-01T00:00:00.000Z info  probe X recovered") != std::string::npos);
    CHECK(message.find("\\x1b[2J") != std::string::npos);
  }
  auto table = run_command({canaryd_bin(), "once", "--config", config_path});
  CHECK(table.exit_code == 1);
  CHECK(table.out.size() < 64 * 1024);
  check_text_log(table.err);

  // The daemon: the state API (with its history) stays small, and the text log
  // has no forged line and no raw control character.
  {
    DaemonWithFlags d(probes, {});
    REQUIRE(wait_until(
        [&] {
          return d.runs("pg-startup") >= 3 && d.runs("pg-query") >= 3 && d.runs("ws-greeting") >= 3;
        },
        60s));
    auto state = http_get(d.base_url() + "/api/v1/state");
    CHECK(state.status == 200);
    CHECK(state.body.size() < 64 * 1024);
    CHECK_FALSE(json::parse(state.body, nullptr, false).is_discarded());
    d.process->stop();
    const std::string log = d.process->stderr_text();
    CHECK(log.find("probe pg-query is failing") != std::string::npos);
    CHECK(log.size() < 64 * 1024);
    check_text_log(log);
  }

  // The JSON log: every line is valid JSON (nlohmann rejects invalid UTF-8).
  {
    DaemonWithFlags d(probes, {"--log-format", "json"});
    REQUIRE(wait_until([&] { return d.runs("pg-query") >= 2 && d.runs("pg-startup") >= 2; }, 60s));
    d.process->stop();
    const std::string log = d.process->stderr_text();
    size_t failing_lines = 0;
    for (const auto& line : lines_of(log)) {
      INFO(line.substr(0, 300));
      json j = json::parse(line, nullptr, false);
      REQUIRE_FALSE(j.is_discarded());
      CHECK(j.is_object());
      if (j.value("msg", "").find("is failing") != std::string::npos) ++failing_lines;
    }
    CHECK(failing_lines >= 3);
  }
}

TEST_CASE("text: a certificate valid until 9999-12-31 is reported as such", "[text][tls]") {
  TempDir dir;
  // Self-signed, localhost and 127.0.0.1, expiring on 9999-12-31 (openssl
  // 3.0's req has no end date option, only a number of days).
  const auto today = std::chrono::floor<std::chrono::days>(std::chrono::system_clock::now());
  const auto last_day = std::chrono::sys_days(std::chrono::year(9999) / 12 / 31);
  const long days = (last_day - today).count();
  const std::string cert = dir.file("forever.pem"), key = dir.file("forever.key");
  auto made = run_command(
      {"openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
       "-keyout", key, "-out", cert, "-subj", "/CN=localhost", "-addext",
       "subjectAltName=DNS:localhost,IP:127.0.0.1", "-days", std::to_string(days)});
  INFO(made.err);
  REQUIRE(made.exit_code == 0);
  auto end_date = run_command({"openssl", "x509", "-noout", "-enddate", "-in", cert});
  REQUIRE(end_date.out.find("9999 GMT") != std::string::npos);

  FakePlatform::Options opts;
  opts.tls.emplace_back("forever", cert, key);
  FakePlatform fp(opts);
  const int port = fp.tls_port("forever");
  const std::string probes = fmt::format(
      "  - name: https-forever\n    type: http\n    timeout: 5s\n    interval: 5s\n    http:\n"
      "      url: \"https://127.0.0.1:{0}/health\"\n      tls: {{ca_file: \"{1}\"}}\n"
      "  - name: wss-forever\n    type: websocket\n    timeout: 5s\n    interval: 5s\n"
      "    websocket:\n"
      "      url: \"wss://127.0.0.1:{0}/ws\"\n      tls: {{ca_file: \"{1}\"}}\n",
      port, cert);

  const std::string config_path =
      dir.write_file("once.yaml", config_with("127.0.0.1:9464", probes));
  auto once = run_command({canaryd_bin(), "once", "--config", config_path, "--json"});
  INFO(once.out << once.err);
  CHECK(once.exit_code == 0);
  CHECK(once.err.find("runtime error") == std::string::npos);  // UBSan's report
  json out = json::parse(once.out, nullptr, false);
  REQUIRE_FALSE(out.is_discarded());
  for (const char* name : {"https-forever", "wss-forever"}) {
    json expiry = detail(result_of(out, name), "cert_expiry");
    INFO(name << ": " << expiry.dump());
    REQUIRE(expiry.is_string());
    CHECK(expiry.get<std::string>().rfind("9999-12-31T", 0) == 0);
  }

  Daemon d(config_with("{{listen}}", probes));
  REQUIRE(
      wait_until([&] { return has_run(d, "https-forever") && has_run(d, "wss-forever"); }, 60s));
  const std::string metrics = d.metrics();
  for (const char* name : {"https-forever", "wss-forever"}) {
    auto v = metric_value(metrics, "canary_tls_cert_expiry_timestamp_seconds", {{"probe", name}});
    INFO(name);
    REQUIRE(v.has_value());
    CHECK(*v >= 253402214400.0);  // 9999-12-31T00:00:00Z
    CHECK(*v < 253402300800.0);   // 10000-01-01T00:00:00Z
  }
  CHECK(d.state("https-forever")["last"]["details"]["cert_expiry"].get<std::string>().rfind(
            "9999-12-31T", 0) == 0);
  d.process().stop();
  CHECK(d.process().stderr_text().find("runtime error") == std::string::npos);
}

TEST_CASE("text: canaryd status shows what a state document lacking keys has", "[text][cli]") {
  TempDir dir;
  int documents = 0;
  auto status_of = [&](const std::string& body, std::vector<std::string> flags = {}) {
    const std::string file = dir.write_file(fmt::format("state{}.json", ++documents), body);
    HostileWire wire({"http-state", "--body-file", file});
    std::vector<std::string> argv = {canaryd_bin(), "status", "--url", wire.url()};
    argv.insert(argv.end(), flags.begin(), flags.end());
    return run_command(argv);
  };

  // No summary, no config, probes lacking status, last, timings or success,
  // and values of the wrong type or out of range.
  auto failing = status_of(R"({"probes": [
      {"name": "alpha"},
      {"name": "beta", "status": "failing", "last": {"reason": "timeout"},
       "failing_for_seconds": 1e300},
      {"name": "gamma", "status": "passing", "last": {}, "passing_for_seconds": "soon"},
      {"name": "delta", "status": "failing",
       "last": {"success": "no", "message": "boom\n2030-01-01 forged\u001b[2J"}},
      7,
      {"last": "not an object"}
    ]})");
  INFO(failing.out << failing.err);
  CHECK(failing.exit_code == 1);
  for (const char* name : {"alpha", "beta", "gamma", "delta"})
    CHECK(failing.out.find(name) != std::string::npos);
  CHECK(failing.out.find('\x1b') == std::string::npos);
  for (const auto& line : lines_of(failing.out)) CHECK(line.rfind("2030-", 0) != 0);

  auto passing = status_of(R"({"probes": [{"name": "solo", "status": "passing"}],
                               "summary": {"probes": 1}})");
  INFO(passing.out << passing.err);
  CHECK(passing.exit_code == 0);
  CHECK(passing.out.find("solo") != std::string::npos);

  auto json_mode = status_of(R"({"probes": [{"name": "solo"}]})", {"--json"});
  CHECK(json_mode.exit_code == 0);
  CHECK_FALSE(json::parse(json_mode.out, nullptr, false).is_discarded());

  // Not a state document at all: "cannot ask" (2), never a crash.
  auto not_state = status_of(R"({"probes": {"name": "solo"}})");
  CHECK(not_state.exit_code == 2);
  CHECK(not_state.err.find("without a state document") != std::string::npos);
}
