#include "daemon/config.h"

#include <arpa/inet.h>
#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <optional>
#include <set>

#include "base/usable_cpus.h"
#include "daemon/defaults.h"
#include "daemon/probe_book.h"
#include "probes/common/resolve.h"

namespace canaryd {

namespace {

bool valid_probe_name(std::string_view name) {
  if (name.empty() || name.size() > 128) return false;
  for (char c : name) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '.' && c != '-')
      return false;
  }
  return true;
}

bool valid_label_name(std::string_view name) {
  if (name.empty() || std::isdigit(static_cast<unsigned char>(name[0]))) return false;
  if (name.rfind("__", 0) == 0) return false;
  for (char c : name) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_') return false;
  }
  return true;
}

// Labels canaryd sets itself, its types' included; a user label with one of
// these names would silently collide.
bool reserved_label(std::string_view name) {
  static const std::set<std::string, std::less<>> reserved = [] {
    std::set<std::string, std::less<>> out = {
        "probe",    "type", "category", "critical", "reason",   "phase", "le",
        "quantile", "job",  "instance", "version",  "revision", "result"};
    for (const auto& t : probe_types())
      for (const auto& m : t.metrics) out.insert(m.labels.begin(), m.labels.end());
    return out;
  }();
  return reserved.count(name) != 0;
}

std::vector<std::pair<std::string, std::string>> read_labels(YamlSection& s, std::string_view key) {
  std::vector<std::pair<std::string, std::string>> out;
  auto labels = s.get_string_map(key);
  if (!labels) return out;
  for (auto& [name, value] : *labels) {
    if (!valid_label_name(name)) {
      s.error(key, fmt::format("invalid label name \"{}\" (use [a-zA-Z_][a-zA-Z0-9_]*)", name));
    } else if (reserved_label(name)) {
      s.error(key, fmt::format("label name \"{}\" is reserved by canaryd", name));
    } else {
      out.emplace_back(name, value);
    }
  }
  return out;
}

// retries: {attempts: N, delay: D}. N counts every attempt, the first
// included; at most kMaxAttempts, since each one is a full run against the target.
void read_retries(YamlSection& r, int& attempts, Duration& delay) {
  if (auto n = r.get_int("attempts", 1, defaults::kMaxAttempts)) attempts = static_cast<int>(*n);
  if (auto d = r.get_duration("delay")) delay = *d;
  r.finish();
}

// The timeout covers every attempt: the delays between them must leave time
// for the attempts themselves.
void check_retries_fit(YamlSection& s, int attempts, Duration delay, Duration timeout) {
  if (attempts > 1 && (attempts - 1) * delay >= timeout) {
    s.error("retries", fmt::format("{} attempts {} apart cannot fit in the timeout {}: the "
                                   "timeout covers every attempt and the delays between them",
                                   attempts, format_duration(delay), format_duration(timeout)));
  }
}

// metrics: {detail: basic|full, buckets: [0.1, 0.5, ...]}.
void read_metrics(YamlSection& m, ProbeSpec::MetricsDetail& detail, std::vector<double>& buckets) {
  if (auto d = m.get_string("detail")) {
    if (*d == "basic") {
      detail = ProbeSpec::MetricsDetail::kBasic;
    } else if (*d == "full") {
      detail = ProbeSpec::MetricsDetail::kFull;
    } else {
      m.error("detail", fmt::format("\"{}\" is not basic or full", *d));
    }
  }
  if (auto node = m.get_node("buckets")) {
    std::vector<double> bounds;
    bool ok = node->IsSequence() && node->size() > 0;
    for (size_t i = 0; ok && i < node->size(); ++i) {
      const YAML::Node item = (*node)[i];
      char* end = nullptr;
      const std::string text = item.IsScalar() ? item.Scalar() : "";
      const double v = std::strtod(text.c_str(), &end);
      ok = !text.empty() && end == text.c_str() + text.size() && std::isfinite(v) && v > 0 &&
           (bounds.empty() || v > bounds.back());
      bounds.push_back(v);
    }
    if (!ok) {
      m.error("buckets",
              "expected a list of positive seconds in ascending order, e.g. [0.1, 1, 10]");
    } else {
      buckets = std::move(bounds);
    }
  }
  m.finish();
}

