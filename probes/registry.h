// The one explicit table of probe types. Adding a type is one line here plus
// its file pair; there are no self-registering static objects.
#pragma once

#include <chrono>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/yaml_section.h"
#include "probes/probe.h"

namespace canaryd {

// The fields every probe has, parsed by the daemon before the type's own section.
struct ProbeSpec {
  std::string name;
  std::string type;
  std::string category;
  bool critical = false;
  Duration interval{0};
  Duration timeout{0};
  std::vector<std::pair<std::string, std::string>> labels;  // per-probe, shown on canary_probe_info
  // Confirm before fail: a failed attempt is tried again, `retry_delay`
  // later, up to `attempts` attempts in all, inside the one timeout. 1: no retry.
  int attempts = 1;
  Duration retry_delay{0};
  // metrics.detail: full exports a histogram per phase; basic only the last
  // run's phase times, as gauges (docs/metrics.md, "Detail").
  enum class MetricsDetail { kBasic, kFull };
  // kFull for a spec made in code (tests); a config's default is basic
  // (GlobalConfig::default_detail).
  MetricsDetail detail = MetricsDetail::kFull;
  // metrics.buckets: the duration histogram's upper bounds, ascending; empty:
  // the detail's default.
  std::vector<double> duration_buckets;
  // global.tracing.sampled: the sampled flag of the traceparent every request
  // of a run carries (base/trace_context.h).
  bool trace_sampled = true;
  // Changes whenever anything about the probe changes (including a rotated
  // secret), so a reload keeps unchanged probes exactly as they were.
  std::string fingerprint;
};

// An alert a type adds to the generated Prometheus rules (`canaryd rules`),
// declared as data: daemon/alerting.cc writes each one from its measure and
// texts, with no branch on a type name. The texts may use {probe} (the
// probe, its type and category), {window}, {value} (the measured value,
// humanized), {threshold}, {for} and {down_for} (for + the long window: how
// long nothing has succeeded when the alert fires).
struct TypeAlert {
  enum class Measure {
    kSuccessAtMost,     // the success ratio is at most the threshold (0: nothing succeeds)
    kSuccessBelow,      // the success ratio is below the threshold
    kMeanSecondsAbove,  // the mean run time is above the threshold, in seconds
    // Over one of the type's histogram families (`metric`), in seconds: its
    // mean, or its `quantile`, is above the threshold.
    kHistogramMeanAbove,
    kHistogramQuantileAbove,
  };
  std::string_view key;       // its key under alerting.rules, e.g. redis_down
  std::string_view name;      // the alert, e.g. CanaryRedisDown
  std::string_view severity;  // P0, P1 or P2 (the users' escalation levels)
  Measure measure;
  double threshold;  // a ratio or seconds, per measure
  std::chrono::seconds for_duration;
  bool long_window;  // judged over the long window: a low-traffic type
  std::string_view summary;
  std::string_view description;  // the top failure reason is appended
  std::string_view metric = {};  // the histogram family of the kHistogram* measures
  double quantile = 0;           // kHistogramQuantileAbove's, e.g. 0.99
};

// A metric family a type adds to every probe's own, declared as data: the
// daemon exports it with the probe's labels plus `labels`, reading each value
// from the field `field` of the run's ProbeDetails. Two types may declare the
// same family (the agent's WebSocket facts); the declarations must be equal.
struct TypeMetric {
  enum class Kind {
    kGauge,      // the field's number, as of the last run that had it
    kInfo,       // always 1, with the field's text (the last run's) as the one label
    kCounter,    // adds what each run's field counts, for the probe's counted labels only:
                 // a text or an object of the labels counts 1, a list counts each entry,
                 // and any other object maps a label value to what it adds
    kHistogram,  // observes the field's number, or the counts a run left in
                 // ProbeDetails::observed under the field's name (in `bounds`);
                 // present from the start, at 0, like the duration histogram
  };
  std::string_view name;
  std::string_view help;
  Kind kind;
  std::string_view field;
  std::vector<std::string_view> labels = {};
  // A histogram's upper bounds, ascending, with metrics.detail full; with
  // basic, `basic_bounds`, each of which must be one of `bounds` (counts are
  // merged into the coarser buckets, never split).
  std::vector<double> bounds = {};
  std::vector<double> basic_bounds = {};
};

struct ProbeType {
  std::string_view name;
  // Every failure reason the type can report; each is pre-created at 0 in
  // canary_probe_failures_total so rates work from the first scrape.
  std::vector<Reason> reasons;
  // Every phase the type reports, pre-created in the phase histogram.
  std::vector<std::string_view> phases;
  // Reads the type's own section (the key named after the type). Records
  // errors in the section and returns nullptr when the section is invalid.
  ProbePtr (*make)(const ProbeSpec& spec, YamlSection& section);
  // The type's own metric families, beyond those every probe has.
  std::vector<TypeMetric> metrics = {};
  // The type's own alerts, beyond those every probe gets.
  std::vector<TypeAlert> alerts = {};
  // Whether the p95 "performance baseline" alert applies by default: a
  // WebSocket hold or an agent conversation is long by design.
  bool latency_baseline = false;
};

const std::vector<ProbeType>& probe_types();
const ProbeType* find_probe_type(std::string_view name);
std::string probe_type_names();  // "http, redis, ..." for error messages

}  // namespace canaryd
