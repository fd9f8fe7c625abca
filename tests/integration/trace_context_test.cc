// W3C trace context: every request a run makes carries a traceparent whose
// trace id is the run id that `once --json`, the state API, `canaryd status`,
// the status page and the failure log line show. Checked on the fake
// platform's side (GET /_trace_stats), for the HTTP, WebSocket and agent
// probes.
#include <fmt/format.h>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <string>
#include <vector>

#include "tests/support/agent_fixture.h"
#include "tests/support/harness.h"

using namespace canaryd::test;
using nlohmann::json;

namespace {

AgentPlatform& platform() {
  static AgentPlatform p;
  return p;
}

struct TraceParent {
  std::string trace_id, span_id, flags;
};

// The traceparents the fixture received for trace `trace_id`, each checked
// against version 00's format as it is parsed: any that is not one fails
// the test (a duplicated header arrives as one invalid value).
std::vector<std::pair<std::string, TraceParent>> received(const std::string& trace_id) {
  auto r = http_get(platform().fp.url("/_trace_stats?trace_id=" + trace_id));
  INFO(r.error << r.body);
  REQUIRE(r.status == 200);
  json j = json::parse(r.body, nullptr, false);
  REQUIRE(j.is_object());
  static const std::regex kFormat("00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})");
  std::vector<std::pair<std::string, TraceParent>> out;
  for (const auto& e : j["recent"]) {
    const std::string value = e["traceparent"];
    INFO(value);
    std::smatch m;
    REQUIRE(std::regex_match(value, m, kFormat));
    CHECK(m[1] != std::string(32, '0'));
    CHECK(m[2] != std::string(16, '0'));
    out.push_back({e["path"].get<std::string>(), TraceParent{m[1], m[2], m[3]}});
  }
  return out;
}

bool is_trace_id(const json& v) {
  static const std::regex kId("[0-9a-f]{32}");
  return v.is_string() && std::regex_match(v.get<std::string>(), kId) &&
         v.get<std::string>() != std::string(32, '0');
}

std::string http_probe(const std::string& name, const std::string& url,
                       const std::string& extra = "") {
  return fmt::format("  - name: {}\n    type: http\n    timeout: 3s\n    http: {{url: \"{}\"{}}}\n",
                     name, url, extra);
}

// The trace id of probe `name` in `once --json` output: the run id, also
// shown as trace_id.
std::string once_trace_id(const json& out, const std::string& name) {
  json r = result_of(out, name);
  INFO(r.dump());
  CHECK(is_trace_id(r["trace_id"]));
  CHECK(r["trace_id"] == r["run_id"]);
  return r["trace_id"].is_string() ? r["trace_id"].get<std::string>() : "";
}

}  // namespace

TEST_CASE("trace: HTTP requests carry the run's traceparent, sampled per config", "[trace][http]") {
  auto& p = platform();
  const std::string theirs = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
  for (bool sampled : {true, false}) {
    INFO("sampled " << sampled);
    std::string config =
        fmt::format("global:\n  tracing: {{sampled: {}}}\nprobes:\n", sampled) +
        http_probe("plain", p.fp.url("/health")) +
        http_probe("failing", p.fp.url("/health?mode=error")) +
        // A configured traceparent gives way to the run's own.
        http_probe("theirs", p.fp.url("/health"), ", headers: {TraceParent: \"" + theirs + "\"}");
    int exit_code = 0;
    json out = once_json(config, &exit_code);
    CHECK(exit_code == 1);
    std::set<std::string> ids;
    for (const char* name : {"plain", "failing", "theirs"}) {
      INFO(name);
      const std::string id = once_trace_id(out, name);
      ids.insert(id);
      auto got = received(id);
      REQUIRE(got.size() == 1);
      CHECK(got[0].first == "/health");
      CHECK(got[0].second.trace_id == id);
      CHECK(got[0].second.flags == (sampled ? "01" : "00"));
    }
    CHECK(ids.size() == 3);  // a trace per run
    CHECK(received("0af7651916cd43dd8448eb211c80319c").empty());
  }
}

TEST_CASE("trace: each WebSocket upgrade of a run is a span of the run's trace",
          "[trace][websocket]") {
  auto& p = platform();
  const std::string config =
      "probes:\n  - name: ws\n    type: websocket\n    timeout: 3s\n"
      "    websocket: {url: \"" +
      p.ws("subprotocol=first") + "\", subprotocols: [chat], connections: 3}\n";
  int exit_code = 0;
  json out = once_json(config, &exit_code);
  CHECK(exit_code == 0);
  const std::string id = once_trace_id(out, "ws");
  auto got = received(id);
  REQUIRE(got.size() == 3);
  std::set<std::string> spans;
  for (const auto& [path, tp] : got) {
    CHECK(path == "/ws");
    CHECK(tp.flags == "01");
    spans.insert(tp.span_id);
  }
  CHECK(spans.size() == 3);
}

