#include "daemon/metrics.h"

#include <prometheus/text_serializer.h>

#include <chrono>
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
const prometheus::Histogram::BucketBoundaries& latency_buckets() {
  static const prometheus::Histogram::BucketBoundaries b = {
      0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120};
  return b;
}

}  // namespace

struct ProbeMetrics::Series {
  prometheus::Labels labels;
  prometheus::Labels info_labels;
  prometheus::Counter* runs = nullptr;
  std::map<Reason, prometheus::Counter*> failures;
  prometheus::Gauge* success = nullptr;  // created at the first result: no value is not "failing"
  prometheus::Histogram* duration = nullptr;
  std::map<std::string, prometheus::Histogram*, std::less<>> phases;
  prometheus::Gauge* last_success = nullptr;
  prometheus::Gauge* last_run = nullptr;
  prometheus::Gauge* cert_expiry = nullptr;
  prometheus::Gauge* info = nullptr;
  prometheus::Gauge* interval = nullptr;
  prometheus::Gauge* timeout = nullptr;
  // Created at the first result that carries them (WebSocket types).
  prometheus::Gauge* subprotocol = nullptr;
  std::string subprotocol_value;
  prometheus::Gauge* close_code = nullptr;
  prometheus::Gauge* connections_ok = nullptr;
  prometheus::Gauge* connections = nullptr;
  // Agent conversations: pre-created from the probe's configured events.
  std::string extra_key;  // the probe's Series, flattened: a change rebuilds
  std::map<std::string, prometheus::Counter*, std::less<>> missing;
  std::map<std::pair<std::string, std::string>, prometheus::Counter*> field_missing;
  std::map<std::string, prometheus::Counter*, std::less<>> received;
};

namespace {
std::string extra_key(const Probe::Series& x) {
  std::string key;
  for (const auto& p : x.phases) key += "p:" + p + '\n';
  for (const auto& e : x.events) key += "e:" + e + '\n';
  for (const auto& [e, f] : x.fields) key += "f:" + e + '.' + f + '\n';
  return key;
}
}  // namespace

ProbeMetrics::ProbeMetrics(std::vector<std::pair<std::string, std::string>> global_labels)
    : global_labels_(std::move(global_labels)),
      registry_(std::make_shared<prometheus::Registry>()),
      failures_(BuildCounter()
                    .Name("canary_probe_failures_total")
                    .Help("Failed probe runs by failure reason.")
                    .Register(*registry_)),
      runs_(BuildCounter()
                .Name("canary_probe_runs_total")
                .Help("Probe runs completed, whatever their result.")
                .Register(*registry_)),
      success_(BuildGauge()
                   .Name("canary_probe_success")
                   .Help("1 if the probe's last run succeeded, 0 if it failed.")
                   .Register(*registry_)),
      duration_(BuildHistogram()
                    .Name("canary_probe_duration_seconds")
                    .Help("Duration of probe runs, end to end.")
                    .Register(*registry_)),
      phase_duration_(BuildHistogram()
                          .Name("canary_probe_phase_duration_seconds")
                          .Help("Duration of each phase of probe runs.")
                          .Register(*registry_)),
      last_success_(BuildGauge()
                        .Name("canary_probe_last_success_timestamp_seconds")
                        .Help("Unix time of the probe's last successful run.")
                        .Register(*registry_)),
      last_run_(BuildGauge()
                    .Name("canary_probe_last_run_timestamp_seconds")
                    .Help("Unix time the probe's last run finished, whatever its result.")
                    .Register(*registry_)),
      cert_expiry_(BuildGauge()
                       .Name("canary_tls_cert_expiry_timestamp_seconds")
                       .Help("Unix time at which the target's leaf TLS certificate expires.")
                       .Register(*registry_)),
      info_(BuildGauge()
                .Name("canary_probe_info")
                .Help("Configured probes, for joins; always 1.")
                .Register(*registry_)),
      interval_(BuildGauge()
                    .Name("canary_probe_interval_seconds")
                    .Help("Configured interval between runs of the probe.")
                    .Register(*registry_)),
      timeout_(BuildGauge()
                   .Name("canary_probe_timeout_seconds")
                   .Help("Configured timeout of one run of the probe.")
                   .Register(*registry_)),
      ws_subprotocol_(BuildGauge()
                          .Name("canary_ws_subprotocol_info")
                          .Help("The subprotocol the server last selected (a configured value, "
                                "secrets redacted; \"none\" if it selected none); always 1.")
                          .Register(*registry_)),
      ws_close_code_(BuildGauge()
                         .Name("canary_ws_close_code")
                         .Help("The last WebSocket close code seen (1000 normal, 1006 dropped "
                               "without a close frame, 1011 server error, ...).")
                         .Register(*registry_)),
      ws_connections_ok_(BuildGauge()
                             .Name("canary_ws_connections_ok")
                             .Help("Connections of the last run that succeeded.")
                             .Register(*registry_)),
      ws_connections_(BuildGauge()
                          .Name("canary_ws_connections_configured")
                          .Help("Connections each run opens at once.")
                          .Register(*registry_)),
      agent_missing_(BuildCounter()
                         .Name("canary_agent_event_missing_total")
                         .Help("Agent runs that failed without this expected event arriving.")
                         .Register(*registry_)),
      agent_field_missing_(BuildCounter()
                               .Name("canary_agent_event_field_missing_total")
                               .Help("Agent events that arrived without a required field.")
                               .Register(*registry_)),
      agent_received_(BuildCounter()
                          .Name("canary_agent_events_received_total")
                          .Help("Agent event frames received, by configured type; any other "
                                "type counts as \"other\".")
                          .Register(*registry_)) {}

