#include "daemon/alerting.h"

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <map>

namespace canaryd {

namespace {

// Prometheus durations: whole units, largest first ("1h30m", "90s").
std::string prom_duration(Duration d) {
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(d).count();
  if (ms == 0) return "0s";
  std::string out;
  for (auto [unit, size] : std::initializer_list<std::pair<const char*, int64_t>>{
           {"d", 86'400'000}, {"h", 3'600'000}, {"m", 60'000}, {"s", 1000}, {"ms", 1}}) {
    if (ms >= size) {
      out += fmt::format("{}{}", ms / size, unit);
      ms %= size;
    }
  }
  return out;
}

std::string percent(double ratio) { return fmt::format("{:g}%", ratio * 100); }

std::string seconds_text(double s) {
  return format_duration(std::chrono::duration_cast<Duration>(std::chrono::duration<double>(s)));
}

std::string join(const std::vector<std::string>& parts) {
  std::string out;
  for (const auto& p : parts) {
    if (p.empty()) continue;
    if (!out.empty()) out += ", ";
    out += p;
  }
  return out;
}

// `text` with each {field} replaced by its value.
std::string fill(std::string_view text, const std::map<std::string_view, std::string>& fields) {
  std::string out;
  while (!text.empty()) {
    bool replaced = false;
    for (const auto& [field, value] : fields) {
      if (text.starts_with(field)) {
        out += value;
        text.remove_prefix(field.size());
        replaced = true;
        break;
      }
    }
    if (!replaced) {
      out += text.front();
      text.remove_prefix(1);
    }
  }
  return out;
}

class RuleWriter {
 public:
  RuleWriter(const AlertingConfig& cfg, const std::vector<std::string>& globals)
      : cfg_(cfg), globals_(join(globals)), global_names_(globals) {
    probe_by_ = join({"probe", "type", "category", globals_});
    across_labels_ = {"probe"};
    for (const auto& g : globals)
      if (g != "location") across_labels_.push_back(g);
    across_by_ = join({"probe", "type", "category"});
    for (size_t i = 1; i < across_labels_.size(); ++i) across_by_ += ", " + across_labels_[i];
    short_ = prom_duration(cfg.short_window);
    long_ = prom_duration(cfg.long_window);
  }

  std::string write() {
    YAML::Emitter out;
    out << YAML::BeginMap << YAML::Key << "groups" << YAML::Value << YAML::BeginSeq;
    out << YAML::BeginMap << YAML::Key << "name" << YAML::Value << "canaryd.recording";
    out << YAML::Key << "rules" << YAML::Value << YAML::BeginSeq;
    for (const std::string& w : {short_, long_}) recording(out, w);
    out << YAML::EndSeq << YAML::EndMap;
    out << YAML::BeginMap << YAML::Key << "name" << YAML::Value << "canaryd.alerts";
    out << YAML::Key << "rules" << YAML::Value << YAML::BeginSeq;
    for (const auto& rule : cfg_.rules)
      if (rule.enabled) alert(out, rule);
    out << YAML::EndSeq << YAML::EndMap;
    out << YAML::EndSeq << YAML::EndMap;
    return std::string(out.c_str()) + "\n";
  }

 private:
  std::string by(const std::string& extra) const { return join({extra, globals_}); }

  static void record(YAML::Emitter& out, const std::string& name, const std::string& expr) {
    out << YAML::BeginMap << YAML::Key << "record" << YAML::Value << name;
    out << YAML::Key << "expr" << YAML::Value << expr << YAML::EndMap;
  }

  void recording(YAML::Emitter& out, const std::string& w) {
    // Success ratios come from the counters, not the last-result gauge: a
    // window's every run counts once, whatever the scrape interval.
    //
    // A replica is one scrape target: an HA copy, or the shard a probe ran
    // on before it moved. Each is judged on its own runs, and a probe by its
    // best replica: a replica whose own network is broken never drags the
    // probe's ratio down while another sees the target fine, and a probe
    // that moved shards mid-window has both in the window, so its series
    // neither break nor double.
    const std::string replica_by = join({probe_by_, "instance"});
    const std::string runs_i = "canary:replica_probe_runs:increase_" + w;
    const std::string fails_i = "canary:replica_probe_failures:increase_" + w;
    const std::string ratio_i = "canary:replica_probe_success:ratio_" + w;
    const std::string runs = "canary:probe_runs:increase_" + w;
    const std::string ratio = "canary:probe_success:ratio_" + w;
    record(out, runs_i,
           fmt::format("sum by ({}) (increase(canary_probe_runs_total[{}]))", replica_by, w));
    record(out, fails_i,
           fmt::format("sum by ({}) (increase(canary_probe_failures_total[{}]))", replica_by, w));
    record(out, ratio_i, fmt::format("1 - {} / {}", fails_i, runs_i));
    record(out, ratio, fmt::format("max by ({}) ({})", probe_by_, ratio_i));
    // The most runs any replica saw: the min_runs guard then holds across a
    // move as long as either side of it has enough.
    record(out, runs, fmt::format("max by ({}) ({})", probe_by_, runs_i));
    // The best replica's failures scaled to those runs, so that the type,
    // category and overall ratios (which sum failures and runs) agree with
    // the probe's. The scale is runs / the replica's runs, exactly 1 for a
    // single replica: its failures come out unchanged, where runs x (1 -
    // ratio) would be off in the last bit. Without a ratio (no runs in the
    // window) there is no best replica, and the failures are all zero.
    record(out, "canary:probe_failures:increase_" + w,
           fmt::format("max by ({0}) ({1} * ({2} / on ({0}) group_right () {3}) and on ({4}) "
                       "({5} == on ({0}) group_left () {6})) or max by ({0}) ({1})",
                       probe_by_, fails_i, runs, runs_i, replica_by, ratio_i, ratio));
    auto aggregate = [&](const std::string& level, const std::string& labels,
                         const std::string& filter) {
      std::string runs = fmt::format("canary:probe_runs:increase_{}{}", w, filter);
      std::string fails = fmt::format("canary:probe_failures:increase_{}{}", w, filter);
      record(out, fmt::format("canary:{}_runs:increase_{}", level, w),
             fmt::format("sum by ({}) ({})", by(labels), runs));
      record(out, fmt::format("canary:{}_success:ratio_{}", level, w),
             fmt::format("1 - sum by ({0}) ({1}) / sum by ({0}) ({2})", by(labels), fails, runs));
    };
    aggregate("type", "type", "");
    aggregate("category", "category", "");
    aggregate("overall", "", "");
    // Critical probes: joined with the info series, which carries `critical`.
    std::string critical = fmt::format(" and on ({}) canary_probe_info{{critical=\"true\"}}",
                                       join({"probe", globals_}));
    aggregate("critical", "", critical);
    // Latency, too, is the best replica's: a replica starved of CPU or on a
    // slow path of its own sees slow runs that the target is not to blame for.
    record(out, "canary:probe_latency_seconds:mean_" + w,
           fmt::format("min by ({0}) (sum by ({1}) (rate(canary_probe_duration_seconds_sum[{2}])) "
                       "/ sum by ({1}) (rate(canary_probe_duration_seconds_count[{2}])))",
                       probe_by_, replica_by, w));
    record(out, "canary:probe_latency_seconds:p95_" + w,
           fmt::format("min by ({}) (histogram_quantile(0.95, sum by (le, {}) "
                       "(rate(canary_probe_duration_seconds_bucket[{}]))))",
                       probe_by_, replica_by, w));
  }

  // The most frequent failure reason over the long window, for the
  // description: Prometheus runs this query when it renders the annotation.
  // It is narrowed by the alert's own labels (`filter_labels` and the global
  // labels), so another environment's probes never supply the reason;
  // `critical_only` joins with the info series as the critical ratio does;
  // `across_locations` sums the reasons of every location.
  std::string top_reason(std::vector<std::string> filter_labels, bool critical_only = false,
                         bool across_locations = false) const {
    for (const auto& g : global_names_)
      if (!across_locations || g != "location") filter_labels.push_back(g);
    std::string matchers, args;
    for (const auto& l : filter_labels) {
      matchers += (matchers.empty() ? "" : ",") + l + "=%q";
      args += " $labels." + l;
    }
    std::string series = "canary_probe_failures_total" +
                         (matchers.empty() ? std::string() : "{" + matchers + "}") + "[" + long_ +
                         "]";
    std::string inner = "increase(" + series + ")";
    if (critical_only)
      inner +=
          " and on (" + join({"probe", globals_}) + ") canary_probe_info{critical=\\\"true\\\"}";
    std::string query = "printf \"topk(1, sum by (reason) (" + inner + ") > 0)\"" + args;
    return "{{ with " + query +
           " | query }}{{ range . }}{{ .Labels.reason }}{{ end }}{{ else }}none{{ end }}";
  }

  int locations_of(const AlertRuleConfig& r) const {
    return judges_probe_results(r) ? r.min_failing_locations.value_or(cfg_.min_failing_locations)
                                   : 1;
  }

  // A probe alert's expression from `in_location(filter)`, its condition per
  // probe and location (`filter`: more matchers for each of its selectors),
  // and a sentence for the description. One location is enough by default:
  // an alert per failing location, the shape Alertmanager's inhibition by
  // [env, location] expects. With N, one alert per probe whose condition
  // holds in at least N locations, valued at the worst location. A location
  // whose canaryd is overloaded does not count: its results may be its own
  // doing, which Alertmanager's mute by location cannot see in an alert
  // without a location.
  std::pair<std::string, std::string> probe_alert(
      const AlertRuleConfig& r, const std::function<std::string(const std::string&)>& in_location,
      bool higher_is_worse) const {
    const int n = locations_of(r);
    if (n <= 1) return {in_location(""), ""};
    std::string overloaded;
    for (const auto& other : cfg_.rules)
      if (other.key == "canaryd_overloaded" && other.enabled)
        overloaded =
            fmt::format(" unless on ({}) ALERTS{{alertname=\"{}\", alertstate=\"firing\"}}",
                        globals_, other.name);
    std::string cond = "(" + in_location("") + ")" + overloaded;
    std::string expr = fmt::format("{0} by ({1}) ({2}) and on ({1}) (count by ({1}) ({2}) >= {3})",
                                   higher_is_worse ? "max" : "min", across_by_, cond, n);
    // How many locations fail now, counted when the annotation is rendered.
    std::string matchers, args;
    for (const auto& l : across_labels_) {
      matchers += "," + l + "=%q";
      args += " $labels." + l;
    }
    std::string filtered = in_location(matchers);
    std::string repeated;
    for (size_t at = filtered.find(matchers); at != std::string::npos;
         at = filtered.find(matchers, at + 1))
      repeated += args;
    std::string query = "count((" + filtered + ")" + overloaded + ")";
    std::string quoted;
    for (char c : query) quoted += c == '"' ? std::string("\\\"") : std::string(1, c);
    std::string sentence = fmt::format(
        " That is the worst of {{{{ with printf \"{}\"{} | query }}}}{{{{ . | first | value }}}}"
        "{{{{ else }}}}{}{{{{ end }}}} locations failing; {} must fail to page.",
        quoted, repeated, n, n);
    return {expr, sentence};
  }

  void alert(YAML::Emitter& out, const AlertRuleConfig& r) {
    const std::string& w = r.long_window ? long_ : short_;
    std::string guard = fmt::format("canary:probe_runs:increase_{}", w);
    std::string thr = fmt::format("{:g}", r.threshold);
    std::string expr, summary, description;
    std::string probe_text =
        "{{ $labels.probe }} ({{ $labels.type }}, category {{ "
        "$labels.category }})";
    std::string reason = "Top failure reason over " + long_ + ": " +
                         top_reason({"probe"}, false, locations_of(r) > 1) + ".";
    // "Success over the last 5m is 42% <rest>" and "<what> over the last 5m is
    // 12s <rest>": the sentence every ratio and latency alert opens with.
    auto success_is = [&](const std::string& rest) {
      return fmt::format("Success over the last {} is {{{{ $value | humanizePercentage }}}}{}", w,
                         rest);
    };
    auto duration_is = [&](const char* what, const std::string& rest) {
      return fmt::format("{} over the last {} is {{{{ $value | humanizeDuration }}}}{}", what, w,
                         rest);
    };
    const std::string threshold_pct = " (threshold " + percent(r.threshold) + ")";
    const std::string key = r.key;
    if (r.type_alert) {
      const TypeAlert& a = *r.type_alert;
      const bool ratio = a.measure == TypeAlert::Measure::kSuccessAtMost ||
                         a.measure == TypeAlert::Measure::kSuccessBelow;
      const char* op = a.measure == TypeAlert::Measure::kSuccessAtMost ? "<=" : "<";
      std::string series =
          ratio ? "canary:probe_success:ratio_" + w : "canary:probe_latency_seconds:mean_" + w;
      auto in_location = [&](const std::string& filter) {
        std::string selector = fmt::format("{{type=\"{}\"{}}}", r.type, filter);
        // A type's histogram, per probe: its best replica's, as the latency.
        std::string measured =
            a.measure == TypeAlert::Measure::kHistogramMeanAbove
                ? fmt::format(
                      "min by ({0}) (sum by ({1}) (rate({2}_sum{3}[{4}])) / sum by ({1}) "
                      "(rate({2}_count{3}[{4}])))",
                      probe_by_, join({probe_by_, "instance"}), a.metric, selector, w)
            : a.measure == TypeAlert::Measure::kHistogramQuantileAbove
                ? fmt::format(
                      "min by ({0}) (histogram_quantile({5:g}, sum by (le, {1}) "
                      "(rate({2}_bucket{3}[{4}]))))",
                      probe_by_, join({probe_by_, "instance"}), a.metric, selector, w, a.quantile)
                : series + selector;
        return fmt::format("{} {} {} and {}{} >= {}", measured, ratio ? op : ">", thr, guard,
                           selector, cfg_.min_runs);
      };
      auto [e, locations] = probe_alert(r, in_location, !ratio);
      expr = e;
      const std::map<std::string_view, std::string> fields = {
          {"{probe}", probe_text},
          {"{window}", w},
          {"{value}",
           ratio ? "{{ $value | humanizePercentage }}" : "{{ $value | humanizeDuration }}"},
          {"{threshold}", ratio ? percent(r.threshold) : seconds_text(r.threshold)},
          {"{for}", prom_duration(r.for_duration)},
          {"{down_for}", prom_duration(r.for_duration + cfg_.long_window)},
      };
      summary = fill(a.summary, fields);
      description = fill(a.description, fields) + locations + " " + reason;
    } else if (key == "latency_p95_high") {
      std::string types;
      for (const auto& t : cfg_.latency_types) types += (types.empty() ? "" : "|") + t;
      auto in_location = [&](const std::string& filter) {
        return fmt::format(
            "canary:probe_latency_seconds:p95_{0}{{type=~\"{1}\"{5}}} > {2} and "
            "{3}{{type=~\"{1}\"{5}}} >= {4}",
            w, types, thr, guard, cfg_.min_runs, filter);
      };
      auto [e, locations] = probe_alert(r, in_location, true);
      expr = e;
      summary = "Probe " + probe_text + " p95 above the " + seconds_text(r.threshold) + " baseline";
      description =
          duration_is("p95 run time", " (baseline " + seconds_text(r.threshold) + ").") + locations;
    } else if (key == "critical_success_low" || key == "overall_success_low") {
      std::string level = key == "critical_success_low" ? "critical" : "overall";
      expr = fmt::format(
          "canary:{0}_success:ratio_{1} < {2} and on ({3}) canary:{0}_runs:increase_{1} >= {4}",
          level, w, thr, globals_, cfg_.min_runs);
      summary = fmt::format("{} probes' success below {}", level == "critical" ? "Critical" : "All",
                            percent(r.threshold));
      description = success_is(threshold_pct + ". Top failure reason over " + long_ + ": " +
                               top_reason({}, level == "critical") + ".");
    } else if (key == "category_success_low") {
      expr = fmt::format(
          "canary:category_success:ratio_{0} < {1} and on ({2}) canary:category_runs:increase_{0} "
          ">= {3}",
          w, thr, by("category"), cfg_.min_runs);
      summary = "Category {{ $labels.category }} success below " + percent(r.threshold);
      description = success_is(threshold_pct + ". Top failure reason over " + long_ + ": " +
                               top_reason({"category"}) + ".");
    } else if (key == "canaryd_down") {
      expr = fmt::format("up{{job=\"{0}\"}} == 0 or absent(up{{job=\"{0}\"}})", cfg_.job);
      summary = "canaryd is down or not scraped";
      description = fmt::format(
          "Prometheus has no healthy target with job=\"{}\": nothing is "
          "being probed, so no other canary alert can fire.",
          cfg_.job);
    } else if (key == "canaryd_overloaded") {
      // The config's global labels come from canary_shard_info, so that
      // Alertmanager can mute the probe alerts of the same location.
      std::string labels = globals_.empty() ? std::string()
                                            : fmt::format(
                                                  " * on (job, instance) group_left ({0}) max by "
                                                  "(job, instance, {0}) (canary_shard_info)",
                                                  globals_);
      expr = fmt::format(
          "((sum by (job, instance) (rate(canary_scheduler_skipped_runs_total{{cause=~\"late|"
          "missed|starved|limit\"}}[{0}])) > 0) or (max by (job, instance) "
          "(avg_over_time(canary_loop_saturation_ratio[{0}])) > {1})){2}",
          w, thr, labels);
      summary = "canaryd {{ $labels.instance }} is overloaded";
      description = fmt::format(
          "Over the last {} it skipped runs it was too late to start, too busy to judge or "
          "short of descriptors for, or its probe loop was "
          "busy more than {} of the time: its results are incomplete, so the probe alerts of "
          "its location are muted. Add workers or shards, or raise LimitNOFILE "
          "(docs/sharding.md).",
          w, percent(r.threshold));
    } else if (key == "shard_missing") {
      // Each shard counted once, however many replicas run it.
      expr = fmt::format(
          "count by ({0}) (count by ({1}) (canary_shard_info)) < max by ({0}) "
          "(canary_shard_total_shards)",
          globals_, by("shard"));
      summary = "A canaryd shard is missing";
      description =
          "{{ $value }} shards report, fewer than --total-shards says: the probes of the "
          "missing shard run nowhere.";
    } else if (key == "shard_totals_mismatch") {
      expr = fmt::format("count by ({0}) (count by ({1}) (canary_shard_info)) > 1", globals_,
                         by("total_shards"));
      summary = "canaryd shards disagree on --total-shards";
      description =
          "Shards of one config were started with {{ $value }} different totals, so some "
          "probes run twice and others nowhere.";
    } else if (key == "probes_unassigned") {
      expr = fmt::format(
          "max by ({0}) (sum by ({1}) (canary_probes_configured)) - sum by ({0}) "
          "(max by ({2}) (sum by ({3}) (canary_probes_assigned))) > 0",
          globals_, by("instance"), by("shard"), join({"shard", "instance", globals_}));
      summary = "Probes that no canaryd shard runs";
      description =
          "{{ $value }} probes of the config run on no shard (a shard is missing or the "
          "shards disagree on the total).";
    } else if (key == "probe_stale") {
      // Measured at the scrape (timestamp()), not at evaluation: the gap
      // between the two would make short-interval probes look stale.
      expr = fmt::format(
          "(timestamp(canary_probe_last_run_timestamp_seconds) - "
          "canary_probe_last_run_timestamp_seconds) > {} * canary_probe_interval_seconds",
          thr);
      summary = "Probe " + probe_text + " has not run for " + thr + " intervals";
      description =
          "The last run finished {{ $value | humanizeDuration }} ago; the scheduler "
          "may be overloaded or the probe stuck.";
    } else if (key == "config_reload_failed") {
      expr = "canary_config_last_reload_successful == 0";
      summary = "canaryd config reload failed";
      description =
          "The last config reload was rejected; the previous config keeps running. "
          "Run `canaryd check-config` on the file for the errors.";
    } else if (key == "tls_expiry_warning" || key == "tls_expiry_critical") {
      expr = fmt::format("(canary_tls_cert_expiry_timestamp_seconds - time()) < {}", thr);
      summary = "TLS certificate of " + probe_text + " expires within " + seconds_text(r.threshold);
      description = "The certificate expires in {{ $value | humanizeDuration }}.";
    }
    out << YAML::BeginMap;
    out << YAML::Key << "alert" << YAML::Value << r.name;
    out << YAML::Key << "expr" << YAML::Value << expr;
    if (r.for_duration.count() > 0)
      out << YAML::Key << "for" << YAML::Value << prom_duration(r.for_duration);
    out << YAML::Key << "labels" << YAML::Value << YAML::BeginMap;
    out << YAML::Key << "severity" << YAML::Value << r.severity << YAML::EndMap;
    out << YAML::Key << "annotations" << YAML::Value << YAML::BeginMap;
    out << YAML::Key << "summary" << YAML::Value << summary;
    out << YAML::Key << "description" << YAML::Value << description;
    if (!cfg_.runbook_url_template.empty()) {
      std::string url = cfg_.runbook_url_template;
      for (size_t at = url.find("{{alert}}"); at != std::string::npos;
           at = url.find("{{alert}}", at + r.name.size()))
        url.replace(at, 9, r.name);
      out << YAML::Key << "runbook_url" << YAML::Value << url;
    }
    out << YAML::EndMap << YAML::EndMap;
  }

  const AlertingConfig& cfg_;
  std::string globals_;
  std::vector<std::string> global_names_;
  std::string probe_by_;
  // A probe across locations: its labels, and the filter of its queries.
  std::string across_by_;
  std::vector<std::string> across_labels_;
  std::string short_;
  std::string long_;
};

}  // namespace

std::string generate_rules(const AlertingConfig& cfg,
                           const std::vector<std::string>& global_label_names) {
  return RuleWriter(cfg, global_label_names).write();
}

}  // namespace canaryd