TEST_CASE("trace: the agent's token request and its upgrade share the run's trace",
          "[trace][agent]") {
  auto& p = platform();
  const std::string config =
      "global:\n  tracing: {sampled: false}\nprobes:\n"
      "  - name: agent\n    type: agent_pipeline\n    timeout: 5s\n    agent_pipeline:\n"
      "      websocket: {url: \"" +
      p.ws("agent=happy&event_delay_ms=20&require_token=1") +
      "\", subprotocols: [jwt-auth, \"jwt.{{token}}\"]}\n"
      "      " +
      agent_token_step(p.fp.url("/auth/token"), "", "TRACE_BYPASS_KEY") +
      "\n"
      "      send: {json: {type: user_message, payload: {content: ping, thread_id: "
      "\"{{run_id}}\"}}}\n"
      "      events: [{type: agent_started}, {type: agent_completed}]\n";
  int exit_code = 0;
  json out = once_json(config, &exit_code, {"TRACE_BYPASS_KEY=" + p.bypass_key});
  CHECK(exit_code == 0);
  // {{run_id}}, which the platform correlates the conversation by, is the trace id.
  const std::string id = once_trace_id(out, "agent");
  auto got = received(id);
  REQUIRE(got.size() == 2);
  CHECK(got[0].first == "/auth/token");
  CHECK(got[1].first == "/ws");
  CHECK(got[0].second.span_id != got[1].second.span_id);
  for (const auto& [path, tp] : got) CHECK(tp.flags == "00");
}

TEST_CASE("trace: the SSE transport's token request and its POST share the run's trace",
          "[trace][agent][sse]") {
  auto& p = platform();
  const std::string config =
      "probes:\n  - name: sse\n    type: agent_pipeline\n    timeout: 5s\n    agent_pipeline:\n"
      "      transport: sse\n"
      "      sse: {url: \"" +
      p.fp.url("/sse?agent=happy&event_delay_ms=20&require_token=1") +
      "\", end_event: done, headers: {Authorization: \"Bearer {{token}}\", "
      "traceparent: \"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\"}}\n"
      "      " +
      agent_token_step(p.fp.url("/auth/token"), "", "TRACE_BYPASS_KEY") +
      "\n"
      "      send: {json: {type: user_message, payload: {content: ping, thread_id: "
      "\"{{run_id}}\"}}}\n"
      "      events: [{type: agent_started}, {type: agent_completed}]\n";
  int exit_code = 0;
  json out = once_json(config, &exit_code, {"TRACE_BYPASS_KEY=" + p.bypass_key});
  CHECK(exit_code == 0);
  const std::string id = once_trace_id(out, "sse");
  auto got = received(id);
  REQUIRE(got.size() == 2);
  CHECK(got[0].first == "/auth/token");
  CHECK(got[1].first == "/sse");  // the configured traceparent gave way
  CHECK(got[0].second.span_id != got[1].second.span_id);
  CHECK(received("0af7651916cd43dd8448eb211c80319c").empty());
}

TEST_CASE("trace: a failing run's trace id in the state API, status, the page and the log",
          "[trace][state][status]") {
  auto& p = platform();
  Daemon d(
      "global:\n  listen: \"{{listen}}\"\n  defaults: {interval: 1s, timeout: 1s}\n"
      "probes:\n  - name: down\n    type: http\n    http: {url: \"" +
      p.fp.url("/health?mode=error") + "\"}\n");
  REQUIRE(wait_until([&] { return has_run(d, "down"); }));
  json last = d.state("down")["last"];
  INFO(last.dump());
  REQUIRE(is_trace_id(last["trace_id"]));
  CHECK(last["trace_id"] == last["run_id"]);
  const std::string id = last["trace_id"];
  auto got = received(id);
  REQUIRE(got.size() == 1);
  CHECK(got[0].second.trace_id == id);

  // The probe runs every second: `canaryd status` and the page show the run
  // of their moment, so each is compared with the state read right after.
  auto shows_current = [&](const std::string& text) {
    auto now = d.state("down")["last"]["trace_id"];
    return now.is_string() && text.find(now.get<std::string>()) != std::string::npos;
  };
  CHECK(wait_until([&] {
    auto status = run_command({canaryd_bin(), "status", "--url", d.base_url()});
    return status.exit_code == 1 && status.out.find("TRACE ID") != std::string::npos &&
           shows_current(status.out);
  }));
  CHECK(wait_until([&] {
    auto page = http_get(d.base_url() + "/status/probe/down");
    return page.status == 200 && page.body.find("Trace ID") != std::string::npos &&
           shows_current(page.body);
  }));
  // The log line that says the probe started failing names its run's trace,
  // one the platform received.
  static const std::regex kLine(
      "probe down is failing: http_status: [^\\n]* \\(trace_id ([0-9a-f]{32})\\)");
  std::smatch m;
  const std::string log = d.process().stderr_text();
  INFO(log);
  REQUIRE(std::regex_search(log, m, kLine));
  CHECK(received(m[1]).size() == 1);
}