// basic keeps a probe to one small histogram: its buckets are the budget.
void check_buckets(YamlSection& s, ProbeSpec::MetricsDetail detail,
                   const std::vector<double>& buckets) {
  const size_t most = detail == ProbeSpec::MetricsDetail::kBasic ? 9 : 30;
  if (buckets.size() > most)
    s.error(
        "metrics",
        fmt::format("{} buckets; metrics.detail {} allows at most {} (and +Inf)", buckets.size(),
                    detail == ProbeSpec::MetricsDetail::kBasic ? "basic" : "full", most));
}

GlobalConfig read_global(std::optional<YamlSection> g) {
  GlobalConfig out;
  out.listen = *parse_listen_address(defaults::kListen);
  out.default_interval = defaults::kInterval;
  out.default_timeout = defaults::kTimeout;
  out.state_history = defaults::kStateHistory;
  // One loop per CPU the process may use: a container limited to 2 CPUs on
  // a 64-core node gets 2, not 64 threads fighting for 2.
  out.workers = std::min(usable_cpus(), defaults::kMaxWorkers);
  if (!g) return out;
  if (auto listen = g->get_string("listen")) {
    if (auto addr = parse_listen_address(*listen)) {
      out.listen = *addr;
    } else {
      g->error("listen", fmt::format("invalid listen address \"{}\" (use e.g. 127.0.0.1:9464 or "
                                     "[::1]:9464)",
                                     *listen));
    }
  }
  out.labels = read_labels(*g, "labels");
  if (auto d = g->get_section("defaults")) {
    if (auto v = d->get_duration("interval")) out.default_interval = *v;
    if (auto v = d->get_duration("timeout")) out.default_timeout = *v;
    if (out.default_timeout > out.default_interval)
      d->error("timeout", fmt::format("default timeout {} is longer than the default interval {}",
                                      format_duration(out.default_timeout),
                                      format_duration(out.default_interval)));
    if (auto r = d->get_section("retries")) {
      read_retries(*r, out.default_attempts, out.default_retry_delay);
      check_retries_fit(*d, out.default_attempts, out.default_retry_delay, out.default_timeout);
    }
    d->finish();
  }
  if (auto h = g->get_int("state_history", 1, defaults::kMaxStateHistory))
    out.state_history = static_cast<int>(*h);
  if (auto w = g->get_int("workers", 1, defaults::kMaxWorkers)) out.workers = static_cast<int>(*w);
  if (auto m = g->get_section("metrics")) {
    read_metrics(*m, out.default_detail, out.default_buckets);
    check_buckets(*g, out.default_detail, out.default_buckets);
  }
  if (auto t = g->get_section("tracing")) {
    if (auto sampled = t->get_bool("sampled")) out.trace_sampled = *sampled;
    t->finish();
  }
  if (auto f = g->get_string("state_file")) {
    if (f->empty() || f->front() != '/') {
      g->error("state_file", "must be an absolute path (the daemon's folder is not yours)");
    } else {
      out.state_file = *f;
    }
  }
  g->finish();
  return out;
}

