// Reload as an SRE meets it: odd YAML is an error (never a crash), a changed
// global.defaults takes effect, a ${file:} that cannot be read stalls no
// endpoint and no shutdown, and POST /-/reload is opt-in.
#include <fmt/format.h>
#include <signal.h>
#include <sys/stat.h>

#include <catch2/catch.hpp>
#include <future>
#include <nlohmann/json.hpp>
#include <thread>

#include "tests/support/harness.h"

using namespace canaryd::test;
using namespace std::chrono_literals;

namespace {

const std::vector<std::string> kLifecycle = {"--web.enable-lifecycle"};

std::string config(const std::string& probes,
                   const std::string& defaults = "{interval: 300ms, timeout: 200ms}") {
  return "global:\n  listen: \"{{listen}}\"\n  defaults: " + defaults + "\nprobes:\n" + probes;
}

// Port 1 refuses at once: the probe runs (and is counted) without a server.
std::string probe(const std::string& name, const std::string& http_extra = "") {
  return fmt::format(
      "  - name: {}\n    type: http\n    http:\n      url: \"http://127.0.0.1:1/\"\n{}", name,
      http_extra);
}

std::string fifo_header(const std::string& fifo) {
  return "      headers: {Authorization: \"Bearer ${file:" + fifo + "}\"}\n";
}

// An agent probe whose send.json has a complex (non-scalar) key: the key on line 16 after
// probe("p").
std::string complex_key_probe(const std::string& json_block) {
  return "  - name: agent\n    type: agent_pipeline\n    agent_pipeline:\n"
         "      websocket: {url: \"ws://127.0.0.1:1/ws\"}\n      events: [{type: done}]\n"
         "      send:\n        json:\n" +
         json_block;
}

double runs(Daemon& d, const std::string& name) {
  return daemon_metric(d, "canary_probe_runs_total", {{"probe", name}});
}

std::string make_fifo(const Daemon& d) {
  std::string path = d.dir().path() + "/token.fifo";
  REQUIRE(mkfifo(path.c_str(), 0600) == 0);
  return path;
}

}  // namespace

TEST_CASE("a complex YAML key is a config error: check-config exits 1, SIGHUP keeps the old config",
          "[reload]") {
  const std::string good = config(probe("p"));
  const std::string block =
      config(probe("p") + complex_key_probe("          ? [a, b]\n          : 1\n"));
  const std::string flow = config(probe("p") + complex_key_probe("          {? {x: 1}: 2}\n"));

  TempDir dir;
  std::string file = flow;
  file.replace(file.find("{{listen}}"), 10, "127.0.0.1:9464");  // what Daemon does for itself
  std::string path = dir.write_file("bad.yaml", file);
  auto check = run_command({canaryd_bin(), "check-config", path}, 60s);
  CHECK(check.exit_code == 1);
  CHECK(check.err == path + ":16: probes[1].agent_pipeline.send.json: keys must be plain names\n");
  CHECK(check.out.empty());

  Daemon d(good);
  REQUIRE(wait_until([&] { return has_run(d, "p"); }));
  int failures = 0;
  for (const std::string& bad : {block, flow}) {
    d.rewrite_config(bad);
    d.process().signal(SIGHUP);
    ++failures;
    REQUIRE(wait_until([&] {
      return daemon_metric(d, "canary_config_reloads_total", {{"result", "failure"}}) == failures;
    }));
    REQUIRE(d.process().running());
    CHECK(daemon_metric(d, "canary_config_last_reload_successful") == 0);
    auto state = d.state();
    CHECK(state["config"]["last_reload_successful"] == false);
    CHECK(state["config"]["last_reload_error"].get<std::string>().find(
              ":16: probes[1].agent_pipeline.send.json: keys must be plain names") !=
          std::string::npos);
    // The old config runs on.
    double before = runs(d, "p");
    REQUIRE(wait_until([&] { return runs(d, "p") > before; }));
    CHECK(runs(d, "agent") == -1);
  }
}

