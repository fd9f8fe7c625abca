#include "daemon/probe_metrics.h"

#include <prometheus/text_serializer.h>

#include <sstream>
#include <string_view>

#include "daemon/exposition.h"
#include "probes/registry.h"

namespace canaryd {

namespace {

using Entry = ProbeBook::Entry;

struct Family {
  const char* name;
  const char* help;
  const char* type;
  void (*write)(const char* name, const Entry& e, std::string& out);
};

void scalar(const char* name, const Entry& e, std::string& out, double v) {
  append_sample(out, name, e.labels, v);
}

void optional_scalar(const char* name, const Entry& e, std::string& out,
                     const std::optional<double>& v) {
  if (v) append_sample(out, name, e.labels, *v);
}

std::string with(const std::string& labels, std::string_view name, std::string_view value) {
  std::string out = labels;
  append_label(out, name, value);
  return out;
}

void histogram(const char* name, const std::string& labels, const Histo& h, std::string& out) {
  const std::string bucket = std::string(name) + "_bucket";
  uint64_t cumulative = 0;
  std::string le;
  for (size_t i = 0; i < h.counts.size(); ++i) {
    cumulative += h.counts[i];
    le.clear();
    if (i < h.bounds->size()) {
      append_value(le, (*h.bounds)[i]);
    } else {
      le = "+Inf";
    }
    append_sample(out, bucket, with(labels, "le", le), static_cast<double>(cumulative));
  }
  append_sample(out, std::string(name) + "_sum", labels, h.sum);
  append_sample(out, std::string(name) + "_count", labels, static_cast<double>(cumulative));
}

double unix_seconds(WallTime t) {
  return std::chrono::duration<double>(t.time_since_epoch()).count();
}

std::optional<double> unix_or_none(const std::optional<WallTime>& t) {
  if (!t) return std::nullopt;
  return unix_seconds(*t);
}

// failures_total comes before runs_total: a scrape renders families in this
// order, so a run finishing mid-scrape can make runs_total one ahead of the
// failures, never behind, and a failure ratio never exceeds 1.
const Family kFamilies[] = {
    {"canary_probe_failures_total", "Failed probe runs by failure reason.", "counter",
     [](const char* name, const Entry& e, std::string& out) {
       for (const auto& [r, n] : e.failures_by_reason)
         append_sample(out, name, with(e.labels, "reason", reason_name(r)), n);
     }},
    {"canary_probe_runs_total", "Probe runs completed, whatever their result.", "counter",
     [](const char* name, const Entry& e, std::string& out) {
       scalar(name, e, out, static_cast<double>(e.runs));
     }},
    // Only for probes with retries: elsewhere attempts are runs, and the
    // series would only add to every scrape.
    {"canary_probe_attempts_total",
     "Attempts of probe runs by result, retries included (probes with retries only).", "counter",
     [](const char* name, const Entry& e, std::string& out) {
       if (e.spec.attempts <= 1) return;
       append_sample(out, name, with(e.labels, "result", "success"),
                     static_cast<double>(e.attempts_succeeded));
       append_sample(out, name, with(e.labels, "result", "failure"),
                     static_cast<double>(e.attempts_failed));
     }},
    {"canary_probe_retry_successes_total",
     "Runs that passed only on a retry: a flaky target, though it does not page.", "counter",
     [](const char* name, const Entry& e, std::string& out) {
       if (e.spec.attempts > 1) scalar(name, e, out, static_cast<double>(e.retry_successes));
     }},
    {"canary_probe_success", "1 if the probe's last run succeeded, 0 if it failed.", "gauge",
     [](const char* name, const Entry& e, std::string& out) {
       if (e.last) scalar(name, e, out, e.last->success ? 1 : 0);
     }},
    {"canary_probe_duration_seconds", "Duration of probe runs, end to end.", "histogram",
     [](const char* name, const Entry& e, std::string& out) {
       histogram(name, e.labels, e.duration, out);
     }},
    {"canary_probe_phase_duration_seconds", "Duration of each phase of probe runs.", "histogram",
     [](const char* name, const Entry& e, std::string& out) {
       for (const auto& [phase, h] : e.phases)
         histogram(name, with(e.labels, "phase", phase), h, out);
     }},
    {"canary_probe_phase_last_seconds",
     "Duration of each phase of the probe's last run (metrics.detail basic, in place of the "
     "phase histograms).",
     "gauge",
     [](const char* name, const Entry& e, std::string& out) {
       if (e.spec.detail != ProbeSpec::MetricsDetail::kBasic || !e.last) return;
       for (const auto& [phase, seconds] : e.last->phases)
         append_sample(out, name, with(e.labels, "phase", phase), seconds);
     }},
    {"canary_probe_last_success_timestamp_seconds", "Unix time of the probe's last successful run.",
     "gauge",
     [](const char* name, const Entry& e, std::string& out) {
       optional_scalar(name, e, out, unix_or_none(e.last_success));
     }},
    {"canary_probe_last_run_timestamp_seconds",
     "Unix time the probe's last run finished, whatever its result.", "gauge",
     [](const char* name, const Entry& e, std::string& out) {
       if (e.last) scalar(name, e, out, unix_seconds(e.last_time));
     }},
    {"canary_tls_cert_expiry_timestamp_seconds",
     "Unix time at which the target's leaf TLS certificate expires.", "gauge",
     [](const char* name, const Entry& e, std::string& out) {
       optional_scalar(name, e, out, e.cert_expiry_unix);
     }},
    {"canary_probe_info", "Configured probes, for joins; always 1.", "gauge",
     [](const char* name, const Entry& e, std::string& out) {
       append_sample(out, name, e.info_labels, 1);
     }},
    {"canary_probe_interval_seconds", "Configured interval between runs of the probe.", "gauge",
     [](const char* name, const Entry& e, std::string& out) {
       scalar(name, e, out, std::chrono::duration<double>(e.spec.interval).count());
     }},
    {"canary_probe_timeout_seconds", "Configured timeout of one run of the probe.", "gauge",
     [](const char* name, const Entry& e, std::string& out) {
       scalar(name, e, out, std::chrono::duration<double>(e.spec.timeout).count());
     }},
};

// Every family the types declare, each name once, in registry order.
const std::vector<const TypeMetric*>& type_families() {
  static const std::vector<const TypeMetric*> all = [] {
    std::vector<const TypeMetric*> out;
    for (const auto& t : probe_types())
      for (const auto& m : t.metrics) {
        bool seen = false;
        for (const auto* o : out) seen = seen || o->name == m.name;
        if (!seen) out.push_back(&m);
      }
    return out;
  }();
  return all;
}

const char* kind_name(TypeMetric::Kind kind) {
  switch (kind) {
    case TypeMetric::Kind::kCounter:
      return "counter";
    case TypeMetric::Kind::kHistogram:
      return "histogram";
    default:
      return "gauge";
  }
}

// A family's lines, with its header only if there is at least one line.
template <class WriteAll>
void family(std::string& out, std::string_view name, std::string_view help, std::string_view type,
            WriteAll&& write_all) {
  const size_t start = out.size();
  append_family_header(out, name, help, type);
  const size_t header_end = out.size();
  write_all();
  if (out.size() == header_end) out.resize(start);
}

}  // namespace

void render_probe_metrics(const std::vector<const ProbeBook*>& books, std::string& out) {
  auto each_entry = [&](auto&& f) {
    for (const ProbeBook* book : books) book->for_each(f);
  };
  for (const Family& f : kFamilies) {
    family(out, f.name, f.help, f.type,
           [&] { each_entry([&](const Entry& e) { f.write(f.name, e, out); }); });
  }
  for (const TypeMetric* m : type_families()) {
    const std::string name(m->name);
    family(out, m->name, m->help, kind_name(m->kind), [&] {
      each_entry([&](const Entry& e) {
        for (const auto& s : e.type_series) {
          if (s.metric->name != m->name || !s.present) continue;
          if (s.histo) {
            histogram(name.c_str(), e.labels, *s.histo, out);
            continue;
          }
          std::string labels = e.labels;
          for (size_t i = 0; i < s.labels.size() && i < s.metric->labels.size(); ++i)
            append_label(labels, s.metric->labels[i], s.labels[i]);
          append_sample(out, name, labels, s.value);
        }
      });
    });
  }
}

std::string render_metrics(const DaemonMetrics& daemon,
                           const std::vector<const ProbeBook*>& books) {
  std::ostringstream text;
  prometheus::TextSerializer().Serialize(text, daemon.registry()->Collect());
  std::string out = text.str();
  render_probe_metrics(books, out);
  return out;
}

}  // namespace canaryd
