// The running daemon as an SRE meets it: /metrics, /api/v1/state, the health
// endpoints, `canaryd status`, reloads, secrets and signals.
#include <fmt/format.h>
#include <signal.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "tests/support/harness.h"

using namespace canaryd::test;
using namespace std::chrono_literals;
using nlohmann::json;

namespace {

FakePlatform& platform() {
  static FakePlatform fp;
  return fp;
}

std::string base_config(const std::string& probes) {
  return "global:\n  listen: \"{{listen}}\"\n  labels: {env: test, location: ci}\n"
         "  defaults: {interval: 1s, timeout: 1s}\nprobes:\n" +
         probes;
}

std::string http_probe(const std::string& name, const std::string& url,
                       const std::string& extra = "") {
  return fmt::format("  - name: {}\n    type: http\n{}    http:\n      url: \"{}\"\n", name, extra,
                     url);
}

}  // namespace

TEST_CASE("metrics: every reason pre-created at 0, labels, success, and a clean exposition",
          "[daemon]") {
  auto& fp = platform();
  Daemon d(base_config(
      http_probe("up", fp.url("/health"), "    category: infrastructure\n    critical: true\n") +
      http_probe("down", fp.url("/health?status=503"))));
  REQUIRE(wait_until([&] { return has_run(d, "up") && has_run(d, "down"); }));

  std::string m = d.metrics();
  for (const char* reason :
       {"timeout", "dns", "connect_refused", "connect", "tls", "tls_hostname", "tls_expired",
        "http_status", "assertion", "body_too_large", "protocol", "internal"}) {
    INFO(reason);
    CHECK(metric_value(m, "canary_probe_failures_total", {{"probe", "up"}, {"reason", reason}}) ==
          0.0);
  }
  CHECK(metric_value(m, "canary_probe_success",
                     {{"probe", "up"},
                      {"type", "http"},
                      {"category", "infrastructure"},
                      {"env", "test"},
                      {"location", "ci"}}) == 1.0);
  CHECK(metric_value(m, "canary_probe_success", {{"probe", "down"}}) == 0.0);
  CHECK(*metric_value(m, "canary_probe_failures_total",
                      {{"probe", "down"}, {"reason", "http_status"}}) >= 1.0);
  CHECK(metric_value(m, "canary_probe_info", {{"probe", "up"}, {"critical", "true"}}) == 1.0);
  CHECK(metric_value(m, "canary_probe_last_success_timestamp_seconds", {{"probe", "up"}}) > 1e9);
  CHECK(metric_value(m, "canary_probe_interval_seconds", {{"probe", "up"}}) == 1.0);
  CHECK(*metric_value(m, "canary_probe_duration_seconds_count", {{"probe", "up"}}) >= 1.0);
  // metrics.detail is basic by default: the last run's phases, as gauges.
  CHECK(*metric_value(m, "canary_probe_phase_last_seconds",
                      {{"probe", "up"}, {"phase", "connect"}}) >= 0.0);
  CHECK_FALSE(metric_value(m, "canary_probe_phase_duration_seconds_count",
                           {{"probe", "up"}, {"phase", "connect"}}));
  CHECK(metric_value(m, "canary_build_info", {{"version", "0.1.0"}}) == 1.0);
  CHECK(metric_value(m, "canary_probes_configured", {{"type", "http"}}) == 2.0);
  CHECK(metric_value(m, "canary_probes_in_flight").has_value());
  CHECK(metric_sum(m, "canary_scheduler_lag_seconds_count") >= 2.0);  // over every loop
  CHECK(metric_value(m, "canary_config_last_reload_successful") == 1.0);
  // No URL or error text ever becomes a label value. (Only label values are
  // checked: "503" may well occur inside a sample value such as a sum.)
  for (const auto& sample : parse_exposition(m)) {
    for (const auto& [name, label_value] : sample.labels) {
      INFO(sample.name << "{" << name << "=" << label_value << "}");
      CHECK(label_value.find("127.0.0.1") == std::string::npos);
      CHECK(label_value.find("503") == std::string::npos);
      CHECK(label_value.find("HTTP status") == std::string::npos);
    }
  }

  TempDir dir;
  std::string file = dir.write_file("metrics.txt", m);
  auto check = run_command({"sh", "-c", "promtool check metrics < " + file});
  INFO(check.out << check.err);
  CHECK(check.exit_code == 0);
  CHECK(check.out + check.err == "");
}

