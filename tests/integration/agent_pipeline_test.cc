// The agent_pipeline probe against the fake platform's scripted agent sessions
// (GET /ws?agent=MODE) and its token endpoint (/auth/token), read the way a
// deploy pipeline reads it (`canaryd once --json`) and the way an SRE reads it
// (/metrics, /api/v1/state and `canaryd status` of a running daemon).
#include <fmt/format.h>

#include <catch2/catch.hpp>
#include <cctype>
#include <chrono>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "tests/support/agent_fixture.h"
#include "tests/support/harness.h"

using namespace canaryd::test;
using namespace std::chrono_literals;
using nlohmann::json;

namespace {

// The configured events: the golden path, in the order the fixture's happy session sends it.
const std::vector<std::string> kGoldenPath = {"agent_started", "agent_thinking", "tool_executing",
                                              "tool_completed", "agent_completed"};

// Every reason an agent probe can report (config/README.md), each pre-created at 0.
const std::vector<std::string> kAgentReasons = {"timeout",
                                                "dns",
                                                "connect_refused",
                                                "connect",
                                                "tls",
                                                "tls_hostname",
                                                "tls_expired",
                                                "http_status",
                                                "auth",
                                                "ws_upgrade_rejected",
                                                "ws_no_subprotocol",
                                                "ws_wrong_subprotocol",
                                                "ws_abnormal_close",
                                                "protocol",
                                                "missing_event",
                                                "schema"};

// The fixture, shared by the tests of this file, and what it counted of the
// token step.
struct Platform : AgentPlatform {
  json auth_stats(bool reset = false) const {
    auto r = http_get(fp.url(reset ? "/_auth_stats?reset=1" : "/_auth_stats"));
    INFO(r.error << r.body);
    REQUIRE(r.status == 200);
    json j = json::parse(r.body, nullptr, false);
    REQUIRE_FALSE(j.is_discarded());
    return j;
  }
};

Platform& platform() {
  static Platform p;
  return p;
}

struct Agent {
  std::string name{};
  std::string query{};                   // the /ws query (agent=MODE&...), without '?'
  std::vector<std::string> websocket{};  // more keys under websocket: (url is set)
  std::vector<std::string> keys{};       // more keys under agent_pipeline:
  std::string timeout = "5s";
  std::string interval = "10s";
};

// One probe of type agent_pipeline. Without a send: or events: key in
// a.keys, the golden-path message and events above are used.
std::string agent_probe(const Agent& a) {
  const auto& p = platform();
  std::string out = fmt::format(
      "  - name: {}\n    type: agent_pipeline\n    interval: {}\n    timeout: {}\n"
      "    agent_pipeline:\n      websocket:\n        url: \"{}\"\n",
      a.name, a.interval, a.timeout, p.ws(a.query));
  for (const auto& line : a.websocket) out += "        " + line + "\n";
  return out + agent_keys(a.keys);
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

bool offsets_nondecreasing(const json& result) {
  json events = detail(result, "events");
  if (!events.is_array()) return false;
  long last = -1;
  for (const auto& e : events) {
    if (!e.contains("offset_ms") || !e["offset_ms"].is_number()) return false;
    long ms = e["offset_ms"].get<long>();
    if (ms < last) return false;
    last = ms;
  }
  return true;
}

std::vector<std::string> strings(const json& j) {
  std::vector<std::string> out;
  if (j.is_array())
    for (const auto& v : j) out.push_back(v.is_string() ? v.get<std::string>() : v.dump());
  return out;
}

bool has(const std::vector<std::string>& v, const std::string& s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

// metrics.detail full: these tests read the per-phase histograms.
std::string base_config(const std::string& probes) {
  return "global:\n  listen: \"{{listen}}\"\n  labels: {env: test, location: ci}\n"
         "  defaults: {interval: 1s, timeout: 1s}\n  metrics: {detail: full}\nprobes:\n" +
         probes;
}

double value(const std::string& metrics, const std::string& name,
             const std::map<std::string, std::string>& labels) {
  auto v = metric_value(metrics, name, labels);
  return v ? *v : -1;
}

// The token-shaped runs of text: maximal runs of [A-Za-z0-9_-] at least 20
// long with an upper-case letter and a lower-case letter or digit. The fixture's
// tokens are 43 such characters (secrets.token_urlsafe(32)); 20 also catches a
// token cut short, e.g. quoted in a message and truncated. canaryd's own
// output has no such run: metric and label names are lower case, run ids are
// 32 lower-case hex digits (trace ids), redacted values read <redacted>.
std::vector<std::string> token_like_runs(const std::string& text) {
  auto in_run = [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '_' || c == '-';
  };
  std::vector<std::string> out;
  size_t i = 0;
  while (i < text.size()) {
    if (!in_run(text[i])) {
      ++i;
      continue;
    }
    size_t j = i;
    bool upper = false, other = false;
    while (j < text.size() && in_run(text[j])) {
      unsigned char c = static_cast<unsigned char>(text[j]);
      upper = upper || std::isupper(c) != 0;
      other = other || std::islower(c) != 0 || std::isdigit(c) != 0;
      ++j;
    }
    if (j - i >= 20 && upper && other) out.push_back(text.substr(i, j - i));
    i = j;
  }
  return out;
}

// `canaryd run --log-level debug` with a config written to a private temp dir
// ("{{listen}}" becomes 127.0.0.1:<free port>); ready once /-/ready answers.
class DebugDaemon {
 public:
  DebugDaemon(const std::string& config_yaml, std::vector<std::string> env)
      : port_(free_port()),
        config_path_(dir_.write_file("canaryd.yaml", with_listen(config_yaml))),
        process_({canaryd_bin(), "run", "--config", config_path_, "--log-level", "debug"},
                 std::move(env), dir_.path()) {
    bool ready = wait_until(
        [&] { return http_get(base_url() + "/-/ready", 2s).status == 200 || !process_.running(); },
        30s);
    INFO(process_.describe());
    REQUIRE(ready);
    REQUIRE(process_.running());
  }
  std::string base_url() const { return fmt::format("http://127.0.0.1:{}", port_); }
  std::string get(const std::string& path) const {
    auto r = http_get(base_url() + path);
    INFO(path << ": " << r.error << r.body);
    REQUIRE(r.status == 200);
    return r.body;
  }
  const std::string& config_path() const { return config_path_; }
  Process& process() { return process_; }

 private:
  std::string with_listen(std::string yaml) const {
    const std::string key = "{{listen}}";
    for (size_t pos; (pos = yaml.find(key)) != std::string::npos;)
      yaml.replace(pos, key.size(), fmt::format("127.0.0.1:{}", port_));
    return yaml;
  }

  TempDir dir_;
  int port_;
  std::string config_path_;
  Process process_;
};

}  // namespace

TEST_CASE("agent: the golden path and its tolerated variations pass", "[agent]") {
  auto& p = platform();
  const std::string q = "event_delay_ms=50&agent=";
  std::string config =
      "probes:\n" + agent_probe({.name = "happy", .query = q + "happy"}) +
      // Token via the subprotocol (the server selects the plain entry), then via the header.
      agent_probe({.name = "token-subprotocol",
                   .query = q + "happy&require_token=1&subprotocol=first",
                   .websocket = {"subprotocols: [jwt-auth, \"jwt.{{token}}\"]",
                                 "expect_subprotocol: jwt-auth"},
                   .keys = {agent_token_step(p.fp.url("/auth/token"))}}) +
      agent_probe({.name = "token-header",
                   .query = q + "happy&require_token=1",
                   .websocket = {"headers: {Authorization: \"Bearer {{token}}\"}"},
                   .keys = {agent_token_step(p.fp.url("/auth/token"))}}) +
      agent_probe({.name = "heartbeats", .query = q + "heartbeats"}) +
      agent_probe({.name = "repeat-tools", .query = q + "repeat_tools"}) +
      agent_probe({.name = "repeat-tools-listed",
                   .query = q + "repeat_tools",
                   .keys = {"events: [{type: agent_started}, {type: agent_thinking}, "
                            "{type: tool_executing}, {type: tool_completed}, "
                            "{type: tool_executing}, {type: tool_completed}, "
                            "{type: agent_completed}]"}}) +
      agent_probe({.name = "any-order", .query = q + "out_of_order", .keys = {"order: any"}}) +
      agent_probe({.name = "uncorrelated", .query = q + "wrong_correlation"}) +
      agent_probe({.name = "correlated",
                   .query = q + "happy",
                   .keys = {"correlation_field: thread_id", "order: strict"}}) +
      agent_probe({.name = "sessions",
                   .query = q + "happy",
                   .keys = {"sessions: 3", "correlation_field: thread_id"}}) +
      // A text message carrying the run id where the fixture looks for it last.
      agent_probe({.name = "send-text",
                   .query = q + "happy",
                   .keys = {"send: {text: '{\"type\": \"user_message\", \"run_id\": "
                            "\"{{run_id}}\"}'}",
                            "correlation_field: thread_id"}});
  int code = 0;
  json out = once_json(config, &code, p.env());
  INFO(out.dump(2));
  CHECK(code == 0);
  CHECK(out["passed"] == true);
  for (const char* name : {"happy", "token-subprotocol", "token-header", "heartbeats",
                           "repeat-tools", "repeat-tools-listed", "any-order", "uncorrelated",
                           "correlated", "sessions", "send-text"}) {
    INFO(name);
    auto r = result_of(out, name);
    CHECK(r["reason"] == "ok");
    CHECK(r["success"] == true);
  }

  auto happy = result_of(out, "happy");
  CHECK(result_message(happy).rfind("agent_completed at ", 0) == 0);
  for (const char* phase :
       {"connect", "handshake", "first_event", "agent_started", "agent_thinking", "tool_executing",
        "tool_completed", "agent_completed", "close", "total"}) {
    INFO(phase);
    CHECK(happy["phases"].contains(phase));
  }
  CHECK_FALSE(happy["phases"].contains("token"));  // no token step
  // Each event phase is the time from the message to that event: in order, and
  // no earlier than the fixture sent it (events 50 ms apart from 50 ms on).
  double previous = 0;
  for (const auto& type : kGoldenPath) {
    INFO(type);
    double t = happy["phases"].value(type, -1.0);
    CHECK(t >= previous);
    previous = t;
  }
  CHECK(happy["phases"].value("agent_completed", 0.0) >= 0.2);
  CHECK(happy["phases"].value("first_event", -1.0) == happy["phases"].value("agent_started", 0.0));
  CHECK(timeline_types(happy) == kGoldenPath);
  CHECK(offsets_nondecreasing(happy));
  CHECK(detail(happy, "close_code") == 1000);
  CHECK(detail(happy, "missing_events").is_null());
  for (const auto& type : kGoldenPath) {
    INFO(type);
    CHECK(detail(happy, "events_received")[type] == 1);
  }

  for (const char* name : {"token-subprotocol", "token-header"}) {
    INFO(name);
    auto r = result_of(out, name);
    CHECK(r["phases"].contains("token"));
    CHECK(r["phases"].contains("agent_completed"));
  }
  CHECK(detail(result_of(out, "token-subprotocol"), "subprotocol") == "jwt-auth");

  auto heartbeats = result_of(out, "heartbeats");
  json received = detail(heartbeats, "events_received");
  CHECK(received.value("other", 0) > 0);
  for (const auto& type : kGoldenPath) {
    INFO(type);
    CHECK(received[type] == 1);
  }
  CHECK(has(timeline_types(heartbeats), "other"));
  CHECK(offsets_nondecreasing(heartbeats));

  CHECK(detail(result_of(out, "repeat-tools"), "events_received")["tool_executing"] == 2);
  CHECK(detail(result_of(out, "repeat-tools"), "events_received")["tool_completed"] == 2);
  CHECK(detail(result_of(out, "repeat-tools-listed"), "events_received")["tool_completed"] == 2);
  CHECK(timeline_types(result_of(out, "any-order")) ==
        std::vector<std::string>{"agent_started", "tool_executing", "agent_thinking",
                                 "tool_completed", "agent_completed"});

  auto sessions = result_of(out, "sessions");
  CHECK(detail(sessions, "connections_ok") == 3);
  CHECK(detail(sessions, "connections_total") == 3);
  CHECK(detail(sessions, "events_received")["agent_completed"] == 3);
  CHECK(detail(happy, "connections_ok") == 1);
  CHECK(detail(happy, "connections_total") == 1);
}

TEST_CASE("agent: each conversation failure is a distinct reason with its details", "[agent]") {
  const std::string q = "event_delay_ms=50&agent=";
  std::string config =
      "probes:\n" +
      agent_probe({.name = "silent", .query = q + "silent", .keys = {"first_event_timeout: 1s"}}) +
      agent_probe(
          {.name = "idle", .query = q + "no_tool_completed", .keys = {"idle_timeout: 1s"}}) +
      // The probe's own timeout comes first: first_event and idle stay at 35s.
      agent_probe({.name = "overall", .query = q + "no_tool_completed", .timeout = "2s"}) +
      agent_probe({.name = "no-tool-name", .query = q + "no_tool_name"}) +
      agent_probe({.name = "no-results", .query = q + "no_results"}) +
      agent_probe(
          {.name = "out-of-order", .query = q + "out_of_order", .keys = {"order: strict"}}) +
      agent_probe({.name = "non-json", .query = q + "non_json"}) +
      agent_probe(
          {.name = "oversized", .query = q + "oversized", .keys = {"max_frame_bytes: 65536"}}) +
      agent_probe({.name = "close-1011", .query = q + "close_1011_after_thinking"}) +
      agent_probe({.name = "wrong-correlation",
                   .query = q + "wrong_correlation",
                   .keys = {"correlation_field: thread_id"}}) +
      // The server ends the conversation early: cleanly (1000), or by dropping it.
      agent_probe({.name = "closed-early",
                   .query = q + "no_tool_completed&close_after_ms=1000&close_code=1000"}) +
      agent_probe({.name = "dropped", .query = q + "no_tool_completed&drop_after_ms=1000"}) +
      agent_probe({.name = "sessions-failing",
                   .query = q + "close_1011_after_thinking",
                   .keys = {"sessions: 3"}}) +
      // Two tool calls expected, one made: agent_completed comes before the second.
      agent_probe({.name = "one-tool-call",
                   .query = q + "happy",
                   .keys = {"events: [{type: agent_started}, {type: agent_thinking}, "
                            "{type: tool_executing}, {type: tool_completed}, "
                            "{type: tool_executing}, {type: tool_completed}, "
                            "{type: agent_completed}]"}});
  int code = 0;
  json out = once_json(config, &code);
  INFO(out.dump(2));
  CHECK(code == 1);
  CHECK(out["passed"] == false);
  auto reason = [&](const std::string& name) { return result_of(out, name)["reason"]; };

  auto silent = result_of(out, "silent");
  CHECK(silent["reason"] == "timeout");
  CHECK(detail(silent, "timeout_phase") == "first_event");
  CHECK(detail(silent, "awaited_event") == "agent_started");
  {
    auto missing = strings(detail(silent, "missing_events"));
    CHECK(missing.size() == 5);
    for (const auto& type : kGoldenPath) {
      INFO(type);
      CHECK(has(missing, type));
    }
  }

  auto idle = result_of(out, "idle");
  CHECK(idle["reason"] == "timeout");
  CHECK(detail(idle, "timeout_phase") == "idle");
  CHECK(detail(idle, "awaited_event") == "tool_completed");
  CHECK(timeline_types(idle) ==
        std::vector<std::string>{"agent_started", "agent_thinking", "tool_executing"});
  CHECK(offsets_nondecreasing(idle));
  CHECK(strings(detail(idle, "missing_events")) ==
        std::vector<std::string>{"tool_completed", "agent_completed"});

  auto overall = result_of(out, "overall");
  CHECK(overall["reason"] == "timeout");
  CHECK(contains(result_message(overall), "awaiting tool_completed"));
  CHECK(detail(overall, "timeout_phase") == "events");
  CHECK(detail(overall, "awaited_event") == "tool_completed");

  auto no_tool_name = result_of(out, "no-tool-name");
  CHECK(no_tool_name["reason"] == "schema");
  CHECK(contains(result_message(no_tool_name), "tool_executing"));
  CHECK(contains(result_message(no_tool_name), "data.tool_name"));
  CHECK(detail(no_tool_name, "missing_field") ==
        json({{"event", "tool_executing"}, {"field", "data.tool_name"}}));

  auto no_results = result_of(out, "no-results");
  CHECK(no_results["reason"] == "schema");
  CHECK(contains(result_message(no_results), "data.results"));
  CHECK(detail(no_results, "missing_field") ==
        json({{"event", "tool_completed"}, {"field", "data.results"}}));

  auto order = result_of(out, "out-of-order");
  CHECK(order["reason"] == "missing_event");
  CHECK(result_message(order).rfind("agent_thinking", 0) == 0);
  CHECK(has(strings(detail(order, "missing_events")), "agent_thinking"));

  CHECK(reason("non-json") == "protocol");
  CHECK(reason("oversized") == "protocol");

  auto closed = result_of(out, "close-1011");
  CHECK(closed["reason"] == "ws_abnormal_close");
  CHECK(detail(closed, "close_code") == 1011);
  CHECK(contains(result_message(closed), "after agent_thinking"));

  auto correlation = result_of(out, "wrong-correlation");
  CHECK(correlation["reason"] == "schema");
  CHECK(contains(result_message(correlation), "thread_id"));

  auto early = result_of(out, "closed-early");
  CHECK(early["reason"] == "missing_event");
  CHECK(result_message(early).rfind("tool_completed", 0) == 0);
  CHECK(contains(result_message(early), "after tool_executing"));
  CHECK(strings(detail(early, "missing_events")) ==
        std::vector<std::string>{"tool_completed", "agent_completed"});
  auto dropped = result_of(out, "dropped");
  CHECK(dropped["reason"] == "ws_abnormal_close");
  CHECK(detail(dropped, "close_code") == 1006);
  CHECK(contains(result_message(dropped), "after tool_executing"));
  auto failing = result_of(out, "sessions-failing");
  CHECK(failing["reason"] == "ws_abnormal_close");
  CHECK(detail(failing, "connections_ok") == 0);
  CHECK(detail(failing, "connections_total") == 3);

  auto one_call = result_of(out, "one-tool-call");
  CHECK(one_call["reason"] == "missing_event");
  CHECK(result_message(one_call).rfind("tool_executing", 0) == 0);
}

TEST_CASE("agent: a failed token step is auth and never a WebSocket failure", "[agent][auth]") {
  auto& p = platform();
  const std::string q = "event_delay_ms=50&agent=happy";
  const std::string header = "headers: {Authorization: \"Bearer {{token}}\"}";
  std::string config =
      "probes:\n" +
      agent_probe({.name = "denied",
                   .query = q + "&require_token=1",
                   .websocket = {header},
                   .keys = {agent_token_step(p.fp.url("/auth/token?mode=deny"))}}) +
      agent_probe({.name = "wrong-key",
                   .query = q + "&require_token=1",
                   .websocket = {header},
                   .keys = {agent_token_step(p.fp.url("/auth/token"), "", "AGENT_WRONG_KEY")}}) +
      agent_probe({.name = "no-token-there",
                   .query = q + "&require_token=1",
                   .websocket = {header},
                   .keys = {"token: {url: \"" + p.fp.url("/health") +
                            "\", method: GET, json_path: data.token}"}}) +
      agent_probe({.name = "token-refused",
                   .query = q + "&require_token=1",
                   .websocket = {header},
                   .keys = {agent_token_step(
                       fmt::format("http://127.0.0.1:{}/auth/token", free_port()))}}) +
      agent_probe({.name = "no-token-step", .query = q + "&require_token=1"}) +
      agent_probe({.name = "right-key",
                   .query = q + "&require_token=1",
                   .websocket = {header},
                   .keys = {agent_token_step(p.fp.url("/auth/token"))}});
  auto env = p.env();
  env.push_back("AGENT_WRONG_KEY=wrongKEY" + random_token(24));
  int code = 0;
  json out = once_json(config, &code, env);
  INFO(out.dump(2));
  CHECK(code == 1);

  for (const char* name : {"denied", "wrong-key"}) {
    INFO(name);
    auto r = result_of(out, name);
    CHECK(r["reason"] == "auth");
    CHECK(detail(r, "status_code") == 401);
    CHECK(r["phases"].contains("token"));
    CHECK_FALSE(r["phases"].contains("handshake"));  // no WebSocket was tried
  }
  CHECK(result_of(out, "no-token-there")["reason"] == "auth");
  CHECK(result_of(out, "token-refused")["reason"] == "auth");

  auto no_step = result_of(out, "no-token-step");
  CHECK(no_step["reason"] == "ws_upgrade_rejected");
  CHECK(detail(no_step, "status_code") == 401);
  CHECK(result_of(out, "right-key")["reason"] == "ok");
}

TEST_CASE("agent: per-event metrics and the state timeline and status of a running daemon",
          "[agent][daemon]") {
  auto& p = platform();
  const std::string q = "event_delay_ms=50&agent=";
  p.auth_stats(/*reset=*/true);  // agent-cached is the only token user below
  Daemon d(
      base_config(
          agent_probe(
              {.name = "agent-ok", .query = q + "happy", .timeout = "2s", .interval = "2s"}) +
          agent_probe({.name = "agent-order",
                       .query = q + "out_of_order",
                       .timeout = "2s",
                       .interval = "2s"}) +
          agent_probe({.name = "agent-schema",
                       .query = q + "no_tool_name",
                       .timeout = "2s",
                       .interval = "2s"}) +
          agent_probe({.name = "agent-idle",
                       .query = q + "no_tool_completed",
                       .keys = {"idle_timeout: 1s"},
                       .timeout = "2s",
                       .interval = "2s"}) +
          agent_probe(
              {.name = "agent-hb", .query = q + "heartbeats", .timeout = "2s", .interval = "2s"}) +
          agent_probe({.name = "agent-cached",
                       .query = q + "happy&require_token=1",
                       .websocket = {"headers: {Authorization: \"Bearer {{token}}\"}"},
                       .keys = {agent_token_step(p.fp.url("/auth/token"), ", cache_for: 10m")},
                       .timeout = "1s",
                       .interval = "1s"}) +
          // Each run is refused a 2 MiB frame: the daemon must shrug that off.
          agent_probe({.name = "agent-oversized",
                       .query = q + "oversized",
                       .keys = {"max_frame_bytes: 65536"},
                       .timeout = "1s",
                       .interval = "1s"})),
      p.env());
  const std::vector<std::string> probes = {"agent-ok",       "agent-order", "agent-schema",
                                           "agent-idle",     "agent-hb",    "agent-cached",
                                           "agent-oversized"};
  REQUIRE(wait_until(
      [&] {
        for (const auto& name : probes)
          if (!has_run(d, name)) return false;
        return has_run(d, "agent-cached", 3);
      },
      60s));
  // Refused oversized frames, run after run.
  CHECK(wait_until(
      [&] {
        return value(d.metrics(), "canary_probe_failures_total",
                     {{"probe", "agent-oversized"}, {"reason", "protocol"}}) >= 3;
      },
      60s));

  std::string m = d.metrics();
  INFO(m);
  CHECK(value(m, "canary_probes_configured", {{"type", "agent_pipeline"}}) == 7.0);
  CHECK(value(m, "canary_probe_success",
              {{"probe", "agent-ok"},
               {"type", "agent_pipeline"},
               {"category", "default"},
               {"env", "test"}}) == 1.0);
  for (const auto& reason : kAgentReasons) {
    INFO(reason);
    CHECK(value(m, "canary_probe_failures_total", {{"probe", "agent-ok"}, {"reason", reason}}) ==
          0.0);
  }
  // Per-event series, pre-created at 0 for what is configured.
  for (const auto& event : kGoldenPath) {
    INFO(event);
    CHECK(value(m, "canary_agent_event_missing_total",
                {{"probe", "agent-ok"}, {"type", "agent_pipeline"}, {"event", event}}) == 0.0);
    CHECK(value(m, "canary_agent_events_received_total",
                {{"probe", "agent-ok"}, {"event", event}}) >= 1.0);
    CHECK(value(m, "canary_probe_phase_duration_seconds_count",
                {{"probe", "agent-ok"}, {"phase", event}}) >= 1.0);
  }
  CHECK(value(m, "canary_agent_events_received_total",
              {{"probe", "agent-ok"}, {"event", "other"}}) == 0.0);
  for (const auto& [event, field] :
       std::vector<std::pair<std::string, std::string>>{{"tool_executing", "data.tool_name"},
                                                        {"tool_completed", "data.tool_name"},
                                                        {"tool_completed", "data.results"}}) {
    INFO(event << " " << field);
    CHECK(
        value(
            m, "canary_agent_event_field_missing_total",
            {{"probe", "agent-ok"}, {"category", "default"}, {"event", event}, {"field", field}}) ==
        0.0);
  }
  for (const char* phase : {"connect", "handshake", "first_event", "close", "total"}) {
    INFO(phase);
    CHECK(value(m, "canary_probe_phase_duration_seconds_count",
                {{"probe", "agent-ok"}, {"phase", phase}}) >= 1.0);
  }
  CHECK(value(m, "canary_probe_phase_duration_seconds_count",
              {{"probe", "agent-cached"}, {"phase", "token"}}) >= 1.0);

  auto failures = [&](const std::string& probe, const std::string& reason) {
    return value(m, "canary_probe_failures_total", {{"probe", probe}, {"reason", reason}});
  };
  auto missing = [&](const std::string& probe, const std::string& event) {
    return value(m, "canary_agent_event_missing_total", {{"probe", probe}, {"event", event}});
  };
  CHECK(failures("agent-order", "missing_event") >= 1.0);
  CHECK(missing("agent-order", "agent_thinking") >= 1.0);
  CHECK(missing("agent-order", "agent_started") == 0.0);
  CHECK(failures("agent-schema", "schema") >= 1.0);
  CHECK(value(m, "canary_agent_event_field_missing_total",
              {{"probe", "agent-schema"},
               {"event", "tool_executing"},
               {"field", "data.tool_name"}}) >= 1.0);
  CHECK(
      value(m, "canary_agent_event_field_missing_total",
            {{"probe", "agent-schema"}, {"event", "tool_completed"}, {"field", "data.results"}}) ==
      0.0);
  CHECK(failures("agent-idle", "timeout") >= 1.0);
  CHECK(missing("agent-idle", "tool_completed") >= 1.0);
  CHECK(missing("agent-idle", "agent_completed") >= 1.0);
  CHECK(missing("agent-idle", "agent_started") == 0.0);
  CHECK(value(m, "canary_agent_events_received_total",
              {{"probe", "agent-hb"}, {"event", "other"}}) >= 1.0);
  CHECK(value(m, "canary_probe_success", {{"probe", "agent-hb"}}) == 1.0);
  CHECK(value(m, "canary_probe_success", {{"probe", "agent-cached"}}) == 1.0);
  CHECK(failures("agent-oversized", "protocol") >= 3.0);
  for (const auto& s : parse_exposition(m)) {
    for (const auto& [name, label_value] : s.labels) {
      INFO(s.name << "{" << name << "=" << label_value << "}");
      CHECK_FALSE(contains(label_value, "127.0.0.1"));
    }
  }
  TempDir dir;
  std::string file = dir.write_file("metrics.txt", m);
  auto check = run_command({"sh", "-c", "promtool check metrics < " + file});
  INFO(check.out << check.err);
  CHECK(check.exit_code == 0);

  // A cached token is fetched once and used on every run.
  json auth = p.auth_stats();
  INFO(auth.dump());
  CHECK(auth["tokens_issued"] == 1);
  CHECK(auth["ws_token_accepted"].get<int>() >= 3);

  // The state API: the timeline, what is missing and what was awaited.
  json ok = d.state("agent-ok");
  INFO(ok.dump(2));
  CHECK(ok["status"] == "passing");
  CHECK(ok["type"] == "agent_pipeline");
  CHECK(timeline_types(ok["last"]) == kGoldenPath);
  CHECK(ok["last"]["phases"].contains("tool_completed"));

  json order = d.state("agent-order");
  INFO(order.dump(2));
  CHECK(order["status"] == "failing");
  CHECK(order["last"]["reason"] == "missing_event");
  CHECK(result_message(order["last"]).rfind("agent_thinking", 0) == 0);
  CHECK(has(strings(order["last"]["details"]["missing_events"]), "agent_thinking"));
  CHECK(timeline_types(order["last"]) ==
        std::vector<std::string>{"agent_started", "tool_executing"});

  json idle = d.state("agent-idle");
  INFO(idle.dump(2));
  CHECK(idle["last"]["reason"] == "timeout");
  CHECK(idle["last"]["details"]["timeout_phase"] == "idle");
  CHECK(idle["last"]["details"]["awaited_event"] == "tool_completed");
  CHECK(timeline_types(idle["last"]) ==
        std::vector<std::string>{"agent_started", "agent_thinking", "tool_executing"});
  CHECK(strings(idle["last"]["details"]["missing_events"]) ==
        std::vector<std::string>{"tool_completed", "agent_completed"});

  json schema = d.state("agent-schema");
  INFO(schema.dump(2));
  CHECK(schema["last"]["reason"] == "schema");
  CHECK(schema["last"]["details"]["missing_field"] ==
        json({{"event", "tool_executing"}, {"field", "data.tool_name"}}));

  // `canaryd status`: a failing agent probe's line says why.
  auto status = run_command({canaryd_bin(), "status", "--url", d.base_url()});
  INFO(status.out << status.err);
  CHECK(status.exit_code == 1);
  std::string order_line;
  std::istringstream lines(status.out);
  for (std::string line; std::getline(lines, line);)
    if (contains(line, "agent-order")) order_line = line;
  CHECK(contains(order_line, "missing_event"));
  CHECK(contains(order_line, "agent_thinking"));

  // Refused oversized frames left the daemon healthy.
  CHECK(http_get(d.base_url() + "/-/healthy").status == 200);
  double runs = value(d.metrics(), "canary_probe_runs_total", {{"probe", "agent-oversized"}});
  CHECK(wait_until([&] {
    return value(d.metrics(), "canary_probe_runs_total", {{"probe", "agent-oversized"}}) > runs;
  }));
  CHECK(d.process().running());
}

TEST_CASE("agent: the bypass key and issued tokens never leak", "[agent][secrets]") {
  // The detector itself: token-shaped runs, whole or cut short, and nothing of
  // canaryd's ordinary output.
  const std::string sample = "q3Zr_T-8xKp0aW4LmNbVc9dE2fGhJ5kS7uYiOe1wQxR";
  REQUIRE(sample.size() == 43);
  CHECK(token_like_runs("Bearer " + sample + "\n") == std::vector<std::string>{sample});
  CHECK(token_like_runs("is \"not-" + sample.substr(0, 35) + "...") ==
        std::vector<std::string>{"not-" + sample.substr(0, 35)});
  CHECK(token_like_runs("run_id 8e6d5d4105b66d1a canary_probe_last_success_timestamp_seconds"
                        "{probe=\"sec-sub\"} jwt.<redacted> 2026-11-21T11:10:12Z")
            .empty());

  auto& p = platform();
  p.auth_stats(/*reset=*/true);
  // The runs must pass, not race a clock: a 1 s timeout failed this test on a
  // machine at load 6 (ASan, a token step, a handshake and five events).
  const std::string q = "event_delay_ms=50&require_token=1&agent=";
  const std::string step = agent_token_step(p.fp.url("/auth/token"));
  std::string probes =
      agent_probe({.name = "sec-sub",
                   .query = q + "happy&subprotocol=first",
                   .websocket = {"subprotocols: [jwt-auth, \"jwt.{{token}}\"]"},
                   .keys = {step},
                   .timeout = "3s",
                   .interval = "3s"}) +
      // The server selects the token-bearing entry itself.
      agent_probe({.name = "sec-selected",
                   .query = q + "happy&subprotocol=last",
                   .websocket = {"subprotocols: [jwt-auth, \"jwt.{{token}}\"]"},
                   .keys = {step},
                   .timeout = "3s",
                   .interval = "3s"}) +
      agent_probe({.name = "sec-header",
                   .query = q + "happy",
                   .websocket = {"headers: {Authorization: \"Bearer {{token}}\"}"},
                   .keys = {step},
                   .timeout = "3s",
                   .interval = "3s"}) +
      // Failures, whose messages and logs could quote what was sent.
      agent_probe({.name = "sec-closed",
                   .query = q + "close_1011_after_thinking",
                   .websocket = {"headers: {Authorization: \"Bearer {{token}}\"}"},
                   .keys = {step},
                   .timeout = "3s",
                   .interval = "3s"}) +
      agent_probe({.name = "sec-wrong-key",
                   .query = q + "happy",
                   .websocket = {"headers: {Authorization: \"Bearer {{token}}\"}"},
                   .keys = {agent_token_step(p.fp.url("/auth/token"), "", "AGENT_WRONG_KEY")},
                   .timeout = "3s",
                   .interval = "3s"});
  const std::string wrong_key = "wrongKEY" + random_token(24);
  auto env = p.env();
  env.push_back("AGENT_WRONG_KEY=" + wrong_key);
  DebugDaemon d(base_config(probes), env);
  const std::vector<std::string> names = {"sec-sub", "sec-selected", "sec-header", "sec-closed",
                                          "sec-wrong-key"};
  auto runs = [&](const std::string& name) {
    return value(d.get("/metrics"), "canary_probe_runs_total", {{"probe", name}});
  };
  REQUIRE(wait_until(
      [&] {
        for (const auto& name : names)
          if (runs(name) < 2) return false;
        return true;
      },
      60s));

  {
    // The tokens were really issued, sent and accepted; the wrong key was refused.
    json auth = p.auth_stats();
    INFO(auth.dump());
    CHECK(auth["tokens_issued"].get<int>() >= 8);
    CHECK(auth["ws_token_accepted"].get<int>() >= 8);
    CHECK(auth["denied_bypass_key"].get<int>() >= 2);
  }

  // Each output, checked for the key and for anything shaped like a token.
  auto check_clean = [&](const std::string& what, const std::string& text) {
    INFO(what);
    CHECK_FALSE(contains(text, p.bypass_key));
    CHECK_FALSE(contains(text, wrong_key));
    CHECK(token_like_runs(text) == std::vector<std::string>{});
  };
  std::string m = d.get("/metrics");
  check_clean("/metrics", m);
  CHECK(value(m, "canary_probe_success", {{"probe", "sec-sub"}}) == 1.0);
  CHECK(value(m, "canary_probe_success", {{"probe", "sec-selected"}}) == 1.0);
  CHECK(value(m, "canary_probe_success", {{"probe", "sec-header"}}) == 1.0);
  check_clean("/api/v1/state", d.get("/api/v1/state"));
  for (const auto& name : names)
    check_clean("/api/v1/state/" + name, d.get("/api/v1/state/" + name));
  json closed = json::parse(d.get("/api/v1/state/sec-closed"), nullptr, false);
  REQUIRE_FALSE(closed.is_discarded());
  CHECK(closed["last"]["reason"] == "ws_abnormal_close");
  json wrong = json::parse(d.get("/api/v1/state/sec-wrong-key"), nullptr, false);
  REQUIRE_FALSE(wrong.is_discarded());
  CHECK(wrong["last"]["reason"] == "auth");
  json selected = json::parse(d.get("/api/v1/state/sec-selected"), nullptr, false);
  REQUIRE_FALSE(selected.is_discarded());
  CHECK(selected["last"]["reason"] == "ok");

  auto status = run_command({canaryd_bin(), "status", "--url", d.base_url()});
  check_clean("status", status.out + status.err);

  auto once = run_command(
      {canaryd_bin(), "once", "--log-level", "debug", "--config", d.config_path(), "--json"}, 60s,
      env);
  check_clean("once stdout", once.out);
  check_clean("once stderr", once.err);
  json once_out = json::parse(once.out, nullptr, false);
  REQUIRE_FALSE(once_out.is_discarded());
  CHECK(once_reason(once_out, "sec-sub") == "ok");
  CHECK(once_reason(once_out, "sec-selected") == "ok");
  CHECK(once_reason(once_out, "sec-header") == "ok");
  CHECK(once_reason(once_out, "sec-closed") == "ws_abnormal_close");
  CHECK(once_reason(once_out, "sec-wrong-key") == "auth");

  d.process().stop();
  check_clean("daemon stdout", d.process().stdout_text());
  check_clean("daemon stderr", d.process().stderr_text());
}

TEST_CASE("agent: a token the server echoes back is never shown in whole or in part",
          "[agent][secrets]") {
  auto& p = platform();
  // The message carries the token as the thread id; the server answers with
  // "not-" + it, which fails the correlation check and is quoted in the message.
  std::string config =
      "probes:\n" +
      agent_probe({.name = "echo",
                   .query = "event_delay_ms=50&require_token=1&agent=wrong_correlation",
                   .websocket = {"headers: {Authorization: \"Bearer {{token}}\"}"},
                   .keys = {agent_token_step(p.fp.url("/auth/token")),
                            "send: {json: {type: user_message, payload: {content: \"canary "
                            "ping\", thread_id: \"{{token}}\"}}}",
                            "correlation_field: thread_id"}});
  TempDir dir;
  std::string path = dir.write_file("canaryd.yaml", config);
  auto once = run_command(
      {canaryd_bin(), "once", "--log-level", "debug", "--config", path, "--json"}, 60s, p.env());
  INFO(once.out << once.err);
  json out = json::parse(once.out, nullptr, false);
  REQUIRE_FALSE(out.is_discarded());
  auto r = result_of(out, "echo");
  CHECK(r["reason"] == "schema");
  CHECK(contains(result_message(r), "thread_id"));
  CHECK(token_like_runs(result_message(r)) == std::vector<std::string>{});
  CHECK(token_like_runs(once.out) == std::vector<std::string>{});
  CHECK(token_like_runs(once.err) == std::vector<std::string>{});
  CHECK_FALSE(contains(once.out + once.err, p.bypass_key));
}
