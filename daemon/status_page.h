// The status page for people: every probe at a glance at `/` (and `/status`),
// grouped by category with failing groups and probes first, and one probe's
// phases, details and recent results at `/status/probe/<name>`.
//
// It is rendered from the state API's own objects (StateStore::for_each_probe
// and StateStore::probe), so it shows exactly what /api/v1/state shows, with
// secrets already redacted. Plain HTML with inline CSS and SVG: it refreshes
// itself with <meta http-equiv="refresh"> and needs no JavaScript, and its
// Content-Security-Policy forbids scripts and every external asset, so even
// a target's text that escaped the escaping could not run.
//
// Thread-safety: the functions hold no state; they read the StateStore, which
// may be read from any thread (they run on the endpoint server's thread).
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "daemon/http_server.h"
#include "daemon/state_store.h"

namespace canaryd {

// The page's reload period: about the shortest probe interval, so a refresh
// mostly finds news, within 5..30 s.
int status_refresh_seconds(double shortest_interval_seconds);

// The overview page, built like all_text(): each probe's row is rendered as
// its state API object comes (in any order), so ten thousand probes never
// sit in memory as JSON at once.
class StatusPageBuilder {
 public:
  explicit StatusPageBuilder(WallTime now) : now_(now) {}
  void add(const nlohmann::ordered_json& probe);
  // The whole page; `config` is the state API's "config" object.
  std::string finish(const nlohmann::ordered_json& config);

 private:
  struct Row {
    std::string category;
    int rank;        // 0 failing, 1 pending, 2 passing
    int group_rank;  // its category's lowest rank: a group with a failing probe leads
    bool critical;
    std::string name;
    std::string html;
  };
  WallTime now_;
  std::vector<Row> rows_;
  double shortest_interval_ = 0;
};
// One probe's page from its state API object.
std::string render_probe_page(const nlohmann::ordered_json& probe, WallTime now);
// The page for a probe name nobody configured.
std::string render_probe_not_found(const std::string& name);

// The status page's answer to a GET of `path` (already percent-decoded), or
// nullopt when the path is not one of its routes.
std::optional<HttpResponse> status_page_response(const StateStore& state, const std::string& path,
                                                 WallTime now);

}  // namespace canaryd
