// Prometheus metrics, updated from each result and rendered in the text
// format by prometheus-cpp. Names and labels are a contract (DESIGN.md): dashboards and the
// generated alert rules query them.
//
// Two sets: the daemon's own series live for the whole process; the probe
// series carry the config's global labels and are rebuilt only when those
// labels change.
//
// Thread-safety: record()/sync_probes()/set_*() on the loop thread;
// render()/render_metrics() from any thread.
#pragma once

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <map>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "daemon/config.h"
#include "daemon/engine.h"

namespace canaryd {

// The probe series. prometheus-cpp keeps a label map and hash-table entries
// per series, about 20 KB for an HTTP probe's two dozen series: 200 MB at
// 10,000 probes before any run. So the values live here, compactly (labels
// once per probe, histograms as bucket counts), and prometheus-cpp builds and
// serializes the families only when /metrics is scraped, a bounded slice of
// probes at a time.
class ProbeMetrics {
 public:
  explicit ProbeMetrics(std::vector<std::pair<std::string, std::string>> global_labels);
  ~ProbeMetrics();
  const std::vector<std::pair<std::string, std::string>>& global_labels() const {
    return global_labels_;
  }

  // Creates the series of new probes (every reason at 0) and removes those of
  // probes no longer configured.
  void sync_probes(const std::vector<const ConfiguredProbe*>& probes);
  void record(const RunRecord& record);

  // Appends the exposition of every probe series (text format 0.0.4).
  void render(std::string& out) const;

 private:
  struct Series;
  struct Family;
  static const std::vector<Family>& families();

  std::vector<std::pair<std::string, std::string>> global_labels_;
  // The set of probes: record() and render() share it, sync_probes() changes
  // it. Each Series locks its own values, so a scrape never holds up a run's
  // result for longer than one probe's copy.
  mutable std::shared_mutex mu_;
  std::map<std::string, std::unique_ptr<Series>, std::less<>> series_;  // by probe name
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

// The exposition of the daemon's own series, then the probes'.
std::string render_metrics(const DaemonMetrics& daemon, const ProbeMetrics* probes);

}  // namespace canaryd
