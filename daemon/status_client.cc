#include "daemon/status_client.h"

#include <curl/curl.h>
#include <fmt/format.h>

#include <iostream>
#include <nlohmann/json.hpp>

#include "daemon/table.h"

namespace canaryd {

namespace {

size_t append(char* data, size_t size, size_t n, void* out) {
  auto* s = static_cast<std::string*>(out);
  if (s->size() + size * n > 64 * 1024 * 1024) return 0;
  s->append(data, size * n);
  return size * n;
}

std::string cell(const nlohmann::json& j, const char* key) {
  if (!j.contains(key) || j[key].is_null()) return "-";
  if (j[key].is_string()) return j[key].get<std::string>();
  return j[key].dump();
}

}  // namespace

int run_status(const std::string& base_url, bool json) {
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
  CURLcode rc = curl_easy_perform(c);
  long status = 0;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
  curl_easy_cleanup(c);
  if (rc != CURLE_OK) {
    std::cerr << fmt::format("canaryd status: cannot reach {}: {}\n", url,
                             err[0] ? err : curl_easy_strerror(rc));
    return 2;
  }
  auto state = nlohmann::json::parse(body, nullptr, false);
  if (status != 200 || state.is_discarded() || !state.contains("probes")) {
    std::cerr << fmt::format("canaryd status: {} answered HTTP {} without a state document\n", url,
                             status);
    return 2;
  }
  bool any_failing = false;
  std::vector<std::vector<std::string>> rows;
  for (const auto& p : state["probes"]) {
    std::string st = cell(p, "status");
    any_failing |= st == "failing";
    std::string reason = "-", latency = "-", message = "";
    if (p.contains("last") && p["last"].is_object()) {
      const auto& last = p["last"];
      reason = cell(last, "reason");
      if (last["duration_seconds"].is_number())
        latency = format_seconds(last["duration_seconds"].get<double>());
      if (!last["success"].get<bool>()) message = one_line(cell(last, "message"), 80);
    }
    std::string since = "-";
    if (p["failing_for_seconds"].is_number()) {
      since = format_seconds(p["failing_for_seconds"].get<double>());
    } else if (p["passing_for_seconds"].is_number()) {
      since = format_seconds(p["passing_for_seconds"].get<double>());
    }
    std::string upper = st == "passing" ? "PASS" : st == "failing" ? "FAIL" : "PENDING";
    rows.push_back({cell(p, "name"), cell(p, "type"), upper, reason, latency, since, message});
  }
  if (json) {
    std::cout << state.dump(2) << "\n";
  } else {
    std::cout << render_table({"PROBE", "TYPE", "STATUS", "REASON", "LATENCY", "FOR", "MESSAGE"},
                              rows);
    const auto& s = state["summary"];
    std::cout << fmt::format("{} probes: {} passing, {} failing, {} pending\n", cell(s, "probes"),
                             cell(s, "passing"), cell(s, "failing"), cell(s, "pending"));
    if (state.contains("config") && state["config"].value("last_reload_successful", true) == false)
      std::cout << "warning: the last config reload failed; the previous config is running\n";
  }
  return any_failing ? 1 : 0;
}

}  // namespace canaryd