TEST_CASE("state API: last result, reason, phases, failing duration and history", "[daemon]") {
  auto& fp = platform();
  Daemon d(base_config(http_probe("up", fp.url("/health")) +
                       http_probe("down", fp.url("/health?status=500"))));
  REQUIRE(wait_until([&] { return has_run(d, "down", 3) && has_run(d, "up", 1); }));

  json all = d.state();
  CHECK(all["summary"]["probes"] == 2);
  CHECK(all["config"]["last_reload_successful"] == true);

  json down = d.state("down");
  CHECK(down["status"] == "failing");
  CHECK(down["type"] == "http");
  CHECK(down["last"]["reason"] == "http_status");
  CHECK(down["last"]["message"] == "HTTP status 500 (expected 2xx)");
  CHECK(down["last"]["phases"].contains("connect"));
  CHECK(down["failing_since"].is_string());
  CHECK(down["failing_for_seconds"].get<double>() > 0);
  CHECK(down["history"].size() >= 3);
  CHECK(down["history"][0].contains("time"));
  CHECK(down["target"] == "GET " + fp.url("/health?status=500"));

  json up = d.state("up");
  CHECK(up["status"] == "passing");
  CHECK(up["passing_since"].is_string());
  CHECK(up["last"]["details"]["status_code"] == 200);

  auto missing = http_get(d.base_url() + "/api/v1/state/nope");
  CHECK(missing.status == 404);
  CHECK(http_get(d.base_url() + "/-/healthy").status == 200);
  CHECK(http_get(d.base_url() + "/-/ready").status == 200);
  CHECK(http_get(d.base_url() + "/-/reload").status == 405);
}

TEST_CASE("canaryd status prints the state for a person, or JSON", "[daemon][cli]") {
  auto& fp = platform();
  Daemon d(base_config(http_probe("backend-health", fp.url("/health")) +
                       http_probe("auth-health", fp.url("/health?mode=degraded"), "") +
                       "      expect: {json: {status: healthy}}\n"));
  REQUIRE(wait_until([&] { return has_run(d, "backend-health") && has_run(d, "auth-health"); }));

  auto table = run_command({canaryd_bin(), "status", "--url", d.base_url()});
  INFO(table.out << table.err);
  CHECK(table.exit_code == 1);  // one probe is failing
  CHECK(table.out.find("PROBE") != std::string::npos);
  CHECK(table.out.find("backend-health  http  PASS") != std::string::npos);
  CHECK(table.out.find("auth-health") != std::string::npos);
  CHECK(table.out.find("FAIL    assertion") != std::string::npos);
  CHECK(table.out.find("2 probes: 1 passing, 1 failing, 0 pending") != std::string::npos);

  auto js = run_command({canaryd_bin(), "status", "--url", d.base_url(), "--json"});
  auto j = json::parse(js.out, nullptr, false);
  REQUIRE_FALSE(j.is_discarded());
  CHECK(j["probes"].size() == 2);

  auto unreachable = run_command(
      {canaryd_bin(), "status", "--url", fmt::format("http://127.0.0.1:{}", free_port())});
  CHECK(unreachable.exit_code == 2);
  CHECK(unreachable.err.find("cannot reach") != std::string::npos);
}

TEST_CASE("reload: unchanged probes keep counting, new ones appear, a bad config keeps the old",
          "[daemon][reload]") {
  auto& fp = platform();
  std::string one = http_probe("stable", fp.url("/health"));
  Daemon d(base_config(one), {}, "", {"--web.enable-lifecycle"});
  REQUIRE(wait_until([&] { return has_run(d, "stable", 2); }));

  d.rewrite_config(base_config(one + http_probe("added", fp.url("/health"))));
  d.process().signal(SIGHUP);
  REQUIRE(wait_until([&] { return has_run(d, "added"); }));
  double runs_after_reload = daemon_metric(d, "canary_probe_runs_total", {{"probe", "stable"}});
  CHECK(runs_after_reload >= 2);  // not reset by the reload
  CHECK(d.state("stable")["history"].size() >= 2);
  CHECK(daemon_metric(d, "canary_config_reloads_total", {{"result", "success"}}) == 1);

  // A broken config: the reload fails, is exported, and the old probes run on.
  d.rewrite_config(base_config(one + "  - name: broken\n    type: http\n    http: {}\n"));
  auto r = http_post(d.base_url() + "/-/reload");
  CHECK(r.status == 500);
  CHECK(r.body.find("probes[1].http: missing required key url") != std::string::npos);
  CHECK(daemon_metric(d, "canary_config_last_reload_successful", {}) == 0);
  CHECK(daemon_metric(d, "canary_config_reloads_total", {{"result", "failure"}}) == 1);
  CHECK(d.state()["config"]["last_reload_successful"] == false);
  double before = daemon_metric(d, "canary_probe_runs_total", {{"probe", "added"}});
  REQUIRE(wait_until([&] {
    return daemon_metric(d, "canary_probe_runs_total", {{"probe", "added"}}) > before;
  }));

  // Removing a probe removes its series and its state.
  d.rewrite_config(base_config(one));
  CHECK(http_post(d.base_url() + "/-/reload").status == 200);
  CHECK(!metric_value(d.metrics(), "canary_probe_runs_total", {{"probe", "added"}}));
  CHECK(http_get(d.base_url() + "/api/v1/state/added").status == 404);
}

