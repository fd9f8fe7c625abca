// The Redis probe against a real redis-server (and misbehaving listeners),
// read through /metrics, /api/v1/state and `canaryd once`.
#include <fmt/format.h>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "tests/support/harness.h"
#include "tests/support/servers.h"

using namespace canaryd::test;
using namespace std::chrono_literals;
using nlohmann::json;

namespace {

const std::string kPassword = "redis-SECRET-pw-4821";

std::string redis_probe(const std::string& name, const std::string& body,
                        const std::string& timing = "    interval: 1s\n    timeout: 1s\n") {
  return fmt::format("  - name: {}\n    type: redis\n{}    redis:\n{}", name, timing, body);
}

json once(const std::string& config, int& exit_code) {
  auto r = run_once_json(config);
  INFO(r.err);
  exit_code = r.exit_code;
  REQUIRE_FALSE(r.out.is_discarded());
  return r.out;
}

}  // namespace

TEST_CASE("redis: success, wrong password, no password, garbage, role and refused", "[redis]") {
  RedisServer redis(RedisServer::Options{.password = kPassword});
  RawListener garbage(RawListener::Mode::kGarbage);
  std::string pw = fmt::format("      password: \"{}\"\n", kPassword);
  std::string addr = fmt::format("      address: \"{}\"\n", redis.address());
  std::string config =
      "probes:\n" + redis_probe("ok", addr + pw) +
      redis_probe("ok-db-role", addr + pw + "      db: 2\n      expect_role: master\n") +
      redis_probe("wrong-password", addr + "      password: \"not-the-password\"\n") +
      redis_probe("no-password", addr) +
      redis_probe("replica-expected", addr + pw + "      expect_role: replica\n") +
      redis_probe("garbage", fmt::format("      address: \"127.0.0.1:{}\"\n", garbage.port()));
  int code = 0;
  json out = once(config, code);
  CHECK(code == 1);
  CHECK(once_reason(out, "ok") == "ok");
  CHECK(once_reason(out, "ok-db-role") == "ok");
  CHECK(once_reason(out, "wrong-password") == "auth");
  CHECK(once_reason(out, "no-password") == "auth");
  CHECK(once_reason(out, "replica-expected") == "assertion");
  CHECK(once_reason(out, "garbage") == "protocol");
  for (const auto& r : out["results"]) {
    if (r["name"] == "ok") {
      CHECK(r["phases"].contains("connect"));
      CHECK(r["phases"].contains("auth"));
      CHECK(r["phases"].contains("command"));
    }
  }
  CHECK(out.dump().find(kPassword) == std::string::npos);

  int ok_code = 0;
  once("probes:\n" + redis_probe("ok", addr + pw), ok_code);
  CHECK(ok_code == 0);

  // Every connection the probes opened is closed again.
  CHECK(wait_until([&] { return redis.connected_clients() == 0; }));

  redis.stop();
  int stopped_code = 0;
  json stopped = once("probes:\n" + redis_probe("ok", addr + pw), stopped_code);
  CHECK(stopped_code == 1);
  CHECK(once_reason(stopped, "ok") == "connect_refused");
}

TEST_CASE("redis: a silent server times out while other probes stay on schedule",
          "[redis][daemon]") {
  RedisServer redis(RedisServer::Options{.password = kPassword});
  RawListener silent(RawListener::Mode::kSilent);
  std::string config =
      "global:\n  listen: \"{{listen}}\"\nprobes:\n" +
      redis_probe("silent", fmt::format("      address: \"127.0.0.1:{}\"\n", silent.port())) +
      redis_probe(
          "cache",
          fmt::format("      address: \"{}\"\n      password: \"${{env:CANARY_REDIS_PW}}\"\n",
                      redis.address()),
          "    interval: 500ms\n    timeout: 500ms\n");
  Daemon d(config, {"CANARY_REDIS_PW=" + kPassword});
  auto runs = [&](const std::string& p) {
    auto v = metric_value(d.metrics(), "canary_probe_runs_total", {{"probe", p}});
    return v ? *v : 0.0;
  };
  REQUIRE(wait_until([&] { return runs("silent") >= 3; }, 30s));
  std::string m = d.metrics();
  CHECK(metric_value(m, "canary_probe_failures_total",
                     {{"probe", "silent"}, {"reason", "timeout"}}) == runs("silent"));
  // Three hung runs took over two seconds; the 500 ms probe kept running all
  // along.
  CHECK(runs("cache") >= 4);
  CHECK(metric_value(m, "canary_probe_failures_total",
                     {{"probe", "cache"}, {"reason", "timeout"}}) == 0.0);
  CHECK(metric_value(m, "canary_probe_success", {{"probe", "cache"}}) == 1.0);
  for (const char* reason :
       {"dns", "connect_refused", "connect", "auth", "protocol", "assertion"}) {
    INFO(reason);
    CHECK(metric_value(m, "canary_probe_failures_total",
                       {{"probe", "cache"}, {"reason", reason}}) == 0.0);
  }
  json state = d.state("silent");
  CHECK(state["last"]["reason"] == "timeout");
  CHECK(state["last"]["details"]["timeout_phase"] == "command");
  CHECK(d.metrics().find(kPassword) == std::string::npos);
  CHECK(d.state().dump().find(kPassword) == std::string::npos);
  d.process().stop();
  CHECK(d.process().stderr_text().find(kPassword) == std::string::npos);
}
