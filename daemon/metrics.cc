#include "daemon/metrics.h"

#include <prometheus/text_serializer.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <limits>
#include <map>
#include <mutex>
#include <shared_mutex>
#include <sstream>

#include "probes/registry.h"

#ifndef CANARYD_VERSION
#define CANARYD_VERSION "dev"
#endif

namespace canaryd {

namespace {

using prometheus::BuildCounter;
using prometheus::BuildGauge;
using prometheus::BuildHistogram;

// Probe latencies span sub-millisecond loopback checks to two-minute agent
// conversations.
constexpr std::array<double, 14> kLatencyBounds = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                                   1,     2,    5,     10,   30,  60,   120};

using Label = prometheus::ClientMetric::Label;
using Labels = std::vector<Label>;

// A histogram's state: a count per bucket (not cumulative; the last is +Inf)
// and the sum.
struct Histo {
  std::array<uint64_t, kLatencyBounds.size() + 1> counts{};
  double sum = 0;

  void observe(double v) {
    // "le": the first bound at or above the value.
    auto bound = std::lower_bound(kLatencyBounds.begin(), kLatencyBounds.end(), v);
    counts[static_cast<size_t>(bound - kLatencyBounds.begin())]++;
    sum += v;
  }
};

Labels to_labels(const std::map<std::string, std::string>& m) {
  Labels out;
  out.reserve(m.size());
  for (const auto& [k, v] : m) out.push_back({k, v});
  return out;
}

// `base` plus one more label, kept in name order as the text format's
// consumers (and prometheus-cpp's own families) have them.
Labels with(const Labels& base, const char* name, const std::string& value) {
  Labels out;
  out.reserve(base.size() + 1);
  bool placed = false;
  for (const auto& l : base) {
    if (!placed && l.name > name) {
      out.push_back({name, value});
      placed = true;
    }
    out.push_back(l);
  }
  if (!placed) out.push_back({name, value});
  return out;
}

prometheus::ClientMetric scalar(Labels labels, prometheus::MetricType type, double v) {
  prometheus::ClientMetric m;
  m.label = std::move(labels);
  if (type == prometheus::MetricType::Counter) {
    m.counter.value = v;
  } else {
    m.gauge.value = v;
  }
  return m;
}

prometheus::ClientMetric histogram(Labels labels, const Histo& h) {
  prometheus::ClientMetric m;
  m.label = std::move(labels);
  const auto& bounds = kLatencyBounds;
  uint64_t cumulative = 0;
  m.histogram.bucket.reserve(h.counts.size());
  for (size_t i = 0; i < h.counts.size(); ++i) {
    cumulative += h.counts[i];
    m.histogram.bucket.push_back(
        {cumulative, i < bounds.size() ? bounds[i] : std::numeric_limits<double>::infinity()});
  }
  m.histogram.sample_count = cumulative;
  m.histogram.sample_sum = h.sum;
  return m;
}

}  // namespace

struct ProbeMetrics::Series {
  mutable std::mutex mu;  // the values below; labels and keys never change
  Labels labels;
  Labels info_labels;
  std::string extra_key;  // the probe's Probe::Series, flattened: a change rebuilds
  double interval = 0;
  double timeout = 0;
  double runs = 0;
  std::vector<std::pair<Reason, double>> failures;  // every reason of the type
  Histo duration;
  std::vector<std::pair<std::string, Histo>> phases;
  // Created at the first result that carries them: no value is not "failing".
  std::optional<double> success;
  std::optional<double> last_success;
  std::optional<double> last_run;
  std::optional<double> cert_expiry;
  // WebSocket types.
  std::optional<std::string> subprotocol;  // a configured value, redacted, or "none"
  std::optional<double> close_code;
  std::optional<double> connections_ok;
  std::optional<double> connections;
  // Agent conversations: pre-created from the probe's configured events.
  std::vector<std::pair<std::string, double>> missing;
  std::vector<std::pair<std::pair<std::string, std::string>, double>> field_missing;
  std::vector<std::pair<std::string, double>> received;
};

struct ProbeMetrics::Family {
  const char* name;
  const char* help;
  prometheus::MetricType type;
  void (*collect)(const Series& s, std::vector<prometheus::ClientMetric>& out);
};

namespace {
std::string extra_key(const Probe::Series& x) {
  std::string key;
  for (const auto& p : x.phases) key += "p:" + p + '\n';
  for (const auto& e : x.events) key += "e:" + e + '\n';
  for (const auto& [e, f] : x.fields) key += "f:" + e + '.' + f + '\n';
  return key;
}

constexpr auto kCounter = prometheus::MetricType::Counter;
constexpr auto kGauge = prometheus::MetricType::Gauge;

void optional_gauge(const Labels& labels, const std::optional<double>& v,
                    std::vector<prometheus::ClientMetric>& out) {
  if (v) out.push_back(scalar(labels, kGauge, *v));
}
}  // namespace

