#include "daemon/daemon_metrics.h"

#include <chrono>

#include "probes/registry.h"

#ifndef CANARYD_VERSION
#define CANARYD_VERSION "dev"
#endif

namespace canaryd {

using prometheus::BuildCounter;
using prometheus::BuildGauge;
using prometheus::BuildHistogram;

DaemonMetrics::DaemonMetrics()
    : registry_(std::make_shared<prometheus::Registry>()),
      lag_(BuildHistogram()
               .Name("canary_scheduler_lag_seconds")
               .Help("How late probe runs start: actual start minus scheduled time, per loop.")
               .Register(*registry_)),
      in_flight_(BuildGauge()
                     .Name("canary_probes_in_flight")
                     .Help("Probe runs currently in progress.")
                     .Register(*registry_)
                     .Add({})),
      skipped_(
          BuildCounter()
              .Name("canary_scheduler_skipped_runs_total")
              .Help(
                  "Scheduled slots not run, by cause: overlap (the previous run was still "
                  "going), late (the loop came too late to start it), missed (the loop was "
                  "stalled past it), starved (the run started, but the loop was too busy to judge "
                  "its timeout), limit (canaryd could not make the run at a limit of its own, such "
                  "as its "
                  "share of descriptors).")
              .Register(*registry_)),
      loop_saturation_(BuildGauge()
                           .Name("canary_loop_saturation_ratio")
                           .Help("Share of the last second a probe loop spent working rather "
                                 "than waiting for I/O or timers; near 1 it is overloaded.")
                           .Register(*registry_)),
      loop_probes_(
          BuildGauge().Name("canary_loop_probes").Help("Probes a loop runs.").Register(*registry_)),
      configured_(BuildGauge()
                      .Name("canary_probes_configured")
                      .Help("Probes in the running config, by type (every shard's).")
                      .Register(*registry_)),
      assigned_(BuildGauge()
                    .Name("canary_probes_assigned")
                    .Help("Probes this shard runs, by type.")
                    .Register(*registry_)),
      shard_info_(BuildGauge()
                      .Name("canary_shard_info")
                      .Help("This process's shard (--shard, --total-shards); always 1.")
                      .Register(*registry_)),
      shard_total_(BuildGauge()
                       .Name("canary_shard_total_shards")
                       .Help("How many shards split the config (--total-shards), as a number.")
                       .Register(*registry_)),
      reload_ok_(BuildGauge()
                     .Name("canary_config_last_reload_successful")
                     .Help("1 if the last config load or reload succeeded.")
                     .Register(*registry_)
                     .Add({})),
      reload_time_(BuildGauge()
                       .Name("canary_config_last_reload_success_timestamp_seconds")
                       .Help("Unix time of the last successful config load or reload.")
                       .Register(*registry_)
                       .Add({})),
      reloads_(BuildCounter()
                   .Name("canary_config_reloads_total")
                   .Help("Config reloads (SIGHUP or POST /-/reload) by result.")
                   .Register(*registry_)),
      reloads_ok_(reloads_.Add({{"result", "success"}})),
      reloads_failed_(reloads_.Add({{"result", "failure"}})) {
  // Every cause from the start, at 0: rates work from the first scrape.
  for (SkipCause cause : kSkipCauses)
    skipped_by_cause_[static_cast<size_t>(cause)] =
        &skipped_.Add({{"cause", std::string(skip_cause_name(cause))}});
  BuildGauge()
      .Name("canary_build_info")
      .Help("canaryd's version; always 1.")
      .Register(*registry_)
      .Add({{"version", CANARYD_VERSION}})
      .Set(1);
  BuildGauge()
      .Name("canary_start_time_seconds")
      .Help("Unix time at which canaryd started.")
      .Register(*registry_)
      .Add({})
      .Set(std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch())
               .count());
}

prometheus::Histogram& DaemonMetrics::lag(int loop) {
  return lag_.Add({{"loop", std::to_string(loop)}}, prometheus::Histogram::BucketBoundaries{
                                                        0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01,
                                                        0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5});
}

void DaemonMetrics::set_loop(int loop, double saturation, size_t probes) {
  const std::map<std::string, std::string> labels = {{"loop", std::to_string(loop)}};
  loop_saturation_.Add(labels).Set(saturation);
  loop_probes_.Add(labels).Set(static_cast<double>(probes));
}

void DaemonMetrics::set_skipped(SkipCause cause, uint64_t n) {
  const auto i = static_cast<size_t>(cause);
  const double v = static_cast<double>(n);
  if (v > skipped_seen_[i]) skipped_by_cause_[i]->Increment(v - skipped_seen_[i]);
  skipped_seen_[i] = v;
}

void DaemonMetrics::set_probe_counts(
    const std::vector<std::pair<std::string, std::string>>& global_labels, const Shard& shard,
    const std::vector<std::string>& configured_types,
    const std::vector<std::string>& assigned_types) {
  // The global labels may have changed with a reload: every series is made anew.
  for (auto [family, gauge] : labelled_) family->Remove(gauge);
  labelled_.clear();
  const std::map<std::string, std::string> base(global_labels.begin(), global_labels.end());
  auto add = [&](prometheus::Family<prometheus::Gauge>& family,
                 std::map<std::string, std::string> labels, double value) {
    labels.insert(base.begin(), base.end());
    auto& g = family.Add(labels);
    g.Set(value);
    labelled_.emplace_back(&family, &g);
  };
  auto by_type = [&](prometheus::Family<prometheus::Gauge>& family,
                     const std::vector<std::string>& types,
                     const std::map<std::string, std::string>& extra) {
    std::map<std::string, int> counts;
    for (const auto& t : probe_types()) counts[std::string(t.name)] = 0;
    for (const auto& type : types) counts[type]++;
    for (const auto& [type, n] : counts) {
      auto labels = extra;
      labels["type"] = type;
      add(family, std::move(labels), n);
    }
  };
  by_type(configured_, configured_types, {});
  // Named by shard too: the rules add up the shards' shares, each once
  // however many replicas run it.
  by_type(assigned_, assigned_types, {{"shard", std::to_string(shard.index)}});
  add(shard_info_,
      {{"shard", std::to_string(shard.index)}, {"total_shards", std::to_string(shard.total)}}, 1);
  add(shard_total_, {}, shard.total);
}

void DaemonMetrics::reload_result(bool ok, double unix_time, bool is_reload) {
  reload_ok_.Set(ok ? 1 : 0);
  if (ok) reload_time_.Set(unix_time);
  if (is_reload) (ok ? reloads_ok_ : reloads_failed_).Increment();
}

}  // namespace canaryd
