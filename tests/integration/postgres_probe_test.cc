// The PostgreSQL probe against a real, throwaway PostgreSQL cluster, read
// through /metrics, /api/v1/state and `canaryd once`.
#include <fmt/format.h>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "tests/support/harness.h"
#include "tests/support/servers.h"

using namespace canaryd::test;
using namespace std::chrono_literals;
using nlohmann::json;

namespace {

const std::string kPassword = "pg-SECRET-pw-7713";

PostgresServer& postgres() {
  static PostgresServer pg;
  static bool role = [] {
    pg.create_role("canary", kPassword);
    return true;
  }();
  (void)role;
  return pg;
}

std::string pg_probe(const std::string& name, const std::string& dsn_ref,
                     const std::string& extra = "", const std::string& timeout = "5s") {
  return fmt::format(
      "  - name: {}\n    type: postgres\n    interval: 10s\n    timeout: {}\n    postgres:\n"
      "      dsn: \"{}\"\n{}",
      name, timeout, dsn_ref, extra);
}

std::string reason_of(const json& out, const std::string& name) {
  for (const auto& r : out["results"])
    if (r["name"] == name) return r["reason"];
  return "(missing)";
}

}  // namespace

TEST_CASE("postgres: success, auth, query error, assertion and timeout with no leaked session",
          "[postgres]") {
  auto& pg = postgres();
  TempDir dir;
  // The DSNs are secrets, read from files the way production configs do.
  std::string good = dir.write_file("good.dsn", pg.dsn("canary", kPassword) + "\n");
  std::string wrong = dir.write_file("wrong.dsn", pg.dsn("canary", "wrong-pw-9999") + "\n");
  std::string norole = dir.write_file("norole.dsn", pg.dsn("nobody", kPassword) + "\n");
  auto ref = [](const std::string& path) { return "${file:" + path + "}"; };
  std::string config =
      "probes:\n" + pg_probe("ok", ref(good)) +
      pg_probe("expect-ok", ref(good), "      query: \"SELECT 40 + 2\"\n      expect: \"42\"\n") +
      pg_probe("expect-mismatch", ref(good), "      query: \"SELECT 41\"\n      expect: \"42\"\n") +
      pg_probe("bad-sql", ref(good), "      query: \"SELEC 1\"\n") +
      pg_probe("wrong-password", ref(wrong)) + pg_probe("unknown-role", ref(norole)) +
      pg_probe("slow", ref(good), "      query: \"SELECT pg_sleep(30)\"\n", "1s");
  std::string path = dir.write_file("c.yaml", config);
  auto r = run_command({canaryd_bin(), "once", "--config", path, "--json"});
  INFO(r.err);
  CHECK(r.exit_code == 1);
  json out = json::parse(r.out, nullptr, false);
  REQUIRE_FALSE(out.is_discarded());
  CHECK(reason_of(out, "ok") == "ok");
  CHECK(reason_of(out, "expect-ok") == "ok");
  CHECK(reason_of(out, "expect-mismatch") == "assertion");
  CHECK(reason_of(out, "bad-sql") == "query");
  CHECK(reason_of(out, "wrong-password") == "auth");
  CHECK(reason_of(out, "unknown-role") == "auth");
  CHECK(reason_of(out, "slow") == "timeout");
  for (const auto& res : out["results"]) {
    if (res["name"] == "ok") {
      CHECK(res["phases"].contains("connect"));
      CHECK(res["phases"].contains("query"));
    }
    if (res["name"] == "slow") CHECK(res["details"]["timeout_phase"] == "query");
  }
  // Neither the DSN nor its password shows anywhere, libpq's messages included.
  for (const std::string& text : {r.out, r.err}) {
    CHECK(text.find(kPassword) == std::string::npos);
    CHECK(text.find("wrong-pw-9999") == std::string::npos);
    CHECK(text.find(pg.dsn("canary", kPassword)) == std::string::npos);
  }
  // The timed-out query was cancelled on the server: no session is left.
  CHECK(wait_until([&] { return pg.client_sessions("canary") == 0; }, 20s));
}

TEST_CASE("postgres: the daemon exports connect and query time and counts reasons",
          "[postgres][daemon]") {
  auto& pg = postgres();
  Daemon d(
      "global:\n  listen: \"{{listen}}\"\nprobes:\n" +
          pg_probe("db", "${env:CANARY_PG_DSN}", "", "2s") +
          pg_probe("db-bad", "${env:CANARY_PG_DSN}", "      query: \"SELECT * FROM nope\"\n", "2s"),
      {"CANARY_PG_DSN=" + pg.dsn("canary", kPassword)});
  auto runs = [&](const std::string& p) {
    auto v = metric_value(d.metrics(), "canary_probe_runs_total", {{"probe", p}});
    return v ? *v : 0.0;
  };
  REQUIRE(wait_until([&] { return runs("db") >= 1 && runs("db-bad") >= 1; }, 30s));
  std::string m = d.metrics();
  CHECK(metric_value(m, "canary_probe_success", {{"probe", "db"}, {"type", "postgres"}}) == 1.0);
  CHECK(*metric_value(m, "canary_probe_phase_duration_seconds_count",
                      {{"probe", "db"}, {"phase", "connect"}}) >= 1);
  CHECK(*metric_value(m, "canary_probe_phase_duration_seconds_count",
                      {{"probe", "db"}, {"phase", "query"}}) >= 1);
  CHECK(*metric_value(m, "canary_probe_failures_total",
                      {{"probe", "db-bad"}, {"reason", "query"}}) >= 1);
  for (const char* reason : {"dns", "connect_refused", "connect", "timeout", "auth", "assertion"}) {
    INFO(reason);
    CHECK(metric_value(m, "canary_probe_failures_total", {{"probe", "db"}, {"reason", reason}}) ==
          0.0);
  }
  json bad = d.state("db-bad");
  CHECK(bad["last"]["reason"] == "query");
  CHECK(bad["last"]["message"].get<std::string>().find("does not exist") != std::string::npos);
  CHECK(m.find(kPassword) == std::string::npos);
  CHECK(d.state().dump().find(kPassword) == std::string::npos);
}

TEST_CASE("postgres: a stopped server is connect_refused", "[postgres]") {
  PostgresServer pg;
  pg.create_role("canary", kPassword);
  std::string dsn = pg.dsn("canary", kPassword);
  pg.stop();
  TempDir dir;
  std::string path = dir.write_file("c.yaml", "probes:\n" + pg_probe("db", "${env:CANARY_PG_DSN}"));
  auto r = run_command({canaryd_bin(), "once", "--config", path, "--json"}, 60s,
                       {"CANARY_PG_DSN=" + dsn});
  CHECK(r.exit_code == 1);
  json out = json::parse(r.out, nullptr, false);
  REQUIRE_FALSE(out.is_discarded());
  CHECK(reason_of(out, "db") == "connect_refused");
}
