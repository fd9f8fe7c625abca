#include "daemon/once.h"

#include <fmt/format.h>
#include <unistd.h>
#include <uv.h>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>

#include "base/trace_context.h"
#include "daemon/config.h"
#include "daemon/engine.h"
#include "daemon/junit.h"
#include "daemon/state_store.h"
#include "daemon/table.h"

namespace canaryd {

namespace {
struct OnceResult {
  std::string name, type, category, target, run_id;
  ProbeResult result;
  double duration;
  int attempts;
};

// "2026-12-07T17:55:00": UTC, without a zone, as the JUnit schemas' timestamp.
std::string junit_timestamp(std::chrono::system_clock::time_point t) {
  const std::time_t secs = std::chrono::system_clock::to_time_t(t);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  return buf;
}

std::string host_name() {
  char buf[256] = {};
  if (gethostname(buf, sizeof buf - 1) != 0) return "";
  return buf;
}
}  // namespace

int run_once(const std::string& config_path, const OnceOptions& options) {
  const std::vector<std::string>& probe_names = options.probes;
  ConfigLoad load = load_config_file(config_path);
  if (!load.config) {
    std::cerr << global_secrets().redact(load.errors.str());
    return 2;
  }
  global_secrets().merge(load.config->secrets);
  std::vector<std::string> names;
  for (const auto& p : load.config->probes) names.push_back(p.spec.name);
  if (!probe_names.empty()) {
    for (const auto& n : probe_names) {
      if (std::find(names.begin(), names.end(), n) == names.end()) {
        std::string known;
        for (const auto& k : names) known += (known.empty() ? "" : ", ") + k;
        std::cerr << fmt::format("{}: no probe named \"{}\" (configured: {})\n", config_path, n,
                                 known);
        return 2;
      }
    }
    names = probe_names;
  }

  const auto started_wall = std::chrono::system_clock::now();
  const auto started = std::chrono::steady_clock::now();
  uv_loop_t loop;
  uv_loop_init(&loop);
  MonotonicClock clock;
  auto services = std::make_unique<LoopServices>(&loop);
  std::vector<OnceResult> results;
  {
    Engine engine(&loop, *services, clock);
    engine.on_result([&](const RunRecord& rec) {
      results.push_back({rec.spec.name, rec.spec.type, rec.spec.category, rec.target, rec.run_id,
                         rec.result, rec.duration_seconds, rec.attempts});
    });
    engine.apply(std::move(load.config->probes), /*schedule=*/false);
    engine.run_now(names, [&] {
      engine.stop();
      services->shutdown();
    });
    uv_run(&loop, UV_RUN_DEFAULT);
  }
  uv_run(&loop, UV_RUN_DEFAULT);
  services.reset();  // after the loop ran the close callbacks (lws needs that)
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_loop_close(&loop);
  const double gate_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();

  // Report in the order the user asked for (or config order).
  std::sort(results.begin(), results.end(), [&](const OnceResult& a, const OnceResult& b) {
    return std::find(names.begin(), names.end(), a.name) <
           std::find(names.begin(), names.end(), b.name);
  });
  bool all_ok = std::all_of(results.begin(), results.end(),
                            [](const OnceResult& r) { return r.result.success; });
  // One document for --json and --junit, so the report shows exactly what
  // the JSON shows (redacted when it was recorded).
  nlohmann::ordered_json out;
  out["passed"] = all_ok;
  out["results"] = nlohmann::ordered_json::array();
  for (const auto& r : results) {
    nlohmann::ordered_json j;
    j["name"] = r.name;
    j["type"] = r.type;
    j["category"] = r.category;
    j["target"] = r.target;
    j["run_id"] = r.run_id;
    if (is_trace_id(r.run_id)) j["trace_id"] = r.run_id;  // the same, as the state API
    const auto fields = result_json(r.result, r.duration, r.attempts);
    for (const auto& [k, v] : fields.items()) j[k] = v;
    out["results"].push_back(std::move(j));
  }
  int exit_code = all_ok ? 0 : 1;
  if (!options.junit_path.empty()) {
    const JunitSuite suite{"canaryd once " + config_path, junit_timestamp(started_wall),
                           host_name(), gate_seconds};
    const std::string error = write_file_atomically(options.junit_path, junit_xml(out, suite));
    if (!error.empty()) {
      std::cerr << "--junit: " << global_secrets().redact(error) << "\n";
      exit_code = 2;
    }
  }
  if (options.json) {
    std::cout << out.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
  } else {
    std::vector<std::vector<std::string>> rows;
    for (const auto& r : results) {
      rows.push_back({r.name, r.type, r.result.success ? "PASS" : "FAIL",
                      std::string(reason_name(r.result.reason)), format_seconds(r.duration),
                      one_line(r.result.message, 100)});
    }
    std::cout << render_table({"PROBE", "TYPE", "RESULT", "REASON", "LATENCY", "MESSAGE"}, rows);
    size_t failed = std::count_if(results.begin(), results.end(),
                                  [](const OnceResult& r) { return !r.result.success; });
    std::cout << fmt::format("{} of {} probes passed\n", results.size() - failed, results.size());
  }
  return exit_code;
}

}  // namespace canaryd
