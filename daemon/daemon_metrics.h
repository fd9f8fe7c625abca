// canaryd's own series on /metrics: scheduler lag, runs in flight, skipped
// slots, configured probes, reloads, build info. They live for the whole
// process in a prometheus-cpp registry; the probe series are apart
// (probe_metrics.h).
//
// Thread-safety: the setters on the loop thread; the registry is read from any thread.
#pragma once

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <array>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "daemon/config.h"
#include "daemon/scheduler.h"
#include "daemon/shard.h"

namespace canaryd {

class DaemonMetrics {
 public:
  DaemonMetrics();
  std::shared_ptr<prometheus::Registry> registry() const { return registry_; }
  // Probe loop `loop`'s own lag histogram: each loop observes into its own,
  // so no lock is shared between loops.
  prometheus::Histogram& lag(int loop);
  void set_in_flight(size_t n) { in_flight_.Set(static_cast<double>(n)); }
  // A probe loop's saturation (the share of time it was busy, 0..1) and how
  // many probes it runs.
  void set_loop(int loop, double saturation, size_t probes);
  // The scheduler's count of skipped slots for `cause`, so far.
  void set_skipped(SkipCause cause, uint64_t n);
  // The probes of the config and of this shard, by type, and the shard
  // itself. These series carry the config's global labels (location, env),
  // so that the shard alerts can compare the shards of one location.
  void set_probe_counts(const std::vector<std::pair<std::string, std::string>>& global_labels,
                        const Shard& shard, const std::vector<std::string>& configured_types,
                        const std::vector<std::string>& assigned_types);
  // `is_reload` is false for the load at startup, which is not counted as a reload.
  void reload_result(bool ok, double unix_time, bool is_reload);

 private:
  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Family<prometheus::Histogram>& lag_;
  prometheus::Gauge& in_flight_;
  prometheus::Family<prometheus::Counter>& skipped_;
  prometheus::Family<prometheus::Gauge>& loop_saturation_;
  prometheus::Family<prometheus::Gauge>& loop_probes_;
  std::array<prometheus::Counter*, kSkipCauseCount> skipped_by_cause_{};
  std::array<double, kSkipCauseCount> skipped_seen_{};
  prometheus::Family<prometheus::Gauge>& configured_;
  prometheus::Family<prometheus::Gauge>& assigned_;
  prometheus::Family<prometheus::Gauge>& shard_info_;
  prometheus::Family<prometheus::Gauge>& shard_total_;
  std::vector<std::pair<prometheus::Family<prometheus::Gauge>*, prometheus::Gauge*>> labelled_;
  prometheus::Gauge& reload_ok_;
  prometheus::Gauge& reload_time_;
  prometheus::Family<prometheus::Counter>& reloads_;
  prometheus::Counter& reloads_ok_;
  prometheus::Counter& reloads_failed_;
};

}  // namespace canaryd
