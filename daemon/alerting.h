// The `alerting:` section and the Prometheus rule file generated from it
// (`canaryd rules --config FILE`): recording rules for success ratios and
// latency, and the P0/P1/P2 alerts of the users' escalation thresholds
// (../shared/SPEC.md), each of which can be tuned or switched off.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "base/yaml_section.h"
#include "probes/registry.h"

namespace canaryd {

// What an alert's threshold measures, which decides how it is written.
enum class ThresholdKind { kNone, kRatio, kSeconds, kCount };

struct AlertRuleConfig {
  std::string key;   // in the config, e.g. redis_down
  std::string name;  // the alert, e.g. CanaryRedisDown
  std::string severity;
  bool enabled = true;
  ThresholdKind kind = ThresholdKind::kNone;
  double threshold = 0;  // a ratio, seconds or a count, per kind
  Duration for_duration{0};
  bool long_window = false;  // evaluate over long_window (low-traffic probes)
  // A rule a probe type declares (probes/<type>/): its type and texts.
  std::string type;
  std::optional<TypeAlert> type_alert;
  // Its own alerting.rules.<key>.min_failing_locations; unset: the section's.
  std::optional<int> min_failing_locations;
};

// The alerts on one probe's results (a type's own and the p95 baseline): the
// only ones min_failing_locations applies to.
bool judges_probe_results(const AlertRuleConfig& rule);

struct AlertingConfig {
  Duration short_window;
  Duration long_window;
  // Runs a window must hold before a success-ratio alert may fire: one failed
  // run out of one must never page.
  int min_runs;
  // Locations (values of the global label `location`) that must see a probe
  // fail before its probe alerts fire. 1: one alert per failing location;
  // more: one alert per probe, across locations.
  int min_failing_locations = 1;
  std::string runbook_url_template;  // {{alert}} is replaced by the alert name
  std::string job;                   // Prometheus's job label for canaryd's own target
  // Types the p95 "performance baseline" alert applies to: a WebSocket hold or
  // an agent conversation is long by design.
  std::vector<std::string> latency_types;
  std::vector<AlertRuleConfig> rules;  // in a fixed order, P0 first
};

// The users' thresholds.
AlertingConfig default_alerting();

// Reads the section into `out` (starting from the defaults); errors are
// recorded in the section. `global_label_names` are the config's global
// labels: min_failing_locations above 1 needs one named location.
void read_alerting(YamlSection& s, AlertingConfig& out,
                   const std::vector<std::string>& global_label_names);

// The Prometheus rule file. `global_label_names` are the config's global
// labels (kept by every aggregation, so environments never mix).
std::string generate_rules(const AlertingConfig& cfg,
                           const std::vector<std::string>& global_label_names);

}  // namespace canaryd