const std::vector<ProbeMetrics::Family>& ProbeMetrics::families() {
  using Out = std::vector<prometheus::ClientMetric>;
  // failures_total comes before runs_total: a scrape renders families in this
  // order, so a run finishing mid-scrape can make runs_total one ahead of the
  // failures, never behind, and a failure ratio never exceeds 1.
  static const std::vector<Family> all = {
      {"canary_probe_failures_total", "Failed probe runs by failure reason.", kCounter,
       [](const Series& s, Out& out) {
         for (const auto& [r, n] : s.failures)
           out.push_back(
               scalar(with(s.labels, "reason", std::string(reason_name(r))), kCounter, n));
       }},
      {"canary_probe_runs_total", "Probe runs completed, whatever their result.", kCounter,
       [](const Series& s, Out& out) { out.push_back(scalar(s.labels, kCounter, s.runs)); }},
      {"canary_probe_success", "1 if the probe's last run succeeded, 0 if it failed.", kGauge,
       [](const Series& s, Out& out) { optional_gauge(s.labels, s.success, out); }},
      {"canary_probe_duration_seconds", "Duration of probe runs, end to end.",
       prometheus::MetricType::Histogram,
       [](const Series& s, Out& out) { out.push_back(histogram(s.labels, s.duration)); }},
      {"canary_probe_phase_duration_seconds", "Duration of each phase of probe runs.",
       prometheus::MetricType::Histogram,
       [](const Series& s, Out& out) {
         for (const auto& [phase, h] : s.phases)
           out.push_back(histogram(with(s.labels, "phase", phase), h));
       }},
      {"canary_probe_last_success_timestamp_seconds",
       "Unix time of the probe's last successful run.", kGauge,
       [](const Series& s, Out& out) { optional_gauge(s.labels, s.last_success, out); }},
      {"canary_probe_last_run_timestamp_seconds",
       "Unix time the probe's last run finished, whatever its result.", kGauge,
       [](const Series& s, Out& out) { optional_gauge(s.labels, s.last_run, out); }},
      {"canary_tls_cert_expiry_timestamp_seconds",
       "Unix time at which the target's leaf TLS certificate expires.", kGauge,
       [](const Series& s, Out& out) { optional_gauge(s.labels, s.cert_expiry, out); }},
      {"canary_probe_info", "Configured probes, for joins; always 1.", kGauge,
       [](const Series& s, Out& out) { out.push_back(scalar(s.info_labels, kGauge, 1)); }},
      {"canary_probe_interval_seconds", "Configured interval between runs of the probe.", kGauge,
       [](const Series& s, Out& out) { out.push_back(scalar(s.labels, kGauge, s.interval)); }},
      {"canary_probe_timeout_seconds", "Configured timeout of one run of the probe.", kGauge,
       [](const Series& s, Out& out) { out.push_back(scalar(s.labels, kGauge, s.timeout)); }},
      {"canary_ws_subprotocol_info",
       "The subprotocol the server last selected (a configured value, secrets redacted; "
       "\"none\" if it selected none); always 1.",
       kGauge,
       [](const Series& s, Out& out) {
         if (s.subprotocol)
           out.push_back(scalar(with(s.labels, "subprotocol", *s.subprotocol), kGauge, 1));
       }},
      {"canary_ws_close_code",
       "The last WebSocket close code seen (1000 normal, 1006 dropped without a close frame, "
       "1011 server error, ...).",
       kGauge, [](const Series& s, Out& out) { optional_gauge(s.labels, s.close_code, out); }},
      {"canary_ws_connections_ok", "Connections of the last run that succeeded.", kGauge,
       [](const Series& s, Out& out) { optional_gauge(s.labels, s.connections_ok, out); }},
      {"canary_ws_connections_configured", "Connections each run opens at once.", kGauge,
       [](const Series& s, Out& out) { optional_gauge(s.labels, s.connections, out); }},
      {"canary_agent_event_missing_total",
       "Agent runs that failed without this expected event arriving.", kCounter,
       [](const Series& s, Out& out) {
         for (const auto& [event, n] : s.missing)
           out.push_back(scalar(with(s.labels, "event", event), kCounter, n));
       }},
      {"canary_agent_event_field_missing_total",
       "Agent events that arrived without a required field.", kCounter,
       [](const Series& s, Out& out) {
         for (const auto& [ef, n] : s.field_missing)
           out.push_back(
               scalar(with(with(s.labels, "event", ef.first), "field", ef.second), kCounter, n));
       }},
      {"canary_agent_events_received_total",
       "Agent event frames received, by configured type; any other type counts as \"other\".",
       kCounter,
       [](const Series& s, Out& out) {
         for (const auto& [event, n] : s.received)
           out.push_back(scalar(with(s.labels, "event", event), kCounter, n));
       }},
  };
  return all;
}

