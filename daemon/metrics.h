// Prometheus metrics, built once with prometheus-cpp and updated from each
// result. Names and labels are a contract (DESIGN.md): dashboards and the
// generated alert rules query them.
//
// Two registries: the daemon's own series live for the whole process; the
// probe series carry the config's global labels and are rebuilt only when
// those labels change.
//
// Thread-safety: record()/sync_probes()/set_*() on the loop thread; render()
// from any thread (prometheus-cpp metrics are atomic and families locked).
#pragma once

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "daemon/config.h"
#include "daemon/engine.h"

namespace canaryd {

class ProbeMetrics {
 public:
  explicit ProbeMetrics(std::vector<std::pair<std::string, std::string>> global_labels);
  ~ProbeMetrics();
  const std::vector<std::pair<std::string, std::string>>& global_labels() const {
    return global_labels_;
  }
  std::shared_ptr<prometheus::Registry> registry() const { return registry_; }

  // Creates the series of new probes (every reason at 0) and removes those of
  // probes no longer configured.
  void sync_probes(const std::vector<const ConfiguredProbe*>& probes);
  void record(const RunRecord& record);

 private:
  struct Series;
  prometheus::Labels base_labels(const ProbeSpec& spec) const;
  void remove(Series& s);

  std::vector<std::pair<std::string, std::string>> global_labels_;
  std::shared_ptr<prometheus::Registry> registry_;
  // failures_ is registered before runs_: a scrape collects families in that
  // order, so a run finishing mid-scrape can make runs_total one ahead of the
  // failures, never behind, and a failure ratio never exceeds 1.
  prometheus::Family<prometheus::Counter>& failures_;
  prometheus::Family<prometheus::Counter>& runs_;
  prometheus::Family<prometheus::Gauge>& success_;
  prometheus::Family<prometheus::Histogram>& duration_;
  prometheus::Family<prometheus::Histogram>& phase_duration_;
  prometheus::Family<prometheus::Gauge>& last_success_;
  prometheus::Family<prometheus::Gauge>& last_run_;
  prometheus::Family<prometheus::Gauge>& cert_expiry_;
  prometheus::Family<prometheus::Gauge>& info_;
  prometheus::Family<prometheus::Gauge>& interval_;
  prometheus::Family<prometheus::Gauge>& timeout_;
  prometheus::Family<prometheus::Gauge>& ws_subprotocol_;
  prometheus::Family<prometheus::Gauge>& ws_close_code_;
  prometheus::Family<prometheus::Gauge>& ws_connections_ok_;
  prometheus::Family<prometheus::Gauge>& ws_connections_;
  prometheus::Family<prometheus::Counter>& agent_missing_;
  prometheus::Family<prometheus::Counter>& agent_field_missing_;
  prometheus::Family<prometheus::Counter>& agent_received_;
  std::unordered_map<std::string, std::unique_ptr<Series>> series_;  // by probe name
};

class DaemonMetrics {
 public:
  DaemonMetrics();
  std::shared_ptr<prometheus::Registry> registry() const { return registry_; }
  void observe_lag(double seconds) { lag_.Observe(seconds); }
  void set_in_flight(size_t n) { in_flight_.Set(static_cast<double>(n)); }
  void set_skipped_total(uint64_t n);
  void set_configured(const std::vector<const ConfiguredProbe*>& probes);
  // `is_reload` is false for the load at startup, which is not counted as a reload.
  void reload_result(bool ok, double unix_time, bool is_reload);

 private:
  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Histogram& lag_;
  prometheus::Gauge& in_flight_;
  prometheus::Counter& skipped_;
  prometheus::Family<prometheus::Gauge>& configured_;
  prometheus::Gauge& reload_ok_;
  prometheus::Gauge& reload_time_;
  prometheus::Family<prometheus::Counter>& reloads_;
  prometheus::Counter& reloads_ok_;
  prometheus::Counter& reloads_failed_;
  std::map<std::string, prometheus::Gauge*> configured_by_type_;
  double skipped_seen_ = 0;
};

// Renders registries in the text exposition format.
std::string render_metrics(const std::vector<std::shared_ptr<prometheus::Registry>>& registries);

}  // namespace canaryd
