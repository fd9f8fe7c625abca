#include "daemon/status_page.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <tuple>

#include "daemon/status_html.h"
#include "daemon/table.h"

#ifndef CANARYD_VERSION
#define CANARYD_VERSION "dev"
#endif

namespace canaryd {

namespace {

// Colours by custom properties, so the dark theme only swaps the palette.
// Status is always spelled out too (PASS/FAIL/PENDING, "failing for"), for
// readers who do not see the colours.
constexpr std::string_view kStyle = R"css(
:root{color-scheme:light dark;--bg:#fff;--fg:#1f2328;--muted:#59636e;--line:#d1d9e0;
--card:#f6f8fa;--ok:#1a7f37;--bad:#cf222e;--pend:#9a6700;--link:#0969da;--on-badge:#fff}
@media (prefers-color-scheme:dark){:root{--bg:#0d1117;--fg:#e6edf3;--muted:#9198a1;
--line:#3d444d;--card:#151b23;--ok:#3fb950;--bad:#f85149;--pend:#d29922;--link:#4493f8;
--on-badge:#0d1117}}
*{box-sizing:border-box}
body{margin:0;padding:1rem 1.5rem 2rem;background:var(--bg);color:var(--fg);
font:14px/1.45 system-ui,-apple-system,"Segoe UI","DejaVu Sans",sans-serif}
a{color:var(--link);text-decoration:none}a:hover{text-decoration:underline}
header{display:flex;flex-wrap:wrap;align-items:baseline;gap:.4rem 1.2rem;
border-bottom:1px solid var(--line);padding-bottom:.6rem;margin-bottom:1rem}
h1{font-size:1.4rem;margin:0}h2{font-size:1.1rem;margin:1.4rem 0 .4rem}
.muted,.sub{color:var(--muted)}.sub{font-size:.85em;max-width:32rem;overflow:hidden;
text-overflow:ellipsis;white-space:nowrap}
nav a{margin-right:.8rem}
.summary b.bad{color:var(--bad)}.summary b.ok{color:var(--ok)}.summary b.pend{color:var(--pend)}
.banner{border:1px solid var(--bad);border-left-width:6px;padding:.5rem .8rem;margin:0 0 1rem;
background:var(--card);white-space:pre-wrap;overflow-wrap:anywhere}
table{border-collapse:collapse;width:100%}
table.probes{table-layout:fixed}
table.probes th:nth-child(1){width:20%}table.probes th:nth-child(2){width:5.5em}
table.probes th:nth-child(4){width:5em}table.probes th:nth-child(5){width:16.5em}
table.probes th:nth-child(6){width:160px}table.probes th:nth-child(7){width:140px}
#phases,#history{width:auto;min-width:32rem}
th,td{text-align:left;padding:.35rem .6rem;border-bottom:1px solid var(--line);vertical-align:top}
th{font-weight:600;color:var(--muted);font-size:.85em}
tr.failing td:first-child{box-shadow:inset 4px 0 var(--bad)}
tr.pending td:first-child{box-shadow:inset 4px 0 var(--pend)}
tr.passing td:first-child{box-shadow:inset 4px 0 var(--ok)}
.badge{display:inline-block;min-width:4.2em;text-align:center;padding:0 .4em;border-radius:3px;
font-weight:700;font-size:.8em;color:var(--on-badge)}
.badge.failing{background:var(--bad)}.badge.passing{background:var(--ok)}
.badge.pending{background:var(--pend)}
.tag{font-size:.75em;border:1px solid var(--line);border-radius:3px;padding:0 .3em;
margin-left:.3em;color:var(--muted)}.tag.crit{border-color:var(--bad);color:var(--bad)}
.msg{overflow-wrap:anywhere;max-width:36rem}.nw{white-space:nowrap}
.strip{display:inline-flex;flex-wrap:wrap;gap:1px;max-width:100%}
.cell{display:inline-block;width:6px;height:18px;border-radius:1px}
.cell.ok{background:var(--ok)}.cell.bad{background:var(--bad)}
.spark{color:var(--link);vertical-align:middle}
dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:.2rem 1rem;margin:0}
dl.facts dt{color:var(--muted)}dl.facts dd{margin:0;overflow-wrap:anywhere}
.bar{display:inline-block;height:.7em;background:var(--link);border-radius:2px;min-width:1px}
code{font-family:ui-monospace,"DejaVu Sans Mono",monospace;font-size:.92em}
footer{margin-top:2rem;color:var(--muted);font-size:.85em}
)css";

// global.state_history may keep up to 1,000 results: the overview's strip
// shows as many as fit its column, a probe's page up to 200 (wrapped).
// 20 cells of 6px and 1px gaps fill the strip column (160px less padding).
constexpr size_t kOverviewResults = 20;
constexpr size_t kProbePageResults = 200;

// Scripts, frames, forms and every fetched asset are refused: the page is
// its own HTML, inline CSS and inline SVG.
constexpr const char* kContentSecurityPolicy =
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'";

std::string head(const std::string& title, int refresh_seconds) {
  return fmt::format(
      "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
      "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
      "<meta http-equiv=\"refresh\" content=\"{}\"><title>{}</title><style>{}</style></head>\n"
      "<body>\n",
      refresh_seconds, html_escape(title), kStyle);
}

std::string nav() {
  return "<nav><a href=\"/\">status</a><a href=\"/api/v1/state\">/api/v1/state</a>"
         "<a href=\"/metrics\">/metrics</a><a href=\"/-/healthy\">/-/healthy</a>"
         "<a href=\"/-/ready\">/-/ready</a></nav>";
}

std::string footer(WallTime now, int refresh_seconds) {
  return fmt::format(
      "<footer>canaryd {} &middot; generated {} &middot; refreshes every {} s</footer>\n"
      "</body></html>\n",
      html_escape(CANARYD_VERSION), html_escape(format_time(now)), refresh_seconds);
}

// "2026-11-21T08:30:00.123Z" as "2026-11-21 08:30:00 UTC"; "-" for none.
std::string human_time(const std::string& rfc3339) {
  if (rfc3339.empty()) return "-";
  if (rfc3339.size() < 19) return rfc3339;
  return rfc3339.substr(0, 10) + " " + rfc3339.substr(11, 8) + " UTC";
}

std::string status_of(const nlohmann::ordered_json& p) {
  std::string s = string_member(p, "status");
  return s == "passing" || s == "failing" ? s : "pending";
}

std::string badge(const std::string& status) {
  const char* word = status == "passing" ? "PASS" : status == "failing" ? "FAIL" : "PENDING";
  return fmt::format("<span class=\"badge {}\">{}</span>", status, word);
}

// "failing for 3m12s" or "passing since 2026-12-07 14:02:11 UTC", with the
// other half as a tooltip.
std::string since_text(const nlohmann::ordered_json& p) {
  if (const auto& f = member(p, "failing_since"); f.is_string()) {
    return fmt::format("<time datetime=\"{0}\" title=\"since {1}\">failing for {2}</time>",
                       html_escape(f.get<std::string>()),
                       html_escape(human_time(f.get<std::string>())),
                       html_escape(format_seconds(number_member(p, "failing_for_seconds"))));
  }
  if (const auto& s = member(p, "passing_since"); s.is_string()) {
    return fmt::format(
        "<time datetime=\"{0}\" title=\"for {2}\">passing since <span "
        "class=\"nw\">{1}</span></time>",
        html_escape(s.get<std::string>()), html_escape(human_time(s.get<std::string>())),
        html_escape(format_seconds(number_member(p, "passing_for_seconds"))));
  }
  return "not run yet";
}

std::string latency_text(const nlohmann::ordered_json& last) {
  return html_escape(format_seconds(number_member(last, "duration_seconds")));
}

std::string critical_tag(const nlohmann::ordered_json& p) {
  return member(p, "critical") == true ? "<span class=\"tag crit\">critical</span>" : "";
}

HttpResponse html_response(int status, std::string body) {
  HttpResponse r;
  r.status = status;
  r.content_type = "text/html; charset=utf-8";
  r.headers.emplace_back("Content-Security-Policy", kContentSecurityPolicy);
  r.headers.emplace_back("X-Content-Type-Options", "nosniff");
  r.headers.emplace_back("Referrer-Policy", "no-referrer");
  // A page of the state as it was: a back button must not show old news as now.
  r.headers.emplace_back("Cache-Control", "no-store");
  r.body = std::move(body);
  return r;
}

}  // namespace

int status_refresh_seconds(double shortest_interval_seconds) {
  if (!std::isfinite(shortest_interval_seconds) || shortest_interval_seconds <= 0) return 30;
  return static_cast<int>(std::clamp(std::ceil(shortest_interval_seconds), 5.0, 30.0));
}

void StatusPageBuilder::add(const nlohmann::ordered_json& p) {
  const std::string status = status_of(p);
  const std::string name = string_member(p, "name");
  const double interval = number_member(p, "interval_seconds");
  if (std::isfinite(interval) && interval > 0 &&
      (shortest_interval_ == 0 || interval < shortest_interval_))
    shortest_interval_ = interval;
  const auto& last = member(p, "last");
  const auto& history = member(p, "history");
  std::string reason = "&ndash;", message;
  if (last.is_object()) {
    reason = html_escape(string_member(last, "reason"));
    if (member(last, "success") != true)
      message = "<div class=\"msg\">" + html_escape(string_member(last, "message")) + "</div>";
  }
  std::string sub = string_member(p, "type");
  if (const std::string target = string_member(p, "target"); !target.empty()) sub += " · " + target;
  std::string html = fmt::format(
      "<tr class=\"probe {0}\" data-probe=\"{1}\" data-status=\"{0}\">"
      "<td><a href=\"{2}\">{1}</a>{3}<div class=\"sub\" title=\"{4}\">{4}</div></td>"
      "<td>{5}</td><td>{6}{7}</td><td>{8}</td><td>{9}</td><td>{10}</td><td>{11}</td></tr>\n",
      status, html_escape(name), html_escape(probe_href(name)), critical_tag(p), html_escape(sub),
      badge(status), reason, message, last.is_object() ? latency_text(last) : "&ndash;",
      since_text(p), history_strip(history, kOverviewResults),
      latency_sparkline(history, kOverviewResults, 120, 24));
  const int rank = status == "failing" ? 0 : status == "pending" ? 1 : 2;
  rows_.push_back({string_member(p, "category"), rank, rank, member(p, "critical") == true, name,
                   std::move(html)});
}

std::string StatusPageBuilder::finish(const nlohmann::ordered_json& config) {
  // A group ranks as its worst probe; within it, failing critical probes lead.
  std::map<std::string, int> group_rank;
  size_t failing = 0, passing = 0, pending = 0;
  for (const auto& r : rows_) {
    auto [it, fresh] = group_rank.emplace(r.category, r.rank);
    if (!fresh) it->second = std::min(it->second, r.rank);
    ++(r.rank == 0 ? failing : r.rank == 1 ? pending : passing);
  }
  for (auto& r : rows_) r.group_rank = group_rank[r.category];
  std::sort(rows_.begin(), rows_.end(), [](const Row& a, const Row& b) {
    // !critical: a critical probe sorts before the others of its rank.
    return std::tie(a.group_rank, a.category, a.rank, b.critical, a.name) <
           std::tie(b.group_rank, b.category, b.rank, a.critical, b.name);
  });
  const int refresh = status_refresh_seconds(shortest_interval_);
  const std::string title = failing > 0     ? fmt::format("canaryd: {} failing", failing)
                            : rows_.empty() ? "canaryd: no probes"
                                            : "canaryd: all passing";
  std::string out = head(title, refresh);
  out += fmt::format(
      "<header><h1>canaryd</h1><p class=\"summary\" id=\"summary\">{} probes: <b "
      "class=\"bad\">{} failing</b>, <b class=\"ok\">{} passing</b>, <b class=\"pend\">{} "
      "pending</b></p>{}</header>\n",
      rows_.size(), failing, passing, pending, nav());
  if (member(config, "last_reload_successful") == false) {
    out += fmt::format(
        "<div class=\"banner\" role=\"alert\"><b>The last config reload of {} failed; the "
        "previous config is running.</b>\n{}</div>\n",
        html_escape(string_member(config, "file")),
        html_escape(string_member(config, "last_reload_error")));
  }
  out += "<main>\n";
  if (rows_.empty()) out += "<p>No probes are configured.</p>\n";
  for (size_t i = 0; i < rows_.size();) {
    size_t end = i;
    size_t group_failing = 0;
    while (end < rows_.size() && rows_[end].category == rows_[i].category) {
      group_failing += rows_[end].rank == 0;
      ++end;
    }
    const std::string& category = rows_[i].category;
    out += fmt::format(
        "<section class=\"group\" data-category=\"{0}\"><h2>{1} <span class=\"muted\">{2} of {3} "
        "failing</span></h2>\n<table "
        "class=\"probes\"><thead><tr><th>Probe</th><th>Status</th><th>Reason</th>"
        "<th>Latency</th><th>Since</th><th>Recent results</th><th>Latency trend</th></tr>"
        "</thead><tbody>\n",
        html_escape(category), category.empty() ? "(no category)" : html_escape(category),
        group_failing, end - i);
    for (; i < end; ++i) out += rows_[i].html;
    out += "</tbody></table></section>\n";
  }
  out += "</main>\n" + footer(now_, refresh);
  return out;
}

std::string render_probe_page(const nlohmann::ordered_json& p, WallTime now) {
  const std::string name = string_member(p, "name");
  const std::string status = status_of(p);
  const int refresh = status_refresh_seconds(number_member(p, "interval_seconds"));
  std::string out = head(fmt::format("{} {}: canaryd", name, status), refresh);
  out += fmt::format("<header><h1 id=\"probe\">{}</h1>{}{}{}</header>\n<main>\n", html_escape(name),
                     badge(status), critical_tag(p), nav());
  auto fact = [](std::string_view term, const std::string& html) {
    return fmt::format("<dt>{}</dt><dd>{}</dd>", term, html);
  };
  auto text = [](const nlohmann::ordered_json& j, const char* key) {
    const auto& v = member(j, key);
    return v.is_null() ? std::string("&ndash;") : html_escape(value_text(v));
  };
  auto seconds = [](double s) { return html_escape(format_seconds(s)); };
  std::string labels;
  for (const auto& [k, v] : member(p, "labels").items())
    labels += fmt::format("<code>{}={}</code> ", html_escape(k), html_escape(value_text(v)));
  out += "<dl class=\"facts\">";
  out += fact("Status", since_text(p));
  out += fact("Category", text(p, "category"));
  out += fact("Critical", member(p, "critical") == true ? "yes" : "no");
  out += fact("Type", text(p, "type"));
  out += fact("Target", "<code>" + text(p, "target") + "</code>");
  out += fact("Interval / timeout", seconds(number_member(p, "interval_seconds")) + " / " +
                                        seconds(number_member(p, "timeout_seconds")));
  if (!labels.empty()) out += fact("Labels", labels);
  out += fact("Last success", html_escape(human_time(string_member(p, "last_success"))));
  out += fact("Consecutive failures", text(p, "consecutive_failures"));
  out += fact("Runs / failures", text(p, "runs_total") + " / " + text(p, "failures_total"));
  out += "</dl>\n";

  const auto& last = member(p, "last");
  out += "<h2>Last result</h2>\n";
  if (!last.is_object()) {
    out += "<p>Not run yet.</p>\n";
  } else {
    out += "<dl class=\"facts\" id=\"last\">";
    out += fact("Time", html_escape(human_time(string_member(last, "time"))));
    std::string verdict = member(last, "success") == true ? "PASS" : "FAIL";
    if (member(last, "retried") == true)
      verdict += " on attempt " + text(last, "attempts") + " (retried)";
    out += fact("Result", verdict);
    out += fact("Reason", text(last, "reason"));
    if (!string_member(last, "message").empty())
      out += fact("Message", "<span class=\"msg\">" + text(last, "message") + "</span>");
    out += fact("Latency", latency_text(last));
    // The run id is the trace id of the run's requests when it is one: the
    // link from a failed run to what the platform traced of it.
    if (member(last, "trace_id").is_string()) {
      out += fact("Trace ID", "<code>" + text(last, "trace_id") + "</code>");
    } else {
      out += fact("Run ID", "<code>" + text(last, "run_id") + "</code>");
    }
    out += "</dl>\n";

    const auto& phases = member(last, "phases");
    out += "<h2>Phases</h2>\n";
    if (!phases.is_object() || phases.empty()) {
      out += "<p class=\"muted\">This run measured no phases.</p>\n";
    } else {
      double longest = 0;
      for (const auto& [k, v] : phases.items())
        if (v.is_number() && std::isfinite(v.get<double>()))
          longest = std::max(longest, v.get<double>());
      out +=
          "<table id=\"phases\"><thead><tr><th>Phase</th><th>Time</th><th></th></tr></thead>"
          "<tbody>\n";
      for (const auto& [k, v] : phases.items()) {
        const double s = v.is_number() ? v.get<double>() : NAN;
        const double pct = longest > 0 && std::isfinite(s) ? std::clamp(s / longest, 0.0, 1.0) : 0;
        out += fmt::format(
            "<tr><td>{}</td><td>{}</td><td><span class=\"bar\" style=\"width:{:.1f}px\">"
            "</span></td></tr>\n",
            html_escape(k), seconds(s), pct * 240);
      }
      out += "</tbody></table>\n";
    }
    const auto& details = member(last, "details");
    out += "<h2>Details</h2>\n";
    if (!details.is_object() || details.empty()) {
      out += "<p class=\"muted\">No details.</p>\n";
    } else {
      out += "<dl class=\"facts\" id=\"details\">";
      for (const auto& [k, v] : details.items())
        out += fmt::format("<dt>{}</dt><dd><code>{}</code></dd>", html_escape(k),
                           html_escape(value_text(v)));
      out += "</dl>\n";
    }
  }

  const auto& history = member(p, "history");
  out += fmt::format("<h2>Recent results</h2>\n<p>{} {}</p>\n",
                     history_strip(history, kProbePageResults),
                     latency_sparkline(history, kProbePageResults, 360, 48));
  if (history.is_array() && !history.empty()) {
    out +=
        "<table id=\"history\"><thead><tr><th>Time</th><th>Result</th><th>Reason</th>"
        "<th>Latency</th><th>Message</th></tr></thead><tbody>\n";
    for (const auto& h : history) {
      const bool ok = member(h, "success") == true;
      out += fmt::format(
          "<tr class=\"{}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"msg\">{}</td>"
          "</tr>\n",
          ok ? "passing" : "failing", html_escape(human_time(string_member(h, "time"))),
          badge(ok ? "passing" : "failing"), html_escape(string_member(h, "reason")),
          seconds(number_member(h, "duration_seconds")), html_escape(string_member(h, "message")));
    }
    out += "</tbody></table>\n";
  }
  out += "</main>\n" + footer(now, refresh);
  return out;
}

std::string render_probe_not_found(const std::string& name) {
  std::string out = head("no such probe: canaryd", 30);
  out += fmt::format(
      "<header><h1>No probe named <code>{}</code></h1>{}</header>\n<main><p>canaryd runs no "
      "probe of that name (any more). <a href=\"/\">All probes</a>.</p></main>\n</body></html>\n",
      html_escape(name), nav());
  return out;
}

std::optional<HttpResponse> status_page_response(const StateStore& state, const std::string& path,
                                                 WallTime now) {
  if (path == "/" || path == "/status" || path == "/status/") {
    StatusPageBuilder page(now);
    state.for_each_probe(now, [&](const nlohmann::ordered_json& p) { page.add(p); });
    return html_response(200, page.finish(state.config_json()));
  }
  constexpr std::string_view kProbePrefix = "/status/probe/";
  if (path.rfind(kProbePrefix, 0) != 0) return std::nullopt;
  const std::string name = path.substr(kProbePrefix.size());
  if (auto p = state.probe(name, now)) return html_response(200, render_probe_page(*p, now));
  return html_response(404, render_probe_not_found(name));
}

}  // namespace canaryd
