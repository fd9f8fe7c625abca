// The status page's rendering: escaping of every text a target supplies, the
// order of groups and probes, the strip and sparkline, the probe page and the
// routes. The state comes from a real ProbeBook and StateStore, as in the
// daemon; the browser test (tests/status_page/) loads the page from one.
#include "daemon/status_page.h"

#include <catch2/catch.hpp>
#include <cmath>
#include <limits>
#include <string>

#include "daemon/state_store.h"
#include "daemon/status_html.h"

using namespace std::chrono_literals;
using canaryd::ProbeResult;
using canaryd::Reason;

namespace {

constexpr const char* kHostile = "<script>alert(1)</script><img src=x onerror=alert(2)>\"'&";

struct Fixture {
  canaryd::ConfigLoad load = canaryd::load_config_text(R"(
global: {defaults: {interval: 12s}}
probes:
  - name: api-ok
    type: http
    category: api
    http: {url: "http://127.0.0.1:1/health"}
  - name: api-down
    type: http
    category: api
    http: {url: "http://127.0.0.1:1/health?x=<b>"}
  - name: db-ok
    type: tcp
    category: db
    critical: true
    tcp: {address: "127.0.0.1:1"}
  - name: web-ok
    type: tcp
    category: web
    interval: 3s
    timeout: 1s
    tcp: {address: "127.0.0.1:1"}
  - name: web-down
    type: tcp
    category: web
    tcp: {address: "127.0.0.1:1"}
  - name: web-down-critical
    type: tcp
    category: web
    critical: true
    tcp: {address: "127.0.0.1:1"}
  - name: web-new
    type: tcp
    category: web
    tcp: {address: "127.0.0.1:1"}
)",
                                                       "t.yaml");
  canaryd::ProbeBook book;
  canaryd::StateStore store;
  canaryd::WallTime t0 = canaryd::WallTime(std::chrono::seconds(1'800'000'000));

  Fixture() {
    INFO(load.errors.str());
    REQUIRE(load.config);
    store.set_books({&book});
    std::vector<const canaryd::ConfiguredProbe*> probes;
    for (const auto& p : load.config->probes) probes.push_back(&p);
    book.install(probes, {}, 5);
  }
  const canaryd::ConfiguredProbe& probe(const std::string& name) {
    for (const auto& p : load.config->probes)
      if (p.spec.name == name) return p;
    FAIL("no probe " << name);
    throw std::logic_error("unreachable");
  }
  void record(const std::string& name, const ProbeResult& r, canaryd::WallTime at,
              double seconds = 0.25) {
    const auto& p = probe(name);
    book.record({p.spec, p.target, r, "run-" + name, seconds, at});
  }
  std::string page(const std::string& path, int* status = nullptr) {
    auto r = canaryd::status_page_response(store, path, t0 + 200s);
    REQUIRE(r);
    if (status) *status = r->status;
    return r->body;
  }
};

ProbeResult hostile_failure() {
  auto r = ProbeResult::failure(Reason::kAssertion,
                                std::string("JSON field status is \"") + kHostile + "\"",
                                {{"connect", 0.002}, {std::string("ph") + kHostile, 0.1}});
  r.details.status_code = 200;
  r.details.set(std::string("k") + kHostile, std::string(kHostile));
  return r;
}

size_t pos(const std::string& page, const std::string& needle) {
  size_t at = page.find(needle);
  INFO(needle);
  REQUIRE(at != std::string::npos);
  return at;
}

}  // namespace

TEST_CASE("html_escape turns every character HTML gives meaning to into an entity") {
  CHECK(canaryd::html_escape(kHostile) ==
        "&lt;script&gt;alert(1)&lt;/script&gt;&lt;img src=x onerror=alert(2)&gt;&quot;&#39;&amp;");
  CHECK(canaryd::html_escape("plain text, ünïcode") == "plain text, ünïcode");
  CHECK(canaryd::html_escape("").empty());
}

TEST_CASE("a link to a probe percent-encodes its name") {
  CHECK(canaryd::probe_href("api-ok_1.x~") == "/status/probe/api-ok_1.x~");
  CHECK(canaryd::percent_encode("a b/<\"%\xff") == "a%20b%2F%3C%22%25%FF");
}

TEST_CASE("sparkline points for no, one, equal, non-finite and spread values") {
  const double inf = std::numeric_limits<double>::infinity();
  const double nan = std::numeric_limits<double>::quiet_NaN();
  CHECK(canaryd::sparkline_points({}, 100, 20, 2).empty());
  CHECK(canaryd::sparkline_points({nan, inf, -inf}, 100, 20, 2).empty());
  CHECK(canaryd::sparkline_points({0.5}, 100, 20, 2) == "2.0,10.0 98.0,10.0");
  CHECK(canaryd::sparkline_points({0.3, 0.3, 0.3}, 100, 20, 2) == "2.0,10.0 50.0,10.0 98.0,10.0");
  // Smallest at the bottom (y = height - pad), largest at the top (y = pad).
  CHECK(canaryd::sparkline_points({1, nan, 3, inf, 2}, 100, 20, 2) ==
        "2.0,18.0 50.0,2.0 98.0,10.0");
  // A span too wide for a double still draws inside the box.
  CHECK(canaryd::sparkline_points({-1e308, 1e308}, 100, 20, 2) == "2.0,10.0 98.0,10.0");
}

TEST_CASE("the refresh period follows the shortest interval within 5 to 30 seconds") {
  CHECK(canaryd::status_refresh_seconds(1) == 5);
  CHECK(canaryd::status_refresh_seconds(12) == 12);
  CHECK(canaryd::status_refresh_seconds(11.2) == 12);
  CHECK(canaryd::status_refresh_seconds(600) == 30);
  CHECK(canaryd::status_refresh_seconds(0) == 30);
  CHECK(canaryd::status_refresh_seconds(std::numeric_limits<double>::quiet_NaN()) == 30);
}

TEST_CASE("the status page lists failing groups and probes first, critical ones leading") {
  Fixture f;
  f.record("api-ok", ProbeResult::ok(), f.t0);
  f.record("api-down", ProbeResult::ok(), f.t0);
  f.record("api-down", ProbeResult::failure(Reason::kHttpStatus, "HTTP status 503"), f.t0 + 8s);
  f.record("db-ok", ProbeResult::ok(), f.t0 + 1s);
  f.record("web-ok", ProbeResult::ok(), f.t0);
  f.record("web-down", ProbeResult::failure(Reason::kConnectRefused, "refused"), f.t0);
  f.record("web-down-critical", ProbeResult::failure(Reason::kConnectRefused, "refused"), f.t0);
  int status = 0;
  for (const char* path : {"/", "/status", "/status/"}) {
    std::string page = f.page(path, &status);
    CHECK(status == 200);
    // Groups with a failing probe before the all-passing "db"; then by name.
    CHECK(pos(page, "data-category=\"api\"") < pos(page, "data-category=\"web\""));
    CHECK(pos(page, "data-category=\"web\"") < pos(page, "data-category=\"db\""));
    // Within a group: failing (critical first), then pending, then passing.
    CHECK(pos(page, "data-probe=\"api-down\"") < pos(page, "data-probe=\"api-ok\""));
    CHECK(pos(page, "data-probe=\"web-down-critical\"") < pos(page, "data-probe=\"web-down\""));
    CHECK(pos(page, "data-probe=\"web-down\"") < pos(page, "data-probe=\"web-new\""));
    CHECK(pos(page, "data-probe=\"web-new\"") < pos(page, "data-probe=\"web-ok\""));
    CHECK(page.find("7 probes: <b class=\"bad\">3 failing</b>, <b class=\"ok\">3 passing</b>, "
                    "<b class=\"pend\">1 pending</b>") != std::string::npos);
    CHECK(page.find("<title>canaryd: 3 failing</title>") != std::string::npos);
    // Status in words as well as colour, and the since-times.
    CHECK(page.find("<span class=\"badge failing\">FAIL</span>") != std::string::npos);
    CHECK(page.find("<span class=\"badge pending\">PENDING</span>") != std::string::npos);
    CHECK(page.find(">failing for 3m12s</time>") != std::string::npos);
    CHECK(page.find(">passing since <span class=\"nw\">2027-01-15 08:00:01 UTC</span></time>") !=
          std::string::npos);
    CHECK(page.find("<span class=\"tag crit\">critical</span>") != std::string::npos);
    CHECK(page.find("<a href=\"/status/probe/api-down\">api-down</a>") != std::string::npos);
    // The shortest interval (web-ok's 3s) within the bounds.
    CHECK(page.find("<meta http-equiv=\"refresh\" content=\"5\">") != std::string::npos);
    // The machine endpoints stay a click away.
    CHECK(page.find("href=\"/metrics\"") != std::string::npos);
    CHECK(page.find("href=\"/api/v1/state\"") != std::string::npos);
  }
}

TEST_CASE("every text a target sends is escaped on both pages") {
  Fixture f;
  for (int i = 0; i < 3; ++i)
    f.record("api-down", hostile_failure(), f.t0 + std::chrono::seconds(i));
  f.store.set_config_status("t.yaml", false, std::string("t.yaml:1: ") + kHostile);
  for (const char* path : {"/", "/status/probe/api-down"}) {
    INFO(path);
    const std::string page = f.page(path);
    CHECK(page.find("<script") == std::string::npos);
    CHECK(page.find("<img") == std::string::npos);
    CHECK(page.find("onerror=alert(2)>") == std::string::npos);
    CHECK(page.find("&lt;script&gt;alert(1)&lt;/script&gt;&lt;img src=x onerror=alert(2)&gt;") !=
          std::string::npos);
    // The target's own URL is escaped too.
    CHECK(page.find("?x=<b>") == std::string::npos);
    CHECK(page.find("?x=&lt;b&gt;") != std::string::npos);
  }
  // The config error banner and the strip's titles (attribute values).
  const std::string overview = f.page("/");
  CHECK(overview.find("t.yaml:1: &lt;script&gt;") != std::string::npos);
  CHECK(overview.find("title=\"2027-01-15T08:00:00.000Z FAIL 250ms assertion: JSON field status "
                      "is &quot;&lt;script&gt;") != std::string::npos);
  // Phase names and detail keys on the probe page.
  const std::string probe = f.page("/status/probe/api-down");
  CHECK(probe.find("<td>ph&lt;script&gt;") != std::string::npos);
  CHECK(probe.find("<dt>k&lt;script&gt;") != std::string::npos);
}

TEST_CASE("a probe's page shows its phases, details and recent messages") {
  Fixture f;
  f.record("api-down", ProbeResult::ok({{"dns", 0.001}, {"connect", 0.002}, {"total", 0.004}}),
           f.t0, 0.004);
  auto fail = ProbeResult::failure(Reason::kHttpStatus, "HTTP status 503 (expected 2xx)",
                                   {{"dns", 0.001}, {"connect", 0.003}, {"total", 0.5}});
  fail.details.status_code = 503;
  f.record("api-down", fail, f.t0 + 10s, 0.5);
  int status = 0;
  const std::string page = f.page("/status/probe/api-down", &status);
  CHECK(status == 200);
  CHECK(page.find("<h1 id=\"probe\">api-down</h1><span class=\"badge failing\">FAIL</span>") !=
        std::string::npos);
  CHECK(page.find("<table id=\"phases\">") != std::string::npos);
  CHECK(page.find("<tr><td>connect</td><td>3ms</td>") != std::string::npos);
  CHECK(page.find("<dt>status_code</dt><dd><code>503</code></dd>") != std::string::npos);
  CHECK(page.find("<td class=\"msg\">HTTP status 503 (expected 2xx)</td>") != std::string::npos);
  CHECK(page.find("<dt>Run ID</dt><dd><code>run-api-down</code></dd>") != std::string::npos);
  CHECK(page.find(">failing for 3m10s</time>") != std::string::npos);
  CHECK(page.find("aria-label=\"last 2 results: 1 passed, 1 failed\"") != std::string::npos);
  // The sparkline, oldest (4ms, at the bottom) to newest (500ms, at the top).
  CHECK(page.find("<polyline points=\"3.0,45.0 357.0,3.0\"") != std::string::npos);
  CHECK(page.find("latency of the last 2 runs: 4ms to 500ms, newest 500ms") != std::string::npos);
}

TEST_CASE("the status routes answer HTML with a strict policy, and an unknown probe 404") {
  Fixture f;
  auto r = canaryd::status_page_response(f.store, "/status/probe/no<such>", f.t0);
  REQUIRE(r);
  CHECK(r->status == 404);
  CHECK(r->body.find("No probe named <code>no&lt;such&gt;</code>") != std::string::npos);
  auto ok = canaryd::status_page_response(f.store, "/", f.t0);
  REQUIRE(ok);
  CHECK(ok->content_type == "text/html; charset=utf-8");
  auto header = [&](const std::string& name) {
    for (const auto& [k, v] : ok->headers)
      if (k == name) return v;
    return std::string();
  };
  CHECK(
      header("Content-Security-Policy").rfind("default-src 'none'; style-src 'unsafe-inline'", 0) ==
      0);
  CHECK(header("X-Content-Type-Options") == "nosniff");
  CHECK_FALSE(canaryd::status_page_response(f.store, "/metrics", f.t0));
  CHECK_FALSE(canaryd::status_page_response(f.store, "/statusx", f.t0));
  CHECK(canaryd::status_page_response(f.store, "/status/probe/web-new", f.t0)->status == 200);
}

TEST_CASE("the status page of no probes says so") {
  canaryd::ProbeBook none;
  canaryd::StateStore store;
  store.set_books({&none});
  auto r = canaryd::status_page_response(store, "/", canaryd::WallTime(std::chrono::seconds(0)));
  REQUIRE(r);
  CHECK(r->body.find("No probes are configured.") != std::string::npos);
  CHECK(r->body.find("<meta http-equiv=\"refresh\" content=\"30\">") != std::string::npos);
}

TEST_CASE("the strip draws the newest results oldest first, as many as asked") {
  nlohmann::ordered_json history = nlohmann::ordered_json::array();
  for (int i = 24; i >= 0; --i)  // newest first, as the state API has it
    history.push_back({{"time", "t" + std::to_string(i)},
                       {"success", i % 5 != 0},
                       {"reason", i % 5 != 0 ? "ok" : "timeout"},
                       {"duration_seconds", 0.001 * i}});
  const std::string strip = canaryd::history_strip(history, 20);
  size_t cells = 0;
  for (size_t at = strip.find("class=\"cell "); at != std::string::npos;
       at = strip.find("class=\"cell ", at + 1))
    ++cells;
  CHECK(cells == 20);
  // t5..t24: t0..t4 are the oldest and left out.
  CHECK(strip.find("title=\"t4 ") == std::string::npos);
  CHECK(strip.find("title=\"t5 FAIL 5ms timeout\"") < strip.find("title=\"t24 PASS 24ms\""));
  CHECK(strip.find("aria-label=\"last 20 results: 16 passed, 4 failed\"") != std::string::npos);
  CHECK(canaryd::history_strip(nlohmann::ordered_json::array(), 20).find("no results yet") !=
        std::string::npos);
  CHECK(canaryd::latency_sparkline(nlohmann::ordered_json::array(), 20, 120, 24).empty());
  CHECK(canaryd::latency_sparkline(history, 20, 120, 24)
            .find("latency of the last 20 runs: 5ms to 24ms, newest 24ms") != std::string::npos);
}
