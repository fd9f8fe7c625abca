#include "daemon/probe_book.h"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "daemon/exposition.h"
#include "daemon/probe_state_codec.h"

namespace canaryd {

void Histo::observe(double v) {
  // "le": the first bound at or above the value.
  auto bound = std::lower_bound(bounds->begin(), bounds->end(), v);
  counts[static_cast<size_t>(bound - bounds->begin())]++;
  sum += v;
}

void Histo::add(const std::vector<double>& their, const ProbeDetails::Observed& o) {
  if (o.counts.size() != their.size() + 1) return;
  for (size_t i = 0; i < o.counts.size(); ++i) {
    size_t to =
        i < their.size()
            ? static_cast<size_t>(std::lower_bound(bounds->begin(), bounds->end(), their[i]) -
                                  bounds->begin())
            : bounds->size();
    counts[to] += o.counts[i];
  }
  sum += o.sum;
}

const Bounds& phase_bounds() {
  static const Bounds bounds =
      std::make_shared<const std::vector<double>>(kLatencyBounds.begin(), kLatencyBounds.end());
  return bounds;
}

Bounds duration_bounds(const ProbeSpec& spec) {
  static const Bounds basic = std::make_shared<const std::vector<double>>(
      kBasicLatencyBounds.begin(), kBasicLatencyBounds.end());
  if (!spec.duration_buckets.empty())
    return std::make_shared<const std::vector<double>>(spec.duration_buckets);
  return spec.detail == ProbeSpec::MetricsDetail::kBasic ? basic : phase_bounds();
}

namespace {

Bounds histogram_bounds(const TypeMetric& m, ProbeSpec::MetricsDetail detail) {
  const auto& b = detail == ProbeSpec::MetricsDetail::kBasic && !m.basic_bounds.empty()
                      ? m.basic_bounds
                      : m.bounds;
  return std::make_shared<const std::vector<double>>(b);
}

// The series a probe's type metrics have: one per gauge, info and histogram,
// and one per counted label set of each counter.
std::vector<TypeSeries> type_series_of(const ProbeType& type, const Probe::Series& extra,
                                       ProbeSpec::MetricsDetail detail) {
  std::vector<TypeSeries> out;
  for (const auto& m : type.metrics) {
    if (m.kind == TypeMetric::Kind::kHistogram) {
      out.push_back({&m, {}, 0, true, Histo(histogram_bounds(m, detail))});
      continue;
    }
    if (m.kind != TypeMetric::Kind::kCounter) {
      out.push_back({&m, {}, 0, false, std::nullopt});
      continue;
    }
    for (const auto& [metric, labels] : extra.counted) {
      if (metric == m.name && labels.size() == m.labels.size())
        out.push_back({&m, labels, 0, true, std::nullopt});
    }
  }
  return out;
}

// Keeps what `old` had for the series that remain.
void carry_over(std::vector<TypeSeries>& next, const std::vector<TypeSeries>& old) {
  for (auto& s : next) {
    for (const auto& o : old) {
      bool same = o.metric->name == s.metric->name &&
                  (s.metric->kind == TypeMetric::Kind::kInfo || o.labels == s.labels);
      if (same && s.histo) {
        // Counts in other bounds (the detail changed) cannot be carried over.
        if (o.histo && *o.histo->bounds == *s.histo->bounds) s.histo = o.histo;
        break;
      }
      if (same) {
        s.labels = o.labels;
        s.value = o.value;
        s.present = o.present;
        break;
      }
    }
  }
}

std::vector<std::pair<std::string, Histo>> phases_of(
    const ProbeType& type, const Probe::Series& extra,
    const std::vector<std::pair<std::string, Histo>>& old) {
  std::vector<std::string> names(type.phases.begin(), type.phases.end());
  for (const auto& p : extra.phases)
    if (std::find(names.begin(), names.end(), p) == names.end()) names.push_back(p);
  std::vector<std::pair<std::string, Histo>> out;
  for (auto& name : names) {
    auto kept =
        std::find_if(old.begin(), old.end(), [&](const auto& o) { return o.first == name; });
    out.emplace_back(std::move(name), kept == old.end() ? Histo{} : kept->second);
  }
  return out;
}

void add_to_counter(std::vector<TypeSeries>& all, const TypeMetric& m,
                    const std::vector<std::string>& labels, double n) {
  for (auto& s : all) {
    if (s.metric == &m && s.labels == labels) {
      s.value += n;
      return;
    }
  }
}

// A counter's field (TypeMetric::Kind::kCounter says what each shape counts).
void count_field(std::vector<TypeSeries>& all, const TypeMetric& m,
                 const nlohmann::ordered_json& field) {
  auto labels_of = [&](const nlohmann::ordered_json& v) -> std::optional<std::vector<std::string>> {
    if (v.is_string() && m.labels.size() == 1)
      return std::vector<std::string>{v.get<std::string>()};
    if (!v.is_object() || v.size() != m.labels.size()) return std::nullopt;
    std::vector<std::string> out;
    for (auto name : m.labels) {
      auto it = v.find(std::string(name));
      if (it == v.end() || !it->is_string()) return std::nullopt;
      out.push_back(it->get<std::string>());
    }
    return out;
  };
  if (field.is_array()) {
    for (const auto& v : field)
      if (auto l = labels_of(v)) add_to_counter(all, m, *l, 1);
  } else if (auto l = labels_of(field)) {
    add_to_counter(all, m, *l, 1);
  } else if (field.is_object() && m.labels.size() == 1) {
    for (const auto& [key, n] : field.items())
      if (n.is_number()) add_to_counter(all, m, {key}, n.get<double>());
  }
}

void record_type_facts(const ProbeType& type, std::vector<TypeSeries>& all, const ProbeDetails& d) {
  for (auto& s : all) {
    if (s.metric->kind == TypeMetric::Kind::kHistogram && s.histo) {
      auto observed = d.observed.find(s.metric->field);
      if (observed != d.observed.end()) s.histo->add(s.metric->bounds, observed->second);
    }
    const auto* field = d.find(std::string(s.metric->field));
    if (field == nullptr) continue;
    switch (s.metric->kind) {
      case TypeMetric::Kind::kGauge:
        if (field->is_number()) {
          s.value = field->get<double>();
          s.present = true;
        }
        break;
      case TypeMetric::Kind::kInfo:
        if (field->is_string()) {
          s.labels = {field->get<std::string>()};
          s.value = 1;
          s.present = true;
        }
        break;
      case TypeMetric::Kind::kHistogram:
        if (field->is_number() && s.histo) s.histo->observe(field->get<double>());
        break;
      case TypeMetric::Kind::kCounter:
        break;  // below, once per metric
    }
  }
  // Each counter once: the type's own list names it once, the series once per label set.
  for (const auto& m : type.metrics) {
    if (m.kind != TypeMetric::Kind::kCounter) continue;
    if (const auto* field = d.find(std::string(m.field))) count_field(all, m, *field);
  }
}

}  // namespace

void ProbeBook::install(const std::vector<const ConfiguredProbe*>& probes,
                        const std::vector<std::pair<std::string, std::string>>& global_labels,
                        int history) {
  struct Next {
    const ConfiguredProbe* probe;
    Probe::Series extra;
    std::string labels;
    std::string info_labels;
  };
  // Built outside the lock: a scrape in progress holds it shared.
  std::vector<Next> next;
  next.reserve(probes.size());
  for (const auto* p : probes) {
    auto base = global_labels;
    base.emplace_back("probe", p->spec.name);
    base.emplace_back("type", p->spec.type);
    base.emplace_back("category", p->spec.category);
    auto info = base;
    info.emplace_back("critical", p->spec.critical ? "true" : "false");
    info.insert(info.end(), p->spec.labels.begin(), p->spec.labels.end());
    next.push_back({p, p->probe ? p->probe->series() : Probe::Series{}, label_text(std::move(base)),
                    label_text(std::move(info))});
  }
  std::unique_lock lock(mu_);
  std::map<std::string, std::unique_ptr<Entry>, std::less<>> entries;
  for (auto& n : next) {
    const ConfiguredProbe& p = *n.probe;
    auto old = entries_.find(p.spec.name);
    std::unique_ptr<Entry> e;
    if (old != entries_.end() && old->second->type == p.type) {
      e = std::move(old->second);
    } else {
      e = std::make_unique<Entry>();
      e->type = p.type;
      for (Reason r : p.type->reasons) e->failures_by_reason.emplace_back(r, 0);
    }
    std::lock_guard entry_lock(e->mu);
    const auto old_detail = e->spec.detail;
    e->spec = p.spec;
    e->target = p.target;
    e->labels = std::move(n.labels);
    e->info_labels = std::move(n.info_labels);
    // A change of detail or buckets starts the histograms over: counts of
    // other buckets cannot be carried into these.
    if (old_detail != p.spec.detail) e->phases.clear();
    if (auto bounds = duration_bounds(p.spec); *bounds != *e->duration.bounds)
      e->duration = Histo(std::move(bounds));
    e->phases = p.spec.detail == ProbeSpec::MetricsDetail::kFull
                    ? phases_of(*p.type, n.extra, e->phases)
                    : std::vector<std::pair<std::string, Histo>>{};
    auto series = type_series_of(*p.type, n.extra, p.spec.detail);
    carry_over(series, e->type_series);
    e->type_series = std::move(series);
    e->history_limit = static_cast<size_t>(history);
    if (saved_ && e->runs == 0 && !e->last) {
      auto it = saved_->find(p.spec.name);
      if (it != saved_->end() && it->second.first == fingerprint_hash(p.spec) &&
          !decode_probe_state(it->second.second, *e))
        spdlog::warn("probe {}: its saved state cannot be read; it starts fresh", p.spec.name);
    }
    while (e->history.size() > e->history_limit) e->history.pop_back();
    entries.emplace(p.spec.name, std::move(e));
  }
  entries_ = std::move(entries);
  saved_.reset();
  by_name_.clear();
  by_name_.reserve(entries_.size());
  for (const auto& [name, e] : entries_) by_name_.emplace(name, e.get());
}

ProbeBook::Transition ProbeBook::record(const RunRecord& rec) {
  std::shared_lock lock(mu_);
  auto it = by_name_.find(rec.spec.name);
  if (it == by_name_.end()) return Transition::kNone;
  Entry& e = *it->second;
  std::lock_guard entry_lock(e.mu);
  const ProbeResult& r = rec.result;
  ++e.runs;
  e.duration.observe(rec.duration_seconds);
  for (const auto& [phase, seconds] : r.phases) {
    for (auto& [name, h] : e.phases) {
      if (name == phase) {
        h.observe(seconds);
        break;
      }
    }
  }
  if (r.details.cert_expiry_unix) e.cert_expiry_unix = *r.details.cert_expiry_unix;
  record_type_facts(*e.type, e.type_series, r.details);

  e.last = r;
  e.last_time = rec.finished;
  e.last_run_id = rec.run_id;
  e.last_duration = rec.duration_seconds;
  e.last_attempts = rec.attempts;
  e.attempts_failed += static_cast<uint64_t>(rec.attempts - (r.success ? 1 : 0));
  if (r.success) ++e.attempts_succeeded;
  if (r.success && rec.attempts > 1) ++e.retry_successes;
  e.history.push_front({rec.finished, r.success, r.reason, r.success ? std::string() : r.message,
                        rec.duration_seconds});
  while (e.history.size() > e.history_limit) e.history.pop_back();
  Transition t = Transition::kNone;
  if (r.success) {
    if (e.failing_since) t = Transition::kRecovered;
    if (!e.passing_since) e.passing_since = rec.finished;
    e.failing_since.reset();
    e.last_success = rec.finished;
    e.consecutive_failures = 0;
    return t;
  }
  ++e.failures;
  auto counted = [&](Reason reason) {
    for (auto& [known, n] : e.failures_by_reason) {
      if (known == reason) {
        n += 1;
        return true;
      }
    }
    return false;
  };
  // A reason the type does not declare is canaryd's own bug.
  if (!counted(r.reason)) counted(Reason::kInternal);
  if (!e.failing_since) {
    e.failing_since = rec.finished;
    t = Transition::kFirstFailure;
  }
  e.passing_since.reset();
  ++e.consecutive_failures;
  return t;
}

}  // namespace canaryd
