// The command line's contract: verbs, exit codes and the shipped configs.
#include <catch2/catch.hpp>
#include <fstream>
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