TEST_CASE("secrets never appear in metrics, state, logs or once --json", "[daemon][secrets]") {
  auto& fp = platform();
  TempDir secrets;
  std::string token_file = secrets.write_file("token", "tok-FILE-secret-9f8e7d\n");
  std::string config = base_config(
      http_probe("with-secrets", fp.url("/health?status=401&key=${env:CANARYD_TEST_API_KEY}")) +
      "      headers:\n        Authorization: \"Bearer ${file:" + token_file + "}\"\n");
  std::vector<std::string> env = {"CANARYD_TEST_API_KEY=key-ENV-secret-1a2b3c"};
  Daemon d(config, env);
  REQUIRE(wait_until([&] { return has_run(d, "with-secrets", 2); }));

  auto leaks = [](const std::string& text) {
    return text.find("tok-FILE-secret-9f8e7d") != std::string::npos ||
           text.find("key-ENV-secret-1a2b3c") != std::string::npos;
  };
  CHECK_FALSE(leaks(d.metrics()));
  std::string state = d.state().dump();
  CHECK_FALSE(leaks(state));
  CHECK(state.find("<redacted>") != std::string::npos);  // the target shows where it was

  auto once = run_command({canaryd_bin(), "once", "--config", d.config_path(), "--json"}, 60s, env);
  INFO(once.err);
  CHECK(once.exit_code == 1);
  CHECK_FALSE(leaks(once.out));
  CHECK_FALSE(leaks(once.err));
  d.process().stop();
  CHECK_FALSE(leaks(d.process().stdout_text()));
  CHECK_FALSE(leaks(d.process().stderr_text()));
}

TEST_CASE("hung targets do not delay other probes", "[daemon][scale]") {
  auto& fp = platform();
  std::string probes;
  for (int i = 0; i < 200; ++i)
    probes += http_probe(fmt::format("hung-{:03d}", i), fp.url("/health?mode=hang"),
                         "    interval: 1s\n    timeout: 1s\n");
  // The healthy probe's timeout is generous: what is tested is that it keeps succeeding
  // while the hung runs are in flight, not how fast a loaded CI machine answers.
  probes += http_probe("healthy", fp.url("/health"), "    interval: 3s\n    timeout: 3s\n");
  Daemon d(base_config(probes));
  REQUIRE(wait_until([&] { return has_run(d, "hung-000", 2); }, 30s));
  const double hung_timeouts_before =
      metric_sum(d.metrics(), "canary_probe_failures_total", "hung-", {{"reason", "timeout"}});
  int start = static_cast<int>(daemon_metric(d, "canary_probe_runs_total", {{"probe", "healthy"}}));
  REQUIRE(wait_until([&] { return has_run(d, "healthy", start + 5); }, 60s));
  std::string m = d.metrics();
  // The hung runs overlapped the healthy ones: while the healthy probe ran five more
  // times, every hung probe timed out once more on average.
  CHECK(metric_sum(m, "canary_probe_failures_total", "hung-", {{"reason", "timeout"}}) -
            hung_timeouts_before >=
        200.0);
  // ...and the healthy probe succeeded every time: no failure of any reason.
  CHECK(metric_value(m, "canary_probe_success", {{"probe", "healthy"}}) == 1.0);
  CHECK(unexpected_failures(m, "healthy") == std::vector<std::string>{});
  // Every hung run was counted as a timeout, nothing else ever.
  CHECK(metric_value(m, "canary_probe_failures_total",
                     {{"probe", "hung-000"}, {"reason", "timeout"}}) >= 2.0);
  CHECK(unexpected_failures(m, "hung-", "timeout") == std::vector<std::string>{});
  CHECK_FALSE(
      metric_value(m, "canary_probe_last_success_timestamp_seconds", {{"probe", "hung-000"}}));
}

