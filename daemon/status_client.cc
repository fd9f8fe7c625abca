#include "daemon/status_client.h"

#include <curl/curl.h>
#include <fmt/format.h>

#include <cstdlib>
#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>

#include "base/guard.h"
#include "base/json_path.h"
#include "base/secrets.h"
#include "daemon/table.h"

namespace canaryd {

namespace {

size_t append(char* data, size_t size, size_t n, void* out) {
  auto* s = static_cast<std::string*>(out);
  if (s->size() + size * n > 64 * 1024 * 1024) return 0;
  // 0 aborts the transfer if the append fails.
  return guarded("the status request", [&] { s->append(data, size * n); }) ? size * n : 0;
}

// A state document from another version (or a broken proxy) may lack any key
// or hold another type there: every read goes through these, which never
// throw, and an absent value reads as null.
const nlohmann::json& member(const nlohmann::json& j, const char* key) {
  return json_member(j, key);
}

// A value for the table: "-" when absent, and through target_text() since it
// is another process's text on its way to a terminal.
std::string cell(const nlohmann::json& j, const char* key) {
  const auto& v = member(j, key);
  if (v.is_null()) return "-";
  return target_text(v.is_string() ? v.get_ref<const std::string&>() : v.dump(), 200);
}

std::optional<double> number(const nlohmann::json& j, const char* key) {
  const auto& v = member(j, key);
  if (!v.is_number()) return std::nullopt;
  return v.get<double>();
}

}  // namespace

int run_status(const std::string& base_url, bool json, const StatusClientOptions& options) {
  std::string url = base_url;
  while (!url.empty() && url.back() == '/') url.pop_back();
  url += "/api/v1/state";
  curl_global_init(CURL_GLOBAL_DEFAULT);
  CURL* c = curl_easy_init();
  std::string body;
  char err[CURL_ERROR_SIZE] = {};
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, &append);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &body);
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, err);
  curl_easy_setopt(c, CURLOPT_TIMEOUT, 10L);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  if (!options.ca_file.empty()) curl_easy_setopt(c, CURLOPT_CAINFO, options.ca_file.c_str());
  if (!options.cert_file.empty()) curl_easy_setopt(c, CURLOPT_SSLCERT, options.cert_file.c_str());
  if (!options.key_file.empty()) curl_easy_setopt(c, CURLOPT_SSLKEY, options.key_file.c_str());
  std::string password;
  if (!options.user.empty()) {
    const char* env = std::getenv("CANARYD_PASSWORD");
    password = env != nullptr ? env : "";
    curl_easy_setopt(c, CURLOPT_HTTPAUTH, CURLAUTH_BASIC);
    curl_easy_setopt(c, CURLOPT_USERNAME, options.user.c_str());
    curl_easy_setopt(c, CURLOPT_PASSWORD, password.c_str());
  }
  CURLcode rc = curl_easy_perform(c);
  long status = 0;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
  curl_easy_cleanup(c);
  if (rc != CURLE_OK) {
    std::cerr << fmt::format("canaryd status: cannot reach {}: {}\n", url,
                             err[0] ? err : curl_easy_strerror(rc));
    return 2;
  }
  // Whatever answers at --url is parsed with the depth bound: the document is
  // printed (and so recursed over) below.
  auto parsed = parse_target_json(body);
  nlohmann::json& state = parsed.value;
  if (status != 200 || !parsed.ok() || !member(state, "probes").is_array()) {
    std::cerr << fmt::format("canaryd status: {} answered HTTP {} without a state document\n", url,
                             status);
    return 2;
  }
  bool any_failing = false;
  size_t passing = 0, failing = 0, pending = 0;
  std::vector<std::vector<std::string>> rows;
  for (const auto& p : state["probes"]) {
    std::string st = cell(p, "status");
    const bool is_failing = st == "failing";
    any_failing |= is_failing;
    ++(is_failing ? failing : st == "passing" ? passing : pending);
    std::string reason = "-", latency = "-", message = "", trace = "-";
    if (const auto& last = member(p, "last"); last.is_object()) {
      reason = cell(last, "reason");
      if (auto d = number(last, "duration_seconds")) latency = format_seconds(*d);
      if (member(last, "success") == false || (is_failing && member(last, "success").is_null())) {
        message = one_line(cell(last, "message"), 80);
        // Where to look in the platform's traces: only a failure needs it.
        if (member(last, "trace_id").is_string()) trace = one_line(cell(last, "trace_id"), 32);
      }
    }
    std::string since = "-";
    if (auto f = number(p, "failing_for_seconds")) {
      since = format_seconds(*f);
    } else if (auto f = number(p, "passing_for_seconds")) {
      since = format_seconds(*f);
    }
    std::string upper = st == "passing" ? "PASS" : is_failing ? "FAIL" : "PENDING";
    rows.push_back(
        {cell(p, "name"), cell(p, "type"), upper, reason, latency, since, trace, message});
  }
  if (json) {
    std::cout << state.dump(2) << "\n";
  } else {
    std::cout << render_table(
        {"PROBE", "TYPE", "STATUS", "REASON", "LATENCY", "FOR", "TRACE ID", "MESSAGE"}, rows);
    // The document's own summary when it has one; otherwise what the rows say.
    const auto& s = member(state, "summary");
    auto count = [&](const char* key, size_t counted) {
      return s.is_object() ? cell(s, key) : std::to_string(counted);
    };
    std::cout << fmt::format("{} probes: {} passing, {} failing, {} pending\n",
                             count("probes", rows.size()), count("passing", passing),
                             count("failing", failing), count("pending", pending));
    if (member(member(state, "config"), "last_reload_successful") == false)
      std::cout << "warning: the last config reload failed; the previous config is running\n";
  }
  return any_failing ? 1 : 0;
}

}  // namespace canaryd
