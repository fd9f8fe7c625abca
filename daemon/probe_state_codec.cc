#include "daemon/probe_state_codec.h"

#include <openssl/evp.h>

#include <cmath>
#include <nlohmann/json.hpp>

namespace canaryd {

namespace {

// Bumped when the shape changes; an entry of another version starts fresh.
constexpr int kStateVersion = 1;

using json = nlohmann::ordered_json;

int64_t to_ms(WallTime t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
}

WallTime from_ms(int64_t ms) { return WallTime(std::chrono::milliseconds(ms)); }

// A time canaryd could have written: 2000-01-01 to 2200-01-01. Beyond it, the
// nanoseconds of a WallTime would overflow (they end in 2262).
bool time_ms(const json& j, int64_t& out) {
  constexpr int64_t kFirst = 946'684'800'000, kLast = 7'258'118'400'000;
  if (!j.is_number_integer()) return false;
  if (j.is_number_unsigned() && j.get<uint64_t>() > static_cast<uint64_t>(kLast)) return false;
  out = j.get<int64_t>();
  return out >= kFirst && out <= kLast;
}

json optional_time(const std::optional<WallTime>& t) { return t ? json(to_ms(*t)) : json(nullptr); }

// Every read checks the type first: a damaged file must not throw halfway
// through an entry, nor restore a value of the wrong kind.
bool read_time(const json& j, const char* key, std::optional<WallTime>& out) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) {
    out.reset();
    return true;
  }
  int64_t ms = 0;
  if (!time_ms(*it, ms)) return false;
  out = from_ms(ms);
  return true;
}

bool finite_number(const json& j) { return j.is_number() && std::isfinite(j.get<double>()); }

bool read_reason(const json& j, Reason& out) {
  if (!j.is_string()) return false;
  auto r = reason_from_name(j.get<std::string>());
  if (!r) return false;
  out = *r;
  return true;
}

json encode_result(const ProbeResult& r) {
  json j;
  j["success"] = r.success;
  j["reason"] = std::string(reason_name(r.reason));
  j["message"] = r.message;
  json phases = json::array();
  for (const auto& [name, seconds] : r.phases) phases.push_back(json::array({name, seconds}));
  j["phases"] = std::move(phases);
  json d = json::object();
  if (r.details.status_code) d["status_code"] = *r.details.status_code;
  if (r.details.cert_expiry_unix) d["cert_expiry_unix"] = *r.details.cert_expiry_unix;
  if (r.details.timeout_phase) d["timeout_phase"] = *r.details.timeout_phase;
  d["fields"] = r.details.fields;
  j["details"] = std::move(d);
  return j;
}

bool decode_result(const json& j, ProbeResult& r) {
  if (!j.is_object()) return false;
  const json& success = j.value("success", json());
  const json& message = j.value("message", json());
  const json& phases = j.value("phases", json());
  const json& d = j.value("details", json());
  if (!success.is_boolean() || !message.is_string() || !phases.is_array() || !d.is_object())
    return false;
  if (!read_reason(j.value("reason", json()), r.reason)) return false;
  r.success = success.get<bool>();
  r.message = message.get<std::string>();
  r.phases.clear();
  for (const auto& p : phases) {
    if (!p.is_array() || p.size() != 2 || !p[0].is_string() || !finite_number(p[1])) return false;
    r.phases.emplace_back(p[0].get<std::string>(), p[1].get<double>());
  }
  r.details = ProbeDetails{};
  if (auto it = d.find("status_code"); it != d.end()) {
    if (!it->is_number_unsigned() || it->get<uint64_t>() > 999) return false;
    r.details.status_code = static_cast<int>(it->get<uint64_t>());
  }
  if (auto it = d.find("cert_expiry_unix"); it != d.end()) {
    if (!finite_number(*it)) return false;
    r.details.cert_expiry_unix = it->get<double>();
  }
  if (auto it = d.find("timeout_phase"); it != d.end()) {
    if (!it->is_string()) return false;
    r.details.timeout_phase = it->get<std::string>();
  }
  if (auto it = d.find("fields"); it != d.end()) {
    if (!it->is_object()) return false;
    r.details.fields = *it;
  }
  return true;
}

}  // namespace