TEST_CASE("SIGTERM stops the daemon cleanly and a busy port is a clear error", "[daemon]") {
  auto& fp = platform();
  Daemon d(base_config(http_probe("up", fp.url("/health"))));
  // A second daemon on the same port must fail with a clear message.
  TempDir dir;
  std::string path = dir.write_file(
      "c.yaml", fmt::format("global:\n  listen: 127.0.0.1:{}\nprobes: []\n", d.port()));
  auto second = run_command({canaryd_bin(), "run", "--config", path}, 30s);
  CHECK(second.exit_code == 1);
  CHECK(second.err.find("address already in use") != std::string::npos);

  d.process().signal(SIGTERM);
  auto code = d.process().wait_exit(20s);
  REQUIRE(code);
  CHECK(*code == 0);
}

TEST_CASE(
    "workers: two probe loops share the probes, results reach /metrics and the state API from "
    "both, and SIGTERM stops them cleanly",
    "[daemon]") {
  auto& fp = platform();
  std::string probes;
  for (int i = 0; i < 12; ++i) probes += http_probe(fmt::format("p{:02d}", i), fp.url("/health"));
  probes += "  - name: refused\n    type: tcp\n    tcp: {address: \"127.0.0.1:1\"}\n";
  std::string config = base_config(probes);
  config.replace(config.find("  labels:"), 0, "  workers: 2\n");
  Daemon d(config);
  REQUIRE(wait_until([&] {
    for (int i = 0; i < 12; ++i)
      if (!has_run(d, fmt::format("p{:02d}", i))) return false;
    return has_run(d, "refused");
  }));
  std::string m = d.metrics();
  // Both loops run some of the probes, and together all of them.
  const double loop0 = *metric_value(m, "canary_loop_probes", {{"loop", "0"}});
  const double loop1 = *metric_value(m, "canary_loop_probes", {{"loop", "1"}});
  CHECK(loop0 > 0);
  CHECK(loop1 > 0);
  CHECK(loop0 + loop1 == 13);
  CHECK(metric_value(m, "canary_loop_saturation_ratio", {{"loop", "1"}}).has_value());
  CHECK(metric_sum(m, "canary_scheduler_lag_seconds_count", {{"loop", "0"}}) >= 1);
  CHECK(metric_sum(m, "canary_scheduler_lag_seconds_count", {{"loop", "1"}}) >= 1);
  // Every probe appears once, whichever loop runs it.
  json all = d.state();
  REQUIRE(all["probes"].size() == 13);
  std::vector<std::string> names;
  for (const auto& p : all["probes"]) names.push_back(p["name"]);
  CHECK(std::is_sorted(names.begin(), names.end()));
  CHECK(all["summary"]["passing"] == 12);
  CHECK(all["summary"]["failing"] == 1);
  CHECK(d.state("refused")["last"]["reason"] == "connect_refused");
  CHECK(metric_value(m, "canary_probe_success", {{"probe", "p07"}}) == 1.0);
  CHECK(d.process().stop() == 0);
}

TEST_CASE("retries: a flaky target passes on a retry, marked retried and counted, never failed",
          "[daemon][retries]") {
  auto& fp = platform();
  // Every second request to each URL answers 500 (the two URLs count apart).
  Daemon d(
      base_config(http_probe("confirmed", fp.url("/health?fail_every=2&probe=confirmed"),
                             "    retries: {attempts: 2, delay: 100ms}\n") +
                  http_probe("unconfirmed", fp.url("/health?fail_every=2&probe=unconfirmed"))));
  REQUIRE(wait_until([&] { return has_run(d, "confirmed", 4) && has_run(d, "unconfirmed", 4); }));

  // From its second run on, each first attempt fails and its retry passes.
  json confirmed = d.state("confirmed");
  CHECK(confirmed["status"] == "passing");
  CHECK(confirmed["last"]["success"] == true);
  CHECK(confirmed["last"]["retried"] == true);
  CHECK(confirmed["last"]["attempts"] == 2);
  for (const auto& past : confirmed["history"]) CHECK(past["success"] == true);

  const double runs = daemon_metric(d, "canary_probe_runs_total", {{"probe", "confirmed"}});
  CHECK(daemon_metric(d, "canary_probe_failures_total",
                      {{"probe", "confirmed"}, {"reason", "http_status"}}) == 0);
  CHECK(daemon_metric(d, "canary_probe_retry_successes_total", {{"probe", "confirmed"}}) >=
        runs - 2);
  CHECK(daemon_metric(d, "canary_probe_attempts_total",
                      {{"probe", "confirmed"}, {"result", "failure"}}) >= runs - 2);
  CHECK(daemon_metric(d, "canary_probe_attempts_total",
                      {{"probe", "confirmed"}, {"result", "success"}}) >= runs - 1);

  // The same target without retries fails every other run, and exports no
  // retry series.
  CHECK(daemon_metric(d, "canary_probe_failures_total",
                      {{"probe", "unconfirmed"}, {"reason", "http_status"}}) >= 1);
  const std::string exposition = d.metrics();
  size_t retry_lines = 0;
  for (size_t at = exposition.find("\ncanary_probe_retry_successes_total{");
       at != std::string::npos;
       at = exposition.find("\ncanary_probe_retry_successes_total{", at + 1)) {
    ++retry_lines;
    const std::string line = exposition.substr(at + 1, exposition.find('\n', at + 1) - at - 1);
    CHECK(line.find("probe=\"unconfirmed\"") == std::string::npos);
  }
  CHECK(retry_lines == 1);
  CHECK(d.state("unconfirmed")["last"]["retried"] == false);
}

