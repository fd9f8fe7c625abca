// alerting.min_failing_locations as the rule file shows it: which alerts wait
// for several locations, and what their alerts carry. (What the rules then do
// with series is tested by promtool: deploy/prometheus/tests/locations.yml and
// replicas.yml.)
#include "daemon/alerting.h"

#include <yaml-cpp/yaml.h>

#include <catch2/catch.hpp>
#include <map>
#include <string>

#include "daemon/config.h"

namespace {

struct Alert {
  std::string expr;
  std::string description;
};

// name -> the alert, from the rule file a config generates.
std::map<std::string, Alert> alerts_of(const std::string& config_text) {
  auto load =
      canaryd::load_config_text(config_text, "test.yaml", canaryd::ConfigParts::kWithoutProbes);
  INFO(load.errors.str());
  REQUIRE(load.config);
  std::vector<std::string> globals;
  for (const auto& [name, value] : load.config->global.labels) globals.push_back(name);
  YAML::Node file = YAML::Load(canaryd::generate_rules(load.config->alerting, globals));
  std::map<std::string, Alert> out;
  for (const auto& group : file["groups"])
    for (const auto& rule : group["rules"])
      if (rule["alert"])
        out[rule["alert"].as<std::string>()] = {
            rule["expr"].as<std::string>(), rule["annotations"]["description"].as<std::string>()};
  return out;
}

bool has(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

const char* kGlobals = "global:\n  labels: {env: production, location: eu-west-1}\nprobes: []\n";

}  // namespace

TEST_CASE("one failing location is enough by default: an alert per probe and location") {
  auto alerts = alerts_of(std::string(kGlobals) + "alerting: {}\n");
  const Alert& redis = alerts.at("CanaryRedisDown");
  CHECK_FALSE(has(redis.expr, "count by"));
  CHECK(has(redis.description, "location=%q"));
}

TEST_CASE("min_failing_locations: the section's number for every probe alert, a rule's own first") {
  auto alerts = alerts_of(std::string(kGlobals) +
                          "alerting:\n"
                          "  min_failing_locations: 2\n"
                          "  rules:\n"
                          "    redis_down: {min_failing_locations: 3}\n"
                          "    websocket_success_low: {min_failing_locations: 1}\n");
  // One alert per probe: grouped without location, counted across locations.
  const Alert& ws = alerts.at("CanaryWebSocketSuccessCritical");
  CHECK(has(ws.expr, "min by (probe, type, category, env) ("));
  CHECK(has(ws.expr, "count by (probe, type, category, env) ("));
  CHECK(has(ws.expr, ">= 2)"));
  CHECK(has(ws.description, "2 must fail to page"));
  // No location to name: its queries (the count, the top reason) sum them.
  CHECK_FALSE(has(ws.description, "$labels.location"));
  CHECK_FALSE(has(ws.description, "location=%q"));
  // Latency: the worst location is the slowest.
  CHECK(has(alerts.at("CanaryDatabaseLatencyCritical").expr,
            "max by (probe, type, category, env) ("));
  CHECK(has(alerts.at("CanaryLatencyP95High").expr, ">= 2)"));
  CHECK(has(alerts.at("CanaryRedisDown").expr, ">= 3)"));
  CHECK_FALSE(has(alerts.at("CanaryWebSocketSuccessLow").expr, "count by"));
  // Aggregates and canaryd's own alerts stay per location.
  CHECK_FALSE(has(alerts.at("CanaryOverallSuccessLow").expr, "count by"));
  CHECK_FALSE(has(alerts.at("CanaryTLSCertExpiryCritical").expr, "count by"));
}

TEST_CASE(
    "across locations, an overloaded canaryd's location does not count unless that alert is off") {
  const std::string rules = "alerting:\n  rules:\n    redis_down: {min_failing_locations: 2}\n";
  auto with = alerts_of(std::string(kGlobals) + rules);
  CHECK(has(with.at("CanaryRedisDown").expr,
            "unless on (env, location) ALERTS{alertname=\"CanarydOverloaded\", "
            "alertstate=\"firing\"}"));
  auto without =
      alerts_of(std::string(kGlobals) + rules + "    canaryd_overloaded: {enabled: false}\n");
  CHECK_FALSE(has(without.at("CanaryRedisDown").expr, "ALERTS"));
}

TEST_CASE("min_failing_locations needs a location label and a probe alert") {
  auto errors_of = [](const std::string& text) {
    auto load = canaryd::load_config_text(text, "test.yaml", canaryd::ConfigParts::kWithoutProbes);
    CHECK_FALSE(load.config);
    return load.errors.str();
  };
  CHECK(errors_of("global:\n  labels: {env: staging}\nprobes: []\n"
                  "alerting:\n  min_failing_locations: 2\n") ==
        "test.yaml:5: alerting.min_failing_locations: 2 locations need a global label named "
        "location (global.labels), and this config has none\n");
  CHECK(errors_of(std::string(kGlobals) +
                  "alerting:\n  rules:\n    category_success_low: {min_failing_locations: 2}\n") ==
        "test.yaml:6: alerting.rules.category_success_low.min_failing_locations: applies only to "
        "the alerts on one probe's results (a probe type's alerts and latency_p95_high)\n");
  // 1 is what every config means without the key, location label or not.
  auto one = canaryd::load_config_text("probes: []\nalerting:\n  min_failing_locations: 1\n",
                                       "test.yaml", canaryd::ConfigParts::kWithoutProbes);
  CHECK(one.config);
}