TEST_CASE("a reload that changes global.defaults changes the probes that inherit them",
          "[reload]") {
  Daemon d(
      config(probe("inherits") + probe("own", "") + "    interval: 300ms\n    timeout: 200ms\n"));
  REQUIRE(wait_until([&] { return has_run(d, "inherits", 3) && has_run(d, "own", 3); }));
  CHECK(daemon_metric(d, "canary_probe_interval_seconds", {{"probe", "inherits"}}) == 0.3);

  d.rewrite_config(
      config(probe("inherits") + probe("own", "") + "    interval: 300ms\n    timeout: 200ms\n",
             "{interval: 1h, timeout: 200ms}"));
  d.process().signal(SIGHUP);
  REQUIRE(wait_until([&] {
    return daemon_metric(d, "canary_config_reloads_total", {{"result", "success"}}) == 1;
  }));
  CHECK(daemon_metric(d, "canary_probe_interval_seconds", {{"probe", "inherits"}}) == 3600);
  // The counters go on; the new interval shows in the run rate. The probe that
  // sets its own interval is unchanged and keeps running at its pace.
  double inherits = runs(d, "inherits"), own = runs(d, "own");
  CHECK(inherits >= 3);
  REQUIRE(wait_until([&] { return runs(d, "own") >= own + 5; }, 30s));
  CHECK(runs(d, "inherits") <= inherits + 1);  // at most its first run at the new hourly rate
}

TEST_CASE(
    "a ${file:} FIFO nobody writes stalls no endpoint, fails the reload, keeps the old config",
    "[reload][secrets]") {
  Daemon d(config(probe("p")), {}, "", kLifecycle);
  REQUIRE(wait_until([&] { return has_run(d, "p"); }));
  std::string fifo = make_fifo(d);
  d.rewrite_config(config(probe("p") + probe("secret", fifo_header(fifo))));

  auto start = std::chrono::steady_clock::now();
  auto reload = std::async(std::launch::async,
                           [&] { return http_post(d.base_url() + "/-/reload", "", 60s); });
  std::this_thread::sleep_for(500ms);  // the reload is now waiting on the FIFO
  // The other endpoints answer meanwhile.
  auto metrics = http_get(d.base_url() + "/metrics");
  auto healthy = http_get(d.base_url() + "/-/healthy");
  CHECK(reload.wait_for(0s) == std::future_status::timeout);  // still stuck
  CHECK(metrics.status == 200);
  CHECK(healthy.status == 200);

  auto r = reload.get();
  auto took = std::chrono::steady_clock::now() - start;
  INFO(r.error << r.body);
  CHECK(r.status == 500);
  CHECK(r.body.find(d.config_path() +
                    ":13: probes[1].http.headers.Authorization: cannot read "
                    "secret file " +
                    fifo + ": timed out after 5s") != std::string::npos);
  CHECK(took <= 10s);
  CHECK(daemon_metric(d, "canary_config_last_reload_successful") == 0);
  double before = runs(d, "p");
  REQUIRE(wait_until([&] { return runs(d, "p") > before; }));
  CHECK(runs(d, "secret") == -1);
}

TEST_CASE("SIGTERM ends the daemon while a reload waits on a FIFO", "[reload][secrets]") {
  Daemon d(config(probe("p")));
  REQUIRE(wait_until([&] { return has_run(d, "p"); }));
  std::string fifo = make_fifo(d);
  d.rewrite_config(config(probe("p") + probe("secret", fifo_header(fifo))));
  d.process().signal(SIGHUP);
  std::this_thread::sleep_for(500ms);  // the reload is now waiting on the FIFO
  d.process().signal(SIGTERM);
  auto code = d.process().wait_exit(10s);
  REQUIRE(code);
  CHECK(*code == 0);
}

TEST_CASE("check-config with a FIFO secret ends with an error", "[reload][secrets][cli]") {
  TempDir dir;
  std::string fifo = dir.path() + "/token.fifo";
  REQUIRE(mkfifo(fifo.c_str(), 0600) == 0);
  std::string path = dir.write_file("c.yaml", "probes:\n" + probe("secret", fifo_header(fifo)));
  auto check = run_command({canaryd_bin(), "check-config", path}, 60s);
  CHECK(check.exit_code == 1);
  CHECK(check.err == path + ":6: probes[0].http.headers.Authorization: cannot read secret file " +
                         fifo + ": timed out after 5s (a FIFO nobody writes, or a hung mount?)\n");
}

TEST_CASE("POST /-/reload needs --web.enable-lifecycle, and SIGHUP works either way", "[reload]") {
  const std::string two = config(probe("p") + probe("q"));
  Daemon closed(config(probe("p")));
  auto refused = http_post(closed.base_url() + "/-/reload");
  CHECK(refused.status == 403);
  CHECK(refused.body.find("--web.enable-lifecycle") != std::string::npos);
  closed.rewrite_config(two);
  closed.process().signal(SIGHUP);
  CHECK(wait_until([&] { return has_run(closed, "q"); }));

  Daemon open(config(probe("p")), {}, "", kLifecycle);
  open.rewrite_config(two);
  auto r = http_post(open.base_url() + "/-/reload");
  CHECK(r.status == 200);
  CHECK(r.body == "config reloaded\n");
  CHECK(wait_until([&] { return has_run(open, "q"); }));
}