namespace {
// The series of one probe in an exposition: its sample lines.
std::vector<std::string> series_of(const std::string& exposition, const std::string& probe) {
  std::vector<std::string> out;
  const std::string label = "probe=\"" + probe + "\"";
  size_t start = 0;
  while (start < exposition.size()) {
    size_t end = exposition.find('\n', start);
    if (end == std::string::npos) end = exposition.size();
    std::string line = exposition.substr(start, end - start);
    if (!line.empty() && line[0] != '#' && line.find(label) != std::string::npos)
      out.push_back(std::move(line));
    start = end + 1;
  }
  return out;
}
}  // namespace

TEST_CASE("metrics detail: basic keeps an HTTP probe to 40 series, full keeps phase histograms",
          "[daemon][metrics]") {
  auto& fp = platform();
  Daemon d(base_config(http_probe("lean", fp.url("/health"), "    metrics: {detail: basic}\n") +
                       http_probe("rich", fp.url("/health"), "    metrics: {detail: full}\n") +
                       http_probe("custom", fp.url("/health"),
                                  "    metrics: {detail: basic, buckets: [0.005, 0.05, 0.5]}\n")));
  REQUIRE(wait_until(
      [&] { return has_run(d, "lean", 2) && has_run(d, "rich", 2) && has_run(d, "custom", 2); }));
  const std::string m = d.metrics();
  const auto lean = series_of(m, "lean");
  const auto rich = series_of(m, "rich");
  INFO(fmt::format("basic: {} series, full: {} series", lean.size(), rich.size()));
  CHECK(lean.size() <= 40);
  CHECK(rich.size() > 100);
  auto count = [](const std::vector<std::string>& lines, const std::string& prefix) {
    return std::count_if(lines.begin(), lines.end(),
                         [&](const std::string& l) { return l.rfind(prefix, 0) == 0; });
  };
  // basic: no phase histogram, the last run's phases as gauges, one small histogram.
  CHECK(count(lean, "canary_probe_phase_duration_seconds") == 0);
  CHECK(count(lean, "canary_probe_phase_last_seconds{") >= 3);
  CHECK(count(lean, "canary_probe_duration_seconds_bucket{") == 10);
  CHECK(metric_value(m, "canary_probe_phase_last_seconds",
                     {{"probe", "lean"}, {"phase", "total"}}) > 0);
  // full: a histogram per phase, and no gauges in their place.
  CHECK(count(rich, "canary_probe_phase_duration_seconds_bucket{") >= 3 * 15);
  CHECK(count(rich, "canary_probe_phase_last_seconds") == 0);
  // metrics.buckets: the configured bounds, and +Inf.
  const auto custom = series_of(m, "custom");
  CHECK(count(custom, "canary_probe_duration_seconds_bucket{") == 4);
  CHECK(metric_value(m, "canary_probe_duration_seconds_bucket",
                     {{"probe", "custom"}, {"le", "0.005"}}) >= 0);
  // The success ratio the rules read is there in both.
  for (const char* p : {"lean", "rich"}) {
    CHECK(metric_value(m, "canary_probe_runs_total", {{"probe", p}}) >= 2);
    CHECK(metric_value(m, "canary_probe_success", {{"probe", p}}) == 1);
  }
}