ProbeMetrics::ProbeMetrics(std::vector<std::pair<std::string, std::string>> global_labels)
    : global_labels_(std::move(global_labels)) {}

ProbeMetrics::~ProbeMetrics() = default;

void ProbeMetrics::sync_probes(const std::vector<const ConfiguredProbe*>& probes) {
  auto base_labels = [&](const ProbeSpec& spec) {
    std::map<std::string, std::string> labels;
    for (const auto& [k, v] : global_labels_) labels[k] = v;
    labels["probe"] = spec.name;
    labels["type"] = spec.type;
    labels["category"] = spec.category;
    return labels;
  };
  auto info_labels = [&](const ProbeSpec& spec) {
    auto labels = base_labels(spec);
    labels["critical"] = spec.critical ? "true" : "false";
    for (const auto& [k, v] : spec.labels) labels[k] = v;
    return to_labels(labels);
  };
  // Built outside the lock: a scrape in progress holds it shared.
  std::map<std::string, std::unique_ptr<Series>, std::less<>> next;
  std::unique_lock lock(mu_, std::defer_lock);
  {
    std::shared_lock read(mu_);
    for (const auto* p : probes) {
      const Probe::Series extra = p->probe ? p->probe->series() : Probe::Series{};
      Labels info = info_labels(p->spec);
      std::string key = extra_key(extra);
      auto old = series_.find(p->spec.name);
      if (old != series_.end() && old->second->info_labels == info &&
          old->second->extra_key == key) {
        next.emplace(p->spec.name, nullptr);  // kept: moved over below
        continue;
      }
      auto s = std::make_unique<Series>();
      s->labels = to_labels(base_labels(p->spec));
      s->info_labels = std::move(info);
      s->extra_key = std::move(key);
      for (Reason r : p->type->reasons) s->failures.emplace_back(r, 0);
      for (auto phase : p->type->phases) s->phases.emplace_back(std::string(phase), Histo{});
      for (const auto& phase : extra.phases) {
        bool known = std::any_of(s->phases.begin(), s->phases.end(),
                                 [&](const auto& x) { return x.first == phase; });
        if (!known) s->phases.emplace_back(phase, Histo{});
      }
      for (const auto& event : extra.events) {
        s->missing.emplace_back(event, 0);
        s->received.emplace_back(event, 0);
      }
      if (!extra.events.empty()) s->received.emplace_back("other", 0);
      for (const auto& ef : extra.fields) s->field_missing.emplace_back(ef, 0);
      next.emplace(p->spec.name, std::move(s));
    }
  }
  lock.lock();
  for (auto& [name, s] : next) {
    if (!s) s = std::move(series_.at(name));
  }
  series_ = std::move(next);
  for (const auto* p : probes) {
    Series& s = *series_.at(p->spec.name);
    std::lock_guard values(s.mu);
    s.interval = std::chrono::duration<double>(p->spec.interval).count();
    s.timeout = std::chrono::duration<double>(p->spec.timeout).count();
  }
}

void ProbeMetrics::record(const RunRecord& rec) {
  std::shared_lock lock(mu_);
  auto it = series_.find(rec.spec.name);
  if (it == series_.end()) return;
  Series& s = *it->second;
  std::lock_guard values(s.mu);
  s.runs += 1;
  s.success = rec.result.success ? 1 : 0;
  s.duration.observe(rec.duration_seconds);
  for (const auto& [phase, seconds] : rec.result.phases) {
    for (auto& [name, h] : s.phases) {
      if (name == phase) {
        h.observe(seconds);
        break;
      }
    }
  }
  double now = std::chrono::duration<double>(rec.finished.time_since_epoch()).count();
  s.last_run = now;
  if (rec.result.success) {
    s.last_success = now;
  } else {
    auto counted = [&](Reason r) {
      for (auto& [reason, n] : s.failures) {
        if (reason == r) {
          n += 1;
          return true;
        }
      }
      return false;
    };
    if (!counted(rec.result.reason)) counted(Reason::kInternal);
  }
  const ProbeDetails& d = rec.result.details;
  if (d.subprotocol) s.subprotocol = *d.subprotocol;
  if (d.close_code) s.close_code = *d.close_code;
  if (d.connections_total) {
    s.connections = *d.connections_total;
    s.connections_ok = d.connections_ok.value_or(0);
  }
  // Label values come only from the pre-created (configured) series.
  auto add = [](auto& counters, const auto& key, double n) {
    for (auto& [k, v] : counters) {
      if (k == key) {
        v += n;
        return;
      }
    }
  };
  for (const auto& [event, n] : d.events_received) add(s.received, event, n);
  for (const auto& event : d.missing_events) add(s.missing, event, 1);
  if (d.missing_field) add(s.field_missing, *d.missing_field, 1);
  if (d.cert_expiry_unix) s.cert_expiry = *d.cert_expiry_unix;
}

