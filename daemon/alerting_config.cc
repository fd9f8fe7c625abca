#include <fmt/format.h>

#include <algorithm>
#include <chrono>

#include "daemon/alerting.h"

// The alerting: section's defaults and its strict reading (alerting.cc
// writes the rule file).
namespace canaryd {

namespace {

using namespace std::chrono_literals;

struct RuleDefault {
  const char* key;
  const char* name;
  const char* severity;
  ThresholdKind kind;
  double threshold;
  Duration for_duration;
  bool long_window;
};

// The brief's escalation thresholds for every probe, whatever its type. A
// type's own alerts are declared in its folder (ProbeType::alerts).
const std::vector<RuleDefault>& rule_defaults() {
  static const std::vector<RuleDefault> rules = {
      {"critical_success_low", "CanaryCriticalProbesFailing", "P1", ThresholdKind::kRatio, 0.8,
       10min, false},
      {"canaryd_down", "CanarydDown", "P1", ThresholdKind::kNone, 0, 5min, false},
      {"canaryd_overloaded", "CanarydOverloaded", "P1", ThresholdKind::kRatio, 0.9, 5min, false},
      {"shard_missing", "CanarydShardMissing", "P1", ThresholdKind::kNone, 0, 5min, false},
      {"shard_totals_mismatch", "CanarydShardTotalsMismatch", "P1", ThresholdKind::kNone, 0, 5min,
       false},
      {"probes_unassigned", "CanarydProbesUnassigned", "P1", ThresholdKind::kNone, 0, 5min, false},
      {"tls_expiry_critical", "CanaryTLSCertExpiryCritical", "P1", ThresholdKind::kSeconds,
       3 * 86400, 10min, false},
      {"overall_success_low", "CanaryOverallSuccessLow", "P2", ThresholdKind::kRatio, 0.85, 15min,
       false},
      {"category_success_low", "CanaryCategorySuccessLow", "P2", ThresholdKind::kRatio, 0.75, 15min,
       false},
      {"latency_p95_high", "CanaryLatencyP95High", "P2", ThresholdKind::kSeconds, 2, 30min, false},
      {"probe_stale", "CanaryProbeStale", "P2", ThresholdKind::kCount, 3, 0s, false},
      {"config_reload_failed", "CanaryConfigReloadFailed", "P2", ThresholdKind::kNone, 0, 1min,
       false},
      {"tls_expiry_warning", "CanaryTLSCertExpiringSoon", "P2", ThresholdKind::kSeconds, 14 * 86400,
       1h, false},
  };
  return rules;
}

}  // namespace

AlertingConfig default_alerting() {
  AlertingConfig cfg;
  cfg.short_window = 5min;
  cfg.long_window = 1h;
  cfg.min_runs = 3;
  cfg.job = "canaryd";
  cfg.latency_types.clear();
  for (const auto& type : probe_types())
    if (type.latency_baseline) cfg.latency_types.emplace_back(type.name);
  // P0 first, and within a level the types' own alerts (in registry order)
  // before those every probe gets.
  for (std::string_view level : {"P0", "P1", "P2"}) {
    for (const auto& type : probe_types()) {
      for (const auto& a : type.alerts) {
        if (a.severity != level) continue;
        bool ratio = a.measure == TypeAlert::Measure::kSuccessAtMost ||
                     a.measure == TypeAlert::Measure::kSuccessBelow;
        cfg.rules.push_back({std::string(a.key), std::string(a.name), std::string(a.severity), true,
                             ratio ? ThresholdKind::kRatio : ThresholdKind::kSeconds, a.threshold,
                             a.for_duration, a.long_window, std::string(type.name), a,
                             std::nullopt});
      }
    }
    for (const auto& d : rule_defaults())
      if (d.severity == level)
        cfg.rules.push_back({d.key,
                             d.name,
                             d.severity,
                             true,
                             d.kind,
                             d.threshold,
                             d.for_duration,
                             d.long_window,
                             {},
                             std::nullopt,
                             std::nullopt});
  }
  return cfg;
}

bool judges_probe_results(const AlertRuleConfig& rule) {
  return rule.type_alert.has_value() || rule.key == "latency_p95_high";
}

void read_alerting(YamlSection& s, AlertingConfig& out,
                   const std::vector<std::string>& global_label_names) {
  // Locations are told apart by the label `location` alone: without it every
  // canaryd of an environment looks like one location, and N of them could
  // never agree.
  const bool has_location = std::find(global_label_names.begin(), global_label_names.end(),
                                      "location") != global_label_names.end();
  auto read_locations = [&](YamlSection& sec) -> std::optional<int> {
    auto n = sec.get_int("min_failing_locations", 1, 1000);
    if (n && *n > 1 && !has_location) {
      sec.error("min_failing_locations",
                fmt::format("{} locations need a global label named location "
                            "(global.labels), and this config has none",
                            *n));
      return std::nullopt;
    }
    return n ? std::optional<int>(static_cast<int>(*n)) : std::nullopt;
  };
  if (auto w = s.get_duration("short_window")) out.short_window = *w;
  if (auto w = s.get_duration("long_window")) out.long_window = *w;
  if (out.long_window < out.short_window)
    s.error("long_window", "must not be shorter than short_window");
  if (auto n = s.get_int("min_runs", 1, 100000)) out.min_runs = static_cast<int>(*n);
  if (auto n = read_locations(s)) out.min_failing_locations = *n;
  if (auto t = s.get_string("runbook_url_template")) out.runbook_url_template = *t;
  if (auto j = s.get_string("job")) out.job = *j;
  if (auto types = s.get_string_list("latency_types")) out.latency_types = *types;
  if (auto rules = s.get_section("rules")) {
    for (auto& rule : out.rules) {
      auto r = rules->get_section(rule.key);
      if (!r) continue;
      if (auto e = r->get_bool("enabled")) rule.enabled = *e;
      if (auto f = r->get_duration("for")) rule.for_duration = *f;
      if (auto sev = r->get_string("severity")) {
        if (*sev != "P0" && *sev != "P1" && *sev != "P2")
          r->error("severity", fmt::format("\"{}\" is not P0, P1 or P2", *sev));
        else
          rule.severity = *sev;
      }
      if (auto w = r->get_string("window")) {
        if (*w != "short" && *w != "long")
          r->error("window", fmt::format("\"{}\" is not short or long", *w));
        else
          rule.long_window = *w == "long";
      }
      if (r->has("min_failing_locations") && !judges_probe_results(rule)) {
        r->get_node("min_failing_locations");
        r->error("min_failing_locations",
                 "applies only to the alerts on one probe's results (a probe type's alerts "
                 "and latency_p95_high)");
      } else if (auto n = read_locations(*r)) {
        rule.min_failing_locations = *n;
      }
      switch (rule.kind) {
        case ThresholdKind::kRatio:
          if (auto t = r->get_ratio("threshold")) rule.threshold = *t;
          break;
        case ThresholdKind::kSeconds:
          if (auto t = r->get_duration("threshold"))
            rule.threshold = std::chrono::duration<double>(*t).count();
          break;
        case ThresholdKind::kCount:
          if (auto t = r->get_int("threshold", 1, 1000)) rule.threshold = static_cast<double>(*t);
          break;
        case ThresholdKind::kNone:
          break;
      }
      r->finish();
    }
    rules->finish();  // an unknown alert key is an error naming it
  }
  s.finish();
}

}  // namespace canaryd
