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
  auto run = run_once_json(config);
  INFO(run.err);
  CHECK(run.exit_code == 1);
  const json& out = run.out;
  REQUIRE_FALSE(out.is_discarded());
  CHECK(once_reason(out, "ok") == "ok");
  CHECK(once_reason(out, "expect-ok") == "ok");
  CHECK(once_reason(out, "expect-mismatch") == "assertion");
  CHECK(once_reason(out, "bad-sql") == "query");
  CHECK(once_reason(out, "wrong-password") == "auth");
  CHECK(once_reason(out, "unknown-role") == "auth");
  CHECK(once_reason(out, "slow") == "timeout");
  for (const auto& res : out["results"]) {
    if (res["name"] == "ok") {
      CHECK(res["phases"].contains("connect"));
      CHECK(res["phases"].contains("query"));
    }
    if (res["name"] == "slow") CHECK(res["details"]["timeout_phase"] == "query");
  }
  // Neither the DSN nor its password shows anywhere, libpq's messages included.
  for (const std::string& text : {out.dump(), run.err}) {
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
      "global:\n  listen: \"{{listen}}\"\n  metrics: {detail: full}\nprobes:\n" +
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
  auto r =
      run_once_json("probes:\n" + pg_probe("db", "${env:CANARY_PG_DSN}"), {"CANARY_PG_DSN=" + dsn});
  INFO(r.out.dump(2));
  CHECK(r.exit_code == 1);
  REQUIRE_FALSE(r.out.is_discarded());
  CHECK(once_reason(r.out, "db") == "connect_refused");
}