void read_probe(YamlSection& p, const GlobalConfig& global, std::set<std::string>& names,
                Config& config) {
  ConfigReadContext& ctx = p.context();
  ConfiguredProbe out;
  auto name = p.get_string("name");
  if (!name) {
    if (!p.has("name")) p.error("", "missing required key name");
  } else if (!valid_probe_name(*name)) {
    p.error("name",
            fmt::format("invalid probe name \"{}\" (use letters, digits, '_', '.', '-')", *name));
  } else if (!names.insert(*name).second) {
    p.error("name", fmt::format("duplicate probe name \"{}\"", *name));
  } else {
    out.spec.name = *name;
  }
  auto type = p.get_string("type");
  if (!type) {
    if (!p.has("type")) p.error("", "missing required key type");
  } else if ((out.type = find_probe_type(*type)) == nullptr) {
    p.error("type",
            fmt::format("unknown probe type \"{}\" (known: {})", *type, probe_type_names()));
    p.get_node(*type);  // its section is not a second, unknown-key error
  } else {
    out.spec.type = *type;
  }
  out.spec.category = p.get_string("category").value_or(std::string(defaults::kCategory));
  if (!valid_label_name(out.spec.category) && !out.spec.category.empty()) {
    // Category is a label value, so anything is allowed, but keep it to names
    // that read well in dashboards and rule files.
    bool ok = std::all_of(out.spec.category.begin(), out.spec.category.end(), [](char c) {
      return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.';
    });
    if (!ok) p.error("category", "use letters, digits, '_', '.', '-'");
  }
  out.spec.critical = p.get_bool("critical").value_or(false);
  const bool has_interval = p.has("interval"), has_timeout = p.has("timeout");
  auto interval = p.get_duration("interval");
  auto timeout = p.get_duration("timeout");
  out.spec.interval = interval.value_or(global.default_interval);
  out.spec.timeout = timeout.value_or(global.default_timeout);
  if (interval && out.spec.interval < defaults::kMinInterval) {
    p.error("interval", fmt::format("interval {} is shorter than the minimum {}",
                                    format_duration(out.spec.interval),
                                    format_duration(defaults::kMinInterval)));
  }
  if (timeout && out.spec.timeout.count() <= 0) {
    p.error("timeout", "timeout must be positive");
  } else if (out.spec.timeout > out.spec.interval &&
             // Both inherited: the defaults' own error already says it. A value
             // that failed to parse has its own error too.
             (interval || timeout) && (interval || !has_interval) && (timeout || !has_timeout)) {
    p.error(timeout ? "timeout" : "interval",
            fmt::format("timeout {} is longer than interval {}", format_duration(out.spec.timeout),
                        format_duration(out.spec.interval)));
  }
  out.spec.labels = read_labels(p, "labels");
  out.spec.attempts = global.default_attempts;
  out.spec.retry_delay = global.default_retry_delay;
  if (auto r = p.get_section("retries")) read_retries(*r, out.spec.attempts, out.spec.retry_delay);
  check_retries_fit(p, out.spec.attempts, out.spec.retry_delay, out.spec.timeout);
  out.spec.trace_sampled = global.trace_sampled;
  out.spec.detail = global.default_detail;
  out.spec.duration_buckets = global.default_buckets;
  if (auto m = p.get_section("metrics")) {
    read_metrics(*m, out.spec.detail, out.spec.duration_buckets);
    check_buckets(p, out.spec.detail, out.spec.duration_buckets);
  }

  // Each type reads exactly one section named after it; any other type's
  // section is an unknown key, reported by finish().
  if (out.type != nullptr) {
    size_t errors_before = ctx.errors->size();
    auto section = p.get_section(out.type->name);
    if (!section) {
      if (!p.has(out.type->name))
        p.error("", fmt::format("missing required section {}", out.type->name));
    } else {
      out.probe = out.type->make(out.spec, *section);
      if (!out.probe && ctx.errors->size() == errors_before) section->error("", "invalid section");
    }
  }
  p.finish();
  if (out.probe && !out.spec.name.empty()) {
    out.target = ctx.secrets->redact(out.probe->target());
    config.probes.push_back(std::move(out));
  }
}

// A probe's identity for reload: its effective settings, defaults included
// (a changed global.defaults changes every probe that inherits it), its own
// section, and its secrets. Rotating a secret file changes the probe without
// changing its YAML; only a digest of the values goes in, never the values.
std::string fingerprint_of(const YAML::Node& node, const ProbeSpec& spec,
                           const Secrets& probe_secrets) {
  YAML::Emitter e;
  e << node;
  std::string labels;
  for (const auto& [k, v] : spec.labels) labels += fmt::format("{}:{}={},", k.size(), k, v);
  std::string metrics = spec.detail == ProbeSpec::MetricsDetail::kBasic ? "basic" : "full";
  for (double b : spec.duration_buckets) metrics += fmt::format(",{}", b);
  // Only a non-default sampling flag is added: the state file keys saved
  // state by this fingerprint, and an upgrade must not forget it.
  const std::string_view tracing = spec.trace_sampled ? "" : "|unsampled";
  return fmt::format("{}|{}|{}|{}|{}|{}|{}|{}|{}|{}|{}|{:x}{}", spec.name, spec.type, spec.category,
                     spec.critical, spec.interval.count(), spec.timeout.count(), spec.attempts,
                     spec.retry_delay.count(), metrics, labels, e.c_str(), probe_secrets.digest(),
                     tracing);
}

}  // namespace

