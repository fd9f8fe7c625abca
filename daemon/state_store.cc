#include "daemon/state_store.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <ctime>
#include <set>

#include "base/trace_context.h"

namespace canaryd {

namespace {
std::string format_unix_ms(int64_t ms) {
  std::time_t secs = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  return fmt::format("{}.{:03d}Z", buf, static_cast<int>(ms % 1000));
}
}  // namespace

std::string format_time(WallTime t) {
  return format_unix_ms(
      std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count());
}

std::string format_unix_time(double seconds) {
  // Never through WallTime: its nanoseconds end in 2262, and a certificate
  // may well say 9999-12-31 (RFC 5280's "no well-defined expiration").
  constexpr double kLast = 253402300799.999;  // 9999-12-31T23:59:59.999Z
  const double clamped = std::isfinite(seconds) ? std::clamp(seconds, 0.0, kLast) : 0.0;
  return format_unix_ms(static_cast<int64_t>(std::floor(clamped * 1000)));
}

static double seconds_between(WallTime from, WallTime to) {
  return std::chrono::duration<double>(to - from).count();
}

nlohmann::ordered_json result_json(const ProbeResult& r, double duration_seconds, int attempts) {
  nlohmann::ordered_json j;
  j["success"] = r.success;
  j["reason"] = std::string(reason_name(r.reason));
  j["message"] = r.message;
  j["duration_seconds"] = duration_seconds;
  j["attempts"] = attempts;
  j["retried"] = r.success && attempts > 1;
  nlohmann::ordered_json phases = nlohmann::ordered_json::object();
  for (const auto& [name, seconds] : r.phases) phases[name] = seconds;
  j["phases"] = phases;
  nlohmann::ordered_json d = nlohmann::ordered_json::object();
  const ProbeDetails& det = r.details;
  if (det.status_code) d["status_code"] = *det.status_code;
  if (det.cert_expiry_unix && std::isfinite(*det.cert_expiry_unix))
    d["cert_expiry"] = format_unix_time(*det.cert_expiry_unix);
  if (det.timeout_phase) d["timeout_phase"] = *det.timeout_phase;
  for (const auto& [key, value] : det.fields.items()) d[key] = value;
  j["details"] = d;
  return j;
}

void StateStore::set_config_status(std::string file, bool last_reload_ok, std::string last_error) {
  std::lock_guard lock(config_mu_);
  config_file_ = std::move(file);
  last_reload_ok_ = last_reload_ok;
  last_reload_error_ = std::move(last_error);
}

namespace {

nlohmann::ordered_json probe_json(const ProbeBook::Entry& p, WallTime now) {
  nlohmann::ordered_json j;
  j["name"] = p.spec.name;
  j["type"] = p.spec.type;
  j["category"] = p.spec.category;
  j["critical"] = p.spec.critical;
  j["target"] = p.target;
  j["interval_seconds"] = std::chrono::duration<double>(p.spec.interval).count();
  j["timeout_seconds"] = std::chrono::duration<double>(p.spec.timeout).count();
  nlohmann::ordered_json labels = nlohmann::ordered_json::object();
  for (const auto& [k, v] : p.spec.labels) labels[k] = v;
  j["labels"] = labels;
  if (!p.last) {
    j["status"] = "pending";
    j["last"] = nullptr;
  } else {
    j["status"] = p.last->success ? "passing" : "failing";
    auto lj = result_json(*p.last, p.last_duration, p.last_attempts);
    lj["time"] = format_time(p.last_time);
    lj["run_id"] = p.last_run_id;
    // The same id, by the name the platform's tracing knows it by (the run's
    // requests carried it in traceparent); absent for a run saved by a
    // canaryd whose run ids were not trace ids.
    if (is_trace_id(p.last_run_id)) lj["trace_id"] = p.last_run_id;
    j["last"] = lj;
  }
  auto time_or_null = [](const std::optional<WallTime>& t) {
    return t ? nlohmann::ordered_json(format_time(*t)) : nlohmann::ordered_json(nullptr);
  };
  auto age_or_null = [&](const std::optional<WallTime>& t) {
    return t ? nlohmann::ordered_json(seconds_between(*t, now)) : nlohmann::ordered_json(nullptr);
  };
  j["failing_since"] = time_or_null(p.failing_since);
  j["failing_for_seconds"] = age_or_null(p.failing_since);
  j["passing_since"] = time_or_null(p.passing_since);
  j["passing_for_seconds"] = age_or_null(p.passing_since);
  j["last_success"] = time_or_null(p.last_success);
  j["consecutive_failures"] = p.consecutive_failures;
  j["runs_total"] = p.runs;
  j["failures_total"] = p.failures;
  nlohmann::ordered_json history = nlohmann::ordered_json::array();
  for (const auto& e : p.history) {
    nlohmann::ordered_json h;
    h["time"] = format_time(e.time);
    h["success"] = e.success;
    h["reason"] = std::string(reason_name(e.reason));
    h["duration_seconds"] = e.duration_seconds;
    if (!e.success) h["message"] = e.message;
    history.push_back(std::move(h));
  }
  j["history"] = history;
  return j;
}

std::string pretty(const nlohmann::ordered_json& j) {
  return j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace);
}

// A pretty dump placed `by` spaces deep: JSON text has no raw newline inside
// strings, so indenting after each newline is exact.
void append_indented(std::string& out, const std::string& text, size_t by) {
  for (char c : text) {
    out += c;
    if (c == '\n') out.append(by, ' ');
  }
}

}  // namespace

