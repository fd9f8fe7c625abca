#include "daemon/state_store.h"

#include <fmt/format.h>

#include <ctime>
#include <set>

namespace canaryd {

std::string format_time(WallTime t) {
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
  std::time_t secs = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  return fmt::format("{}.{:03d}Z", buf, static_cast<int>(ms % 1000));
}

static double seconds_between(WallTime from, WallTime to) {
  return std::chrono::duration<double>(to - from).count();
}

nlohmann::ordered_json result_json(const ProbeResult& r, double duration_seconds) {
  nlohmann::ordered_json j;
  j["success"] = r.success;
  j["reason"] = std::string(reason_name(r.reason));
  j["message"] = r.message;
  j["duration_seconds"] = duration_seconds;
  nlohmann::ordered_json phases = nlohmann::ordered_json::object();
  for (const auto& [name, seconds] : r.phases) phases[name] = seconds;
  j["phases"] = phases;
  nlohmann::ordered_json d = nlohmann::ordered_json::object();
  const ProbeDetails& det = r.details;
  if (det.status_code) d["status_code"] = *det.status_code;
  if (det.cert_expiry_unix)
    d["cert_expiry"] = format_time(WallTime(std::chrono::duration_cast<WallTime::duration>(
        std::chrono::duration<double>(*det.cert_expiry_unix))));
  if (det.subprotocol) d["subprotocol"] = *det.subprotocol;
  if (det.close_code) d["close_code"] = *det.close_code;
  if (det.connections_ok) d["connections_ok"] = *det.connections_ok;
  if (det.connections_total) d["connections_total"] = *det.connections_total;
  if (det.timeout_phase) d["timeout_phase"] = *det.timeout_phase;
  j["details"] = d;
  return j;
}

void StateStore::sync_probes(const std::vector<const ConfiguredProbe*>& probes, int history) {
  std::lock_guard lock(mu_);
  history_ = static_cast<size_t>(history);
  std::set<std::string> wanted;
  for (const auto* p : probes) {
    wanted.insert(p->spec.name);
    auto& state = probes_[p->spec.name];
    state.spec = p->spec;
    state.target = p->target;
    while (state.history.size() > history_) state.history.pop_back();
  }
  for (auto it = probes_.begin(); it != probes_.end();) {
    it = wanted.count(it->first) ? std::next(it) : probes_.erase(it);
  }
}

StateStore::Transition StateStore::record(const RunRecord& rec) {
  std::lock_guard lock(mu_);
  auto it = probes_.find(rec.spec.name);
  if (it == probes_.end()) return Transition::kNone;
  ProbeState& p = it->second;
  p.history.push_front({rec.finished, rec.run_id, rec.result, rec.duration_seconds});
  while (p.history.size() > history_) p.history.pop_back();
  ++p.runs;
  Transition t = Transition::kNone;
  if (rec.result.success) {
    if (p.failing_since) t = Transition::kRecovered;
    if (!p.passing_since) p.passing_since = rec.finished;
    p.failing_since.reset();
    p.last_success = rec.finished;
    p.consecutive_failures = 0;
  } else {
    if (!p.failing_since) {
      p.failing_since = rec.finished;
      t = Transition::kFirstFailure;
    }
    p.passing_since.reset();
    ++p.failures;
    ++p.consecutive_failures;
  }
  return t;
}

void StateStore::set_config_status(std::string file, bool last_reload_ok, std::string last_error) {
  std::lock_guard lock(mu_);
  config_file_ = std::move(file);
  last_reload_ok_ = last_reload_ok;
  last_reload_error_ = std::move(last_error);
}

nlohmann::ordered_json StateStore::probe_json(const ProbeState& p, WallTime now) const {
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
  if (p.history.empty()) {
    j["status"] = "pending";
    j["last"] = nullptr;
  } else {
    const Entry& last = p.history.front();
    j["status"] = last.result.success ? "passing" : "failing";
    auto lj = result_json(last.result, last.duration_seconds);
    lj["time"] = format_time(last.time);
    lj["run_id"] = last.run_id;
    j["last"] = lj;
  }
  j["failing_since"] = p.failing_since ? nlohmann::ordered_json(format_time(*p.failing_since))
                                       : nlohmann::ordered_json(nullptr);
  j["failing_for_seconds"] = p.failing_since
                                 ? nlohmann::ordered_json(seconds_between(*p.failing_since, now))
                                 : nlohmann::ordered_json(nullptr);
  j["passing_since"] = p.passing_since ? nlohmann::ordered_json(format_time(*p.passing_since))
                                       : nlohmann::ordered_json(nullptr);
  j["passing_for_seconds"] = p.passing_since
                                 ? nlohmann::ordered_json(seconds_between(*p.passing_since, now))
                                 : nlohmann::ordered_json(nullptr);
  j["last_success"] = p.last_success ? nlohmann::ordered_json(format_time(*p.last_success))
                                     : nlohmann::ordered_json(nullptr);
  j["consecutive_failures"] = p.consecutive_failures;
  j["runs_total"] = p.runs;
  j["failures_total"] = p.failures;
  nlohmann::ordered_json history = nlohmann::ordered_json::array();
  for (const auto& e : p.history) {
    nlohmann::ordered_json h;
    h["time"] = format_time(e.time);
    h["success"] = e.result.success;
    h["reason"] = std::string(reason_name(e.result.reason));
    h["duration_seconds"] = e.duration_seconds;
    if (!e.result.success) h["message"] = e.result.message;
    history.push_back(std::move(h));
  }
  j["history"] = history;
  return j;
}

nlohmann::ordered_json StateStore::all(WallTime now) const {
  std::lock_guard lock(mu_);
  nlohmann::ordered_json j;
  j["generated_at"] = format_time(now);
  nlohmann::ordered_json config;
  config["file"] = config_file_;
  config["last_reload_successful"] = last_reload_ok_;
  if (!last_reload_error_.empty()) config["last_reload_error"] = last_reload_error_;
  j["config"] = config;
  int passing = 0, failing = 0, pending = 0;
  nlohmann::ordered_json probes = nlohmann::ordered_json::array();
  for (const auto& [name, p] : probes_) {
    if (p.history.empty()) {
      ++pending;
    } else if (p.history.front().result.success) {
      ++passing;
    } else {
      ++failing;
    }
    probes.push_back(probe_json(p, now));
  }
  j["summary"] = {
      {"probes", probes_.size()}, {"passing", passing}, {"failing", failing}, {"pending", pending}};
  j["probes"] = probes;
  return j;
}

std::optional<nlohmann::ordered_json> StateStore::probe(const std::string& name,
                                                        WallTime now) const {
  std::lock_guard lock(mu_);
  auto it = probes_.find(name);
  if (it == probes_.end()) return std::nullopt;
  return probe_json(it->second, now);
}

}  // namespace canaryd