std::string ListenAddress::str() const {
  if (host.find(':') != std::string::npos) return fmt::format("[{}]:{}", host, port);
  return fmt::format("{}:{}", host, port);
}

std::optional<ListenAddress> parse_listen_address(std::string_view text) {
  // ":9464" means every interface; otherwise the same host:port form probes use.
  std::string full =
      !text.empty() && text.front() == ':' ? "0.0.0.0" + std::string(text) : std::string(text);
  auto host_port = split_host_port(full);
  if (!host_port) return std::nullopt;
  auto [host, port] = *host_port;
  if (host == "localhost") host = "127.0.0.1";
  unsigned char buf[16];
  if (inet_pton(AF_INET, host.c_str(), buf) != 1 && inet_pton(AF_INET6, host.c_str(), buf) != 1)
    return std::nullopt;
  return ListenAddress{host, port};
}

namespace {

// A quantile alert compares histogram_quantile over a probe's buckets with its
// threshold: CanaryLatencyP95High the duration histogram's, a type's own
// (the agent stream's p99 gap) its histogram's. At a bucket bound the
// comparison is exact; between two bounds the quantile is interpolated, so
// runs of 1.2 s read as up to 2 s with bounds 1 and 2, and a threshold of
// 1.5 s pages with no run above it.
void warn_threshold_between_bounds(
    Config& config, const AlertRuleConfig& rule, const std::string& what,
    const std::function<std::optional<std::vector<double>>(const ConfiguredProbe&)>& bounds_of) {
  std::vector<std::string> names;
  std::string bounds_text;
  for (const auto& p : config.probes) {
    auto bounds = bounds_of(p);
    if (!bounds) continue;
    bool on_bound = std::any_of(bounds->begin(), bounds->end(), [&](double b) {
      return std::abs(b - rule.threshold) <= 1e-9 * std::max(1.0, b);
    });
    if (on_bound) continue;
    if (names.empty()) bounds_text = fmt::format("{}", fmt::join(*bounds, ", "));
    names.push_back(p.spec.name);
  }
  if (names.empty()) return;
  size_t shown = std::min<size_t>(names.size(), 3);
  std::string who = fmt::format("{}", fmt::join(names.begin(), names.begin() + shown, ", "));
  if (names.size() > shown) who += fmt::format(" and {} more", names.size() - shown);
  config.warnings.push_back(
      {config.file, 0, fmt::format("alerting.rules.{}.threshold", rule.key),
       fmt::format("{}s is not a bound of the {} buckets of {} ({}): their quantile is "
                   "interpolated between two bounds and can exceed {}s when nothing did, a false "
                   "page; {}choose one of the bounds",
                   rule.threshold, what, who, bounds_text, rule.threshold,
                   what == "duration" ? "add it to metrics.buckets or " : "")});
}

void warn_thresholds_between_bounds(Config& config) {
  using Measure = TypeAlert::Measure;
  for (const auto& rule : config.alerting.rules) {
    if (!rule.enabled) continue;
    if (rule.key == "latency_p95_high") {
      const auto& types = config.alerting.latency_types;
      warn_threshold_between_bounds(
          config, rule, "duration",
          [&](const ConfiguredProbe& p) -> std::optional<std::vector<double>> {
            if (std::find(types.begin(), types.end(), p.type->name) == types.end())
              return std::nullopt;
            return *duration_bounds(p.spec);
          });
    } else if (rule.type_alert && rule.type_alert->measure == Measure::kHistogramQuantileAbove) {
      const TypeAlert& alert = *rule.type_alert;
      warn_threshold_between_bounds(
          config, rule, std::string(alert.metric),
          [&](const ConfiguredProbe& p) -> std::optional<std::vector<double>> {
            if (p.type->name != rule.type) return std::nullopt;
            for (const auto& m : p.type->metrics)
              if (m.name == alert.metric && m.kind == TypeMetric::Kind::kHistogram)
                return p.spec.detail == ProbeSpec::MetricsDetail::kBasic ? m.basic_bounds
                                                                         : m.bounds;
            return std::nullopt;
          });
    }
  }
}

ConfigLoad load_unguarded(const std::string& text, const std::string& file_name, ConfigParts parts,
                          BoundedFileReader& files) {
  ConfigLoad load;
  auto config = std::make_unique<Config>();
  config->file = file_name;
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    load.errors.add({file_name, e.mark.line + 1, "", "invalid YAML: " + e.msg});
    return load;
  }
  if (!root.IsMap()) {
    load.errors.add({file_name, root.IsNull() ? 0 : root.Mark().line + 1, "",
                     "the config must be a mapping with global: and probes:"});
    return load;
  }
  ConfigReadContext ctx{file_name, &load.errors, &config->secrets, &files};
  YamlSection top(root, "", ctx);
  config->global = read_global(top.get_section("global"));

