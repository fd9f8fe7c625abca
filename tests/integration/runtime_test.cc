// Runtime isolation: blocking work of one kind (a database that never answers)
// must not delay another kind (name lookups), nor the probes that need it.
#include <fmt/format.h>

#include <catch2/catch.hpp>
#include <csignal>
#include <fstream>

#include "tests/support/harness.h"
#include "tests/support/servers.h"

using namespace canaryd::test;
using namespace std::chrono_literals;

namespace {

// tests/fixtures/stalled_postgres.py: completes the startup handshake, never
// answers a query, and holds every cancel request's connection open.
class StalledPostgres {
 public:
  StalledPostgres()
      : port_file_(dir_.file("port")),
        process_({python3(), source_dir() + "/tests/fixtures/stalled_postgres.py", port_file_}) {
    if (!wait_until([&] { return std::ifstream(port_file_).good(); }, 30s))
      throw std::runtime_error("stalled_postgres.py did not start: " + process_.describe());
    std::ifstream(port_file_) >> port_;
  }
  int port() const { return port_; }

 private:
  TempDir dir_;
  std::string port_file_;
  Process process_;
  int port_ = 0;
};

double sum_of(const std::string& exposition, const std::string& name, const std::string& probe) {
  double total = 0;
  for (const auto& s : parse_exposition(exposition))
    if (s.name == name && s.labels.count("probe") && s.labels.at("probe") == probe)
      total += s.value;
  return total;
}

}  // namespace

TEST_CASE("a stalled database holds no thread that name lookups or HTTP probes need",
          "[runtime][postgres][redis]") {
  StalledPostgres db;
  RedisServer redis;
  FakePlatform platform;
  // Each database run times out in its query, and canaryd then sends a
  // cancel that the server never completes: with one shared pool, a dozen of
  // those held every thread, and the name lookups queued behind them forever.
  std::string config = "global:\n  listen: \"{{listen}}\"\nprobes:\n";
  for (int i = 0; i < 12; ++i) {
    config += fmt::format(
        "  - name: db-{}\n    type: postgres\n    interval: 400ms\n    timeout: 300ms\n"
        "    postgres:\n      dsn: \"host=127.0.0.1 port={} user=canary dbname=app "
        "sslmode=disable\"\n",
        i, db.port());
  }
  config += fmt::format(
      "  - name: cache-by-name\n    type: redis\n    interval: 1s\n    timeout: 1s\n"
      "    redis:\n      address: \"localhost:{}\"\n"
      "  - name: web\n    type: http\n    interval: 1s\n    timeout: 1s\n"
      "    http:\n      url: \"http://localhost:{}/health\"\n",
      redis.port(), platform.http_port());
  Daemon d(config);
  auto runs = [&](const std::string& p) {
    return sum_of(d.metrics(), "canary_probe_runs_total", p);
  };
  // The database probes time out (and their cancels pile up) many times over.
  REQUIRE(wait_until([&] { return runs("db-0") >= 8; }, 60s));
  double cache_before = runs("cache-by-name"), web_before = runs("web");
  REQUIRE(wait_until([&] { return runs("cache-by-name") >= cache_before + 4; }, 30s));
  REQUIRE(wait_until([&] { return runs("web") >= web_before + 4; }, 30s));
  std::string m = d.metrics();
  CHECK(sum_of(m, "canary_probe_failures_total", "cache-by-name") == 0.0);
  CHECK(sum_of(m, "canary_probe_failures_total", "web") == 0.0);
  CHECK(metric_value(m, "canary_probe_success", {{"probe", "cache-by-name"}}) == 1.0);
  CHECK(metric_value(m, "canary_probe_success", {{"probe", "web"}}) == 1.0);
  CHECK(metric_value(m, "canary_probe_failures_total", {{"probe", "db-0"}, {"reason", "timeout"}})
            .value_or(0) >= 8);
  // Config loads need a thread too, and still finish.
  d.process().signal(SIGHUP);
  CHECK(wait_until(
      [&] {
        return daemon_metric(d, "canary_config_reloads_total", {{"result", "success"}}) == 1;
      },
      30s));
}