ProbeMetrics::~ProbeMetrics() = default;

prometheus::Labels ProbeMetrics::base_labels(const ProbeSpec& spec) const {
  prometheus::Labels labels;
  for (const auto& [k, v] : global_labels_) labels[k] = v;
  labels["probe"] = spec.name;
  labels["type"] = spec.type;
  labels["category"] = spec.category;
  return labels;
}

void ProbeMetrics::remove(Series& s) {
  runs_.Remove(s.runs);
  for (auto& [r, c] : s.failures) failures_.Remove(c);
  if (s.success) success_.Remove(s.success);
  duration_.Remove(s.duration);
  for (auto& [p, h] : s.phases) phase_duration_.Remove(h);
  if (s.last_success) last_success_.Remove(s.last_success);
  if (s.last_run) last_run_.Remove(s.last_run);
  if (s.cert_expiry) cert_expiry_.Remove(s.cert_expiry);
  info_.Remove(s.info);
  interval_.Remove(s.interval);
  timeout_.Remove(s.timeout);
  if (s.subprotocol) ws_subprotocol_.Remove(s.subprotocol);
  if (s.close_code) ws_close_code_.Remove(s.close_code);
  if (s.connections_ok) ws_connections_ok_.Remove(s.connections_ok);
  if (s.connections) ws_connections_.Remove(s.connections);
  for (auto& [e, c] : s.missing) agent_missing_.Remove(c);
  for (auto& [ef, c] : s.field_missing) agent_field_missing_.Remove(c);
  for (auto& [e, c] : s.received) agent_received_.Remove(c);
}

void ProbeMetrics::sync_probes(const std::vector<const ConfiguredProbe*>& probes) {
  std::unordered_map<std::string, const ConfiguredProbe*> wanted;
  for (const auto* p : probes) wanted[p->spec.name] = p;

  for (auto it = series_.begin(); it != series_.end();) {
    auto w = wanted.find(it->first);
    bool same = false;
    if (w != wanted.end()) {
      prometheus::Labels info = base_labels(w->second->spec);
      info["critical"] = w->second->spec.critical ? "true" : "false";
      for (const auto& [k, v] : w->second->spec.labels) info[k] = v;
      same = info == it->second->info_labels &&
             extra_key(w->second->probe ? w->second->probe->series() : Probe::Series{}) ==
                 it->second->extra_key;
    }
    if (same) {
      const auto& spec = w->second->spec;
      it->second->interval->Set(std::chrono::duration<double>(spec.interval).count());
      it->second->timeout->Set(std::chrono::duration<double>(spec.timeout).count());
      ++it;
    } else {
      remove(*it->second);
      it = series_.erase(it);
    }
  }

  for (const auto* p : probes) {
    if (series_.count(p->spec.name)) continue;
    auto s = std::make_unique<Series>();
    s->labels = base_labels(p->spec);
    s->info_labels = s->labels;
    s->info_labels["critical"] = p->spec.critical ? "true" : "false";
    for (const auto& [k, v] : p->spec.labels) s->info_labels[k] = v;
    s->runs = &runs_.Add(s->labels);
    for (Reason r : p->type->reasons) {
      auto labels = s->labels;
      labels["reason"] = std::string(reason_name(r));
      s->failures[r] = &failures_.Add(labels);
    }
    s->duration = &duration_.Add(s->labels, latency_buckets());
    for (auto phase : p->type->phases) {
      auto labels = s->labels;
      labels["phase"] = std::string(phase);
      s->phases.emplace(std::string(phase), &phase_duration_.Add(labels, latency_buckets()));
    }
    const Probe::Series extra = p->probe ? p->probe->series() : Probe::Series{};
    s->extra_key = extra_key(extra);
    for (const auto& phase : extra.phases) {
      if (s->phases.count(phase)) continue;
      auto labels = s->labels;
      labels["phase"] = phase;
      s->phases.emplace(phase, &phase_duration_.Add(labels, latency_buckets()));
    }
    for (const auto& event : extra.events) {
      auto labels = s->labels;
      labels["event"] = event;
      s->missing.emplace(event, &agent_missing_.Add(labels));
      s->received.emplace(event, &agent_received_.Add(labels));
    }
    if (!extra.events.empty()) {
      auto labels = s->labels;
      labels["event"] = "other";
      s->received.emplace("other", &agent_received_.Add(labels));
    }
    for (const auto& [event, field] : extra.fields) {
      auto labels = s->labels;
      labels["event"] = event;
      labels["field"] = field;
      s->field_missing.emplace(std::make_pair(event, field), &agent_field_missing_.Add(labels));
    }
    s->info = &info_.Add(s->info_labels);
    s->info->Set(1);
    s->interval = &interval_.Add(s->labels);
    s->interval->Set(std::chrono::duration<double>(p->spec.interval).count());
    s->timeout = &timeout_.Add(s->labels);
    s->timeout->Set(std::chrono::duration<double>(p->spec.timeout).count());
    series_.emplace(p->spec.name, std::move(s));
  }
}