  std::set<std::string> names;
  if (parts == ConfigParts::kWithoutProbes) {
    top.get_node("probes");  // not built: no secret is read, no probe validated
  } else if (auto probes = top.get_node("probes")) {
    if (!probes->IsSequence()) {
      top.error("probes", "expected a list of probes");
    }
    for (size_t i = 0; probes->IsSequence() && i < probes->size(); ++i) {
      const YAML::Node item = (*probes)[i];
      std::string path = fmt::format("probes[{}]", i);
      if (!item.IsMap()) {
        top.error_at(item, path, "expected a mapping");
        continue;
      }
      // Each probe's secrets are collected on their own for its fingerprint.
      Secrets probe_secrets;
      ConfigReadContext probe_ctx{file_name, &load.errors, &probe_secrets, &files};
      YamlSection section(item, path, probe_ctx);
      size_t before = config->probes.size();
      try {
        read_probe(section, config->global, names, *config);
      } catch (const std::exception& e) {
        // A factory's bug or an odd node that slipped past the strict reader:
        // this probe is an error, the load goes on to report the rest.
        config->probes.erase(config->probes.begin() + static_cast<std::ptrdiff_t>(before),
                             config->probes.end());
        load.errors.add({file_name, item.Mark().line + 1, path,
                         "cannot read this probe: " + probe_secrets.redact(e.what())});
      }
      config->secrets.merge(probe_secrets);
      if (config->probes.size() > before) {
        auto& spec = config->probes.back().spec;
        spec.fingerprint = fingerprint_of(item, spec, probe_secrets);
      }
    }
  } else {
    top.error("", "missing required key probes");
  }
  // Read by `canaryd rules`; the daemon itself only validates it.
  if (top.has("alerting")) {
    if (auto node = top.get_node("alerting"); node && node->IsNull()) {
      // `alerting:` with nothing under it: the defaults.
    } else if (auto alerting = top.get_section("alerting")) {
      std::vector<std::string> globals;
      for (const auto& [name, value] : config->global.labels) globals.push_back(name);
      read_alerting(*alerting, config->alerting, globals);
    }
  }
  top.finish();
  if (load.errors.empty()) {
    warn_thresholds_between_bounds(*config);
    load.config = std::move(config);
  }
  return load;
}

// No exception leaves a load: check-config must print an error, and a reload
// (on a thread of its own) must fail, not end the process.
ConfigLoad load_guarded(const std::string& file_name,
                        const std::function<ConfigLoad()>& load) noexcept {
  try {
    return load();
  } catch (const std::exception& e) {
    ConfigLoad failed;
    failed.errors.add({file_name, 0, "", fmt::format("cannot load the config: {}", e.what())});
    return failed;
  } catch (...) {
    ConfigLoad failed;
    failed.errors.add({file_name, 0, "", "cannot load the config: unknown error"});
    return failed;
  }
}

}  // namespace

ConfigLoad load_config_text(const std::string& text, const std::string& file_name,
                            ConfigParts parts, const std::atomic<bool>* cancel) {
  return load_guarded(file_name, [&] {
    BoundedFileReader files(BoundedFileReader::kReadBudget, cancel);
    return load_unguarded(text, file_name, parts, files);
  });
}

ConfigLoad load_config_file(const std::string& path, ConfigParts parts,
                            const std::atomic<bool>* cancel) {
  return load_guarded(path, [&] {
    // The config file and its secrets share one read budget.
    BoundedFileReader files(BoundedFileReader::kReadBudget, cancel);
    std::string error;
    auto text = files.read(path, error);
    if (!text) {
      ConfigLoad load;
      load.errors.add({path, 0, "", fmt::format("cannot read config: {}", error)});
      return load;
    }
    return load_unguarded(*text, path, parts, files);
  });
}

}  // namespace canaryd