nlohmann::ordered_json StateStore::config_json() const {
  nlohmann::ordered_json config;
  std::lock_guard lock(config_mu_);
  config["file"] = config_file_;
  config["last_reload_successful"] = last_reload_ok_;
  if (!last_reload_error_.empty()) config["last_reload_error"] = last_reload_error_;
  return config;
}

void StateStore::for_each_probe(WallTime now,
                                const std::function<void(const nlohmann::ordered_json&)>& f) const {
  for (const ProbeBook* book : books_)
    book->for_each([&](const ProbeBook::Entry& p) { f(probe_json(p, now)); });
}

std::string StateStore::all_text(WallTime now) const {
  const nlohmann::ordered_json config = config_json();
  size_t passing = 0, failing = 0, pending = 0, count = 0;
  std::string probes;
  {
    // Each loop's book is in name order; the document is too.
    std::vector<std::pair<std::string, std::string>> each;
    for_each_probe(now, [&](const nlohmann::ordered_json& p) {
      const auto& status = p["status"].get_ref<const std::string&>();
      if (status == "pending") {
        ++pending;
      } else if (status == "passing") {
        ++passing;
      } else {
        ++failing;
      }
      each.emplace_back(p["name"].get<std::string>(), pretty(p));
    });
    std::sort(each.begin(), each.end());
    for (const auto& [name, text] : each) {
      probes += count++ == 0 ? "\n    " : ",\n    ";
      append_indented(probes, text, 4);
    }
  }
  // The layout nlohmann's dump(2) gives the whole document, written piecewise.
  nlohmann::ordered_json summary = {
      {"probes", count}, {"passing", passing}, {"failing", failing}, {"pending", pending}};
  std::string out = "{\n  \"generated_at\": " + pretty(format_time(now)) + ",\n  \"config\": ";
  append_indented(out, pretty(config), 2);
  out += ",\n  \"summary\": ";
  append_indented(out, pretty(summary), 2);
  out += ",\n  \"probes\": ";
  out += count == 0 ? "[]" : "[" + probes + "\n  ]";
  out += "\n}\n";
  return out;
}

std::optional<nlohmann::ordered_json> StateStore::probe(const std::string& name,
                                                        WallTime now) const {
  std::optional<nlohmann::ordered_json> out;
  for (const ProbeBook* book : books_)
    if (book->with(name, [&](const ProbeBook::Entry& p) { out = probe_json(p, now); })) break;
  return out;
}

}  // namespace canaryd