void ProbeMetrics::render(std::string& out) const {
  // The families are built and serialized a slice of probes at a time: a
  // whole family of 10,000 probes as prometheus-cpp objects would take
  // several times the exposition's size.
  constexpr size_t kSlice = 2000;
  std::shared_lock lock(mu_);
  prometheus::TextSerializer serializer;
  for (const Family& f : families()) {
    bool first = true;
    std::vector<prometheus::ClientMetric> metrics;
    auto flush = [&] {
      if (metrics.empty()) return;
      std::ostringstream text;
      serializer.Serialize(text,
                           {prometheus::MetricFamily{f.name, f.help, f.type, std::move(metrics)}});
      metrics.clear();
      std::string chunk = text.str();
      size_t from = 0;
      if (!first) {
        // A later slice of the same family: drop its # HELP and # TYPE lines.
        for (int line = 0; line < 2; ++line) {
          size_t eol = chunk.find('\n', from);
          from = eol == std::string::npos ? chunk.size() : eol + 1;
        }
      }
      out.append(chunk, from, std::string::npos);
      first = false;
    };
    for (const auto& [name, s] : series_) {
      {
        std::lock_guard values(s->mu);
        f.collect(*s, metrics);
      }
      if (metrics.size() >= kSlice) flush();
    }
    flush();
  }
}

DaemonMetrics::DaemonMetrics()
    : registry_(std::make_shared<prometheus::Registry>()),
      lag_(BuildHistogram()
               .Name("canary_scheduler_lag_seconds")
               .Help("How late probe runs start: actual start minus scheduled time.")
               .Register(*registry_)
               .Add({}, prometheus::Histogram::BucketBoundaries{0.0001, 0.0005, 0.001, 0.0025,
                                                                0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                                                0.5, 1, 2.5})),
      in_flight_(BuildGauge()
                     .Name("canary_probes_in_flight")
                     .Help("Probe runs currently in progress.")
                     .Register(*registry_)
                     .Add({})),
      skipped_(BuildCounter()
                   .Name("canary_scheduler_skipped_runs_total")
                   .Help("Scheduled slots skipped because the previous run was still going or "
                         "the loop fell behind.")
                   .Register(*registry_)
                   .Add({})),
      configured_(BuildGauge()
                      .Name("canary_probes_configured")
                      .Help("Probes in the running config, by type.")
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

void DaemonMetrics::set_skipped_total(uint64_t n) {
  double v = static_cast<double>(n);
  if (v > skipped_seen_) skipped_.Increment(v - skipped_seen_);
  skipped_seen_ = v;
}

void DaemonMetrics::set_configured(const std::vector<const ConfiguredProbe*>& probes) {
  std::map<std::string, int> counts;
  for (const auto& t : probe_types()) counts[std::string(t.name)] = 0;
  for (const auto* p : probes) counts[p->spec.type]++;
  for (const auto& [type, n] : counts) {
    auto it = configured_by_type_.find(type);
    if (it == configured_by_type_.end())
      it = configured_by_type_.emplace(type, &configured_.Add({{"type", type}})).first;
    it->second->Set(n);
  }
}

void DaemonMetrics::reload_result(bool ok, double unix_time, bool is_reload) {
  reload_ok_.Set(ok ? 1 : 0);
  if (ok) reload_time_.Set(unix_time);
  if (is_reload) (ok ? reloads_ok_ : reloads_failed_).Increment();
}

std::string render_metrics(const DaemonMetrics& daemon, const ProbeMetrics* probes) {
  std::ostringstream text;
  prometheus::TextSerializer().Serialize(text, daemon.registry()->Collect());
  std::string out = text.str();
  if (probes != nullptr) probes->render(out);
  return out;
}

}  // namespace canaryd
