#include "daemon/once.h"

#include <fmt/format.h>
#include <uv.h>

#include <algorithm>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>

#include "daemon/config.h"
#include "daemon/engine.h"
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
}  // namespace

int run_once(const std::string& config_path, const std::vector<std::string>& probe_names,
             bool json) {
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

  // Report in the order the user asked for (or config order).
  std::sort(results.begin(), results.end(), [&](const OnceResult& a, const OnceResult& b) {
    return std::find(names.begin(), names.end(), a.name) <
           std::find(names.begin(), names.end(), b.name);
  });
  bool all_ok = std::all_of(results.begin(), results.end(),
                            [](const OnceResult& r) { return r.result.success; });
  if (json) {
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
      const auto fields = result_json(r.result, r.duration, r.attempts);
      for (const auto& [k, v] : fields.items()) j[k] = v;
      out["results"].push_back(std::move(j));
    }
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
  return all_ok ? 0 : 1;
}

}  // namespace canaryd
