// The command line's contract: verbs, exit codes and the shipped configs.
#include <fmt/format.h>

#include <catch2/catch.hpp>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "tests/support/harness.h"

using namespace canaryd::test;

namespace {
// A shipped config with every occurrence of `from` (a path it expects to
// exist on a real host) pointed at `to`.
std::string shipped_config(const std::string& name, const std::string& from,
                           const std::string& to) {
  std::ifstream in(source_dir() + "/config/" + name);
  std::stringstream ss;
  ss << in.rdbuf();
  std::string text = ss.str();
  for (size_t pos; (pos = text.find(from)) != std::string::npos;)
    text.replace(pos, from.size(), to);
  return text;
}

FakePlatform& platform() {
  static FakePlatform fp;
  return fp;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// xmllint's answer to an XPath expression over `file` (a count or a string).
std::string xpath(const std::string& file, const std::string& expr) {
  auto r = run_command({"xmllint", "--xpath", expr, file});
  std::string out = r.out;
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
  return out;
}

// "" if `file` is valid against the repository's JUnit schema, else xmllint's complaint.
std::string junit_schema_errors(const std::string& file) {
  auto r = run_command(
      {"xmllint", "--noout", "--schema", source_dir() + "/tests/junit/junit.xsd", file});
  return r.exit_code == 0 ? "" : r.err + r.out;
}

std::string http_probe(const std::string& name, const std::string& url,
                       const std::string& extra = "") {
  return fmt::format(
      "  - name: {}\n    type: http\n    category: gate\n    timeout: 3s\n"
      "    http: {{url: \"{}\"{}}}\n",
      name, url, extra);
}
}  // namespace

TEST_CASE("version and help flags", "[cli]") {
  auto v = run_command({canaryd_bin(), "--version"});
  CHECK(v.exit_code == 0);
  CHECK(v.out == "canaryd 0.1.0\n");
  auto h = run_command({canaryd_bin(), "--help"});
  CHECK(h.exit_code == 0);
  for (const char* verb : {"run", "check-config", "once", "status"}) {
    INFO(verb);
    CHECK(h.out.find(verb) != std::string::npos);
  }
  auto bad = run_command({canaryd_bin(), "frobnicate"});
  CHECK(bad.exit_code == 2);
}

TEST_CASE("check-config: exit 0 for the shipped configs, 1 with file:line: key for a bad one",
          "[cli]") {
  TempDir dir;
  // The demo config points at files the demo script creates (certificates,
  // DSN files) and an environment variable it sets; give it those.
  make_certs(dir);
  dir.write_file("pg.dsn", "host=127.0.0.1 port=15432 user=canary password=x dbname=postgres\n");
  dir.write_file("pg-wrong.dsn", "host=127.0.0.1 port=15432 user=canary password=y\n");
  dir.write_file("ws.jwt", "demo0123456789abcdef\n");
  std::string demo = shipped_config("demo.yaml", "/tmp/canaryd-demo", dir.path());
  std::string demo_path = dir.write_file("demo.yaml", demo);
  auto ok = run_command({canaryd_bin(), "check-config", demo_path}, std::chrono::seconds(30),
                        {"CANARYD_DEMO_REDIS_PASSWORD=demo", "CANARYD_DEMO_BYPASS_KEY=bypass"});
  INFO(ok.err);
  CHECK(ok.exit_code == 0);
  CHECK(ok.out.find("OK") != std::string::npos);

  // The example reads its DSN from /etc/canaryd; point it at a file we own.
  dir.write_file("jwt", "example.jwt.token\n");
  std::string example_text = shipped_config("example.yaml", "/etc/canaryd", dir.path());
  std::string example_path = dir.write_file("example.yaml", example_text);
  auto example =
      run_command({canaryd_bin(), "check-config", example_path}, std::chrono::seconds(30),
                  {"REDIS_PASSWORD=example-redis", "CANARYD_API_TOKEN=example-token",
                   "CANARYD_AUTH_BYPASS_KEY=example-key"});
  INFO(example.err);
  CHECK(example.exit_code == 0);

  std::string bad = dir.write_file("bad.yaml",
                                   "probes:\n  - name: a\n    type: http\n    http:\n      url: "
                                   "http://127.0.0.1/\n      methd: GET\n");
  auto r = run_command({canaryd_bin(), "check-config", bad});
  CHECK(r.exit_code == 1);
  CHECK(r.err == bad + ":6: probes[0].http.methd: unknown key\n");

  auto missing = run_command({canaryd_bin(), "check-config", dir.file("nope.yaml")});
  CHECK(missing.exit_code == 1);
  CHECK(missing.err.find("cannot read config") != std::string::npos);
}

TEST_CASE("rules: prints rule groups, honours a switched-off alert, and needs no probe secrets",
          "[cli][alerting]") {
  TempDir dir;
  // The probe's secret is not set: rule generation reads only global: and alerting:.
  std::string path = dir.write_file("c.yaml",
                                    "global:\n  labels: {env: prod}\n"
                                    "probes:\n  - name: cache\n    type: redis\n"
                                    "    redis: {address: \"127.0.0.1:6379\", password: "
                                    "\"${env:CANARYD_TEST_UNSET_SECRET}\"}\n"
                                    "alerting:\n  short_window: 2m\n  rules:\n"
                                    "    latency_p95_high: {enabled: false}\n"
                                    "    redis_down: {for: 30m, severity: P1}\n");
  auto r = run_command({canaryd_bin(), "rules", "--config", path});
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  CHECK(r.out.find("groups:") != std::string::npos);
  CHECK(r.out.find("canary:probe_success:ratio_2m") != std::string::npos);
  // Each replica on its own, the probe by its best one; the global labels kept.
  CHECK(r.out.find("sum by (probe, type, category, env, instance)") != std::string::npos);
  CHECK(r.out.find("max by (probe, type, category, env) (canary:replica_probe_success:ratio_2m)") !=
        std::string::npos);
  CHECK(r.out.find("CanaryLatencyP95High") == std::string::npos);
  auto redis = r.out.find("alert: CanaryRedisDown");
  REQUIRE(redis != std::string::npos);
  CHECK(r.out.find("for: 30m", redis) < r.out.find("alert:", redis + 1));
  CHECK(r.out.find("severity: P1", redis) < r.out.find("alert:", redis + 1));

  std::string bad = dir.write_file("bad.yaml", "probes: []\nalerting:\n  min_runs: zero\n");
  auto b = run_command({canaryd_bin(), "rules", "--config", bad});
  CHECK(b.exit_code == 1);
  CHECK(b.err.find("alerting.min_runs") != std::string::npos);
}

TEST_CASE("once --junit: a schema-valid report, one testcase per probe, nothing secret",
          "[cli][junit]") {
  auto& fp = platform();
  TempDir dir;
  const std::string secret = random_token(24);
  // The target answers with JSON quoting the secret (sent in its URL) among
  // markup and a control character: hostile text that must reach the report
  // redacted and escaped.
  const std::string hostile_url = fp.url(
      "/hostile?mode=json&body=%7B%22status%22%3A%22${env:CANARYD_JUNIT_SECRET}%20"
      "%3C%2Ftestcase%3E%26%5D%5D%3E%20%5Cu001b%22%7D");
  const std::string config =
      "probes:\n" + http_probe("up", fp.url("/health")) +
      http_probe("down-500", fp.url("/health?mode=error")) +
      http_probe("hostile", hostile_url, ", expect: {json: {status: healthy}}") +
      http_probe("refused", fmt::format("http://127.0.0.1:{}/health", free_port()));
  const std::string config_path = dir.write_file("c.yaml", config);
  const std::string report = dir.file("report.xml");
  auto r =
      run_command({canaryd_bin(), "once", "--config", config_path, "--json", "--junit", report},
                  std::chrono::seconds(30), {"CANARYD_JUNIT_SECRET=" + secret});
  INFO(r.out << r.err);
  CHECK(r.exit_code == 1);  // as without --junit: a probe failed
  auto out = nlohmann::json::parse(r.out, nullptr, false);
  REQUIRE(!out.is_discarded());
  const std::string xml = read_file(report);
  INFO(xml);
  CHECK(junit_schema_errors(report) == "");
  CHECK(xpath(report, "count(//testsuite/testcase)") == "4");
  CHECK(xpath(report, "string(//testsuite/@failures)") == "3");
  CHECK(xpath(report, "string(//testsuite/@errors)") == "0");
  CHECK(xpath(report, "string(//testcase[@name='up']/@classname)") == "gate.http");
  CHECK(xpath(report, "count(//testcase[@name='up']/failure)") == "0");
  CHECK(xpath(report, "string(//testcase[@name='down-500']/failure/@type)") == "http_status");
  CHECK(xpath(report, "string(//testcase[@name='refused']/failure/@type)") == "connect_refused");
  CHECK(xpath(report, "string(//testcase[@name='hostile']/failure/@type)") == "assertion");
  // The failure carries the same message as the JSON, and each run's time.
  for (const auto& res : out["results"]) {
    const std::string name = res["name"];
    INFO(name);
    CHECK(std::stod(xpath(report, "string(//testcase[@name='" + name + "']/@time)")) >= 0);
    if (!res["success"].get<bool>())
      CHECK(xpath(report, "string(//testcase[@name='" + name + "']/failure/@message)") ==
            res["message"].get<std::string>());
    // The run's trace id, to find the run in the platform's traces.
    CHECK(xml.find("trace_id: " + res["run_id"].get<std::string>()) != std::string::npos);
  }
  CHECK(xml.find(secret) == std::string::npos);
  CHECK(xml.find("&lt;redacted&gt;") != std::string::npos);
  CHECK(xml.find('\x1b') == std::string::npos);

  // Every probe failing still writes the report; an unwritable one is exit 2.
  const std::string all_fail = dir.write_file(
      "fail.yaml",
      "probes:\n" + http_probe("refused", fmt::format("http://127.0.0.1:{}/", free_port())));
  auto f = run_command({canaryd_bin(), "once", "--config", all_fail, "--junit", report});
  INFO(f.out << f.err);
  CHECK(f.exit_code == 1);
  CHECK(junit_schema_errors(report) == "");
  CHECK(xpath(report, "string(//testsuite/@tests)") == "1");
  CHECK(xpath(report, "string(//testsuite/@failures)") == "1");
  auto bad = run_command(
      {canaryd_bin(), "once", "--config", all_fail, "--junit", dir.file("no/such/dir/r.xml")});
  CHECK(bad.exit_code == 2);
  CHECK(bad.err.find("--junit") != std::string::npos);

  // All passing: exit 0 and a report with no failure.
  const std::string pass =
      dir.write_file("pass.yaml", "probes:\n" + http_probe("up", fp.url("/health")));
  auto p = run_command({canaryd_bin(), "once", "--config", pass, "--junit", report});
  INFO(p.out << p.err);
  CHECK(p.exit_code == 0);
  CHECK(junit_schema_errors(report) == "");
  CHECK(xpath(report, "count(//failure)") == "0");
}