std::string encode_probe_state(const ProbeBook::Entry& e) {
  json j;
  j["version"] = kStateVersion;
  if (e.last) {
    json last = encode_result(*e.last);
    last["time_ms"] = to_ms(e.last_time);
    last["run_id"] = e.last_run_id;
    last["duration_seconds"] = e.last_duration;
    last["attempts"] = e.last_attempts;
    j["last"] = std::move(last);
  } else {
    j["last"] = nullptr;
  }
  json history = json::array();
  for (const auto& p : e.history) {
    history.push_back(json::array({to_ms(p.time), p.success, std::string(reason_name(p.reason)),
                                   p.message, p.duration_seconds}));
  }
  j["history"] = std::move(history);
  j["failing_since_ms"] = optional_time(e.failing_since);
  j["passing_since_ms"] = optional_time(e.passing_since);
  j["last_success_ms"] = optional_time(e.last_success);
  j["consecutive_failures"] = e.consecutive_failures;
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

bool decode_probe_state(const std::string& text, ProbeBook::Entry& e) {
  const json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object() || j.value("version", json()) != kStateVersion) return false;
  // Everything is read into a copy first: a bad field leaves the entry alone.
  std::optional<ProbeResult> last;
  WallTime last_time;
  std::string run_id;
  double duration = 0;
  int attempts = 1;
  const json& lj = j.value("last", json());
  if (!lj.is_null()) {
    ProbeResult r;
    if (!decode_result(lj, r)) return false;
    const json& t = lj.value("time_ms", json());
    const json& id = lj.value("run_id", json());
    const json& dur = lj.value("duration_seconds", json());
    const json& att = lj.value("attempts", json());
    int64_t ms = 0;
    if (!time_ms(t, ms) || !id.is_string() || !finite_number(dur) || !att.is_number_unsigned() ||
        att.get<uint64_t>() < 1 || att.get<uint64_t>() > 1000)
      return false;
    last = std::move(r);
    last_time = from_ms(ms);
    run_id = id.get<std::string>();
    duration = dur.get<double>();
    attempts = static_cast<int>(att.get<uint64_t>());
  }
  std::deque<ProbeBook::Past> history;
  const json& hj = j.value("history", json());
  if (!hj.is_array()) return false;
  for (const auto& p : hj) {
    if (history.size() >= e.history_limit) break;
    Reason reason;
    int64_t ms = 0;
    if (!p.is_array() || p.size() != 5 || !time_ms(p[0], ms) || !p[1].is_boolean() ||
        !read_reason(p[2], reason) || !p[3].is_string() || !finite_number(p[4]))
      return false;
    history.push_back(
        {from_ms(ms), p[1].get<bool>(), reason, p[3].get<std::string>(), p[4].get<double>()});
  }
  std::optional<WallTime> failing, passing, last_success;
  if (!read_time(j, "failing_since_ms", failing) || !read_time(j, "passing_since_ms", passing) ||
      !read_time(j, "last_success_ms", last_success))
    return false;
  const json& consecutive = j.value("consecutive_failures", json());
  if (!consecutive.is_number_unsigned()) return false;

  e.last = std::move(last);
  e.last_time = last_time;
  e.last_run_id = std::move(run_id);
  e.last_duration = duration;
  e.last_attempts = attempts;
  e.history = std::move(history);
  e.failing_since = failing;
  e.passing_since = passing;
  e.last_success = last_success;
  e.consecutive_failures = consecutive.get<uint64_t>();
  return true;
}

std::string fingerprint_hash(const ProbeSpec& spec) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(spec.fingerprint.data(), spec.fingerprint.size(), digest, &len, EVP_sha256(), nullptr);
  static const char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned int i = 0; i < len; ++i) {
    out += kHex[digest[i] >> 4];
    out += kHex[digest[i] & 15];
  }
  return out;
}

}  // namespace canaryd