void ProbeMetrics::record(const RunRecord& rec) {
  auto it = series_.find(rec.spec.name);
  if (it == series_.end()) return;
  Series& s = *it->second;
  s.runs->Increment();
  if (!s.success) s.success = &success_.Add(s.labels);
  s.success->Set(rec.result.success ? 1 : 0);
  s.duration->Observe(rec.duration_seconds);
  for (const auto& [phase, seconds] : rec.result.phases) {
    auto h = s.phases.find(phase);
    if (h != s.phases.end()) h->second->Observe(seconds);
  }
  double now = std::chrono::duration<double>(rec.finished.time_since_epoch()).count();
  if (!s.last_run) s.last_run = &last_run_.Add(s.labels);
  s.last_run->Set(now);
  if (rec.result.success) {
    if (!s.last_success) s.last_success = &last_success_.Add(s.labels);
    s.last_success->Set(now);
  } else {
    auto f = s.failures.find(rec.result.reason);
    if (f == s.failures.end()) f = s.failures.find(Reason::kInternal);
    if (f != s.failures.end()) f->second->Increment();
  }
  const ProbeDetails& d = rec.result.details;
  if (d.subprotocol && *d.subprotocol != s.subprotocol_value) {
    // One series per probe: the value is a label, so a change replaces it.
    if (s.subprotocol) ws_subprotocol_.Remove(s.subprotocol);
    auto labels = s.labels;
    labels["subprotocol"] = *d.subprotocol;
    s.subprotocol = &ws_subprotocol_.Add(labels);
    s.subprotocol->Set(1);
    s.subprotocol_value = *d.subprotocol;
  }
  if (d.close_code) {
    if (!s.close_code) s.close_code = &ws_close_code_.Add(s.labels);
    s.close_code->Set(*d.close_code);
  }
  if (d.connections_total) {
    if (!s.connections) s.connections = &ws_connections_.Add(s.labels);
    if (!s.connections_ok) s.connections_ok = &ws_connections_ok_.Add(s.labels);
    s.connections->Set(*d.connections_total);
    s.connections_ok->Set(d.connections_ok.value_or(0));
  }
  // Label values come only from the pre-created (configured) series.
  for (const auto& [event, n] : d.events_received) {
    auto c = s.received.find(event);
    if (c != s.received.end()) c->second->Increment(n);
  }
  for (const auto& event : d.missing_events) {
    auto c = s.missing.find(event);
    if (c != s.missing.end()) c->second->Increment();
  }
  if (d.missing_field) {
    auto c = s.field_missing.find(*d.missing_field);
    if (c != s.field_missing.end()) c->second->Increment();
  }
  if (rec.result.details.cert_expiry_unix) {
    if (!s.cert_expiry) s.cert_expiry = &cert_expiry_.Add(s.labels);
    s.cert_expiry->Set(*rec.result.details.cert_expiry_unix);
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

std::string render_metrics(const std::vector<std::shared_ptr<prometheus::Registry>>& registries) {
  std::vector<prometheus::MetricFamily> families;
  for (const auto& r : registries) {
    auto f = r->Collect();
    families.insert(families.end(), std::make_move_iterator(f.begin()),
                    std::make_move_iterator(f.end()));
  }
  std::ostringstream out;
  prometheus::TextSerializer().Serialize(out, families);
  return out.str();
}

}  // namespace canaryd
