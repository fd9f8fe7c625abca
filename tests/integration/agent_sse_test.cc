// The agent_pipeline probe's `transport: sse` against the fake platform's
// scripted SSE agent (POST /sse?agent=MODE) and its token endpoint, read as
// a deploy pipeline reads it (`canaryd once --json`): each fixture mode gives
// its reason, phase and details, and no token reaches any output.
#include <fmt/format.h>

#include <catch2/catch.hpp>
#include <cctype>
#include <chrono>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "tests/support/agent_fixture.h"
#include "tests/support/harness.h"

using namespace canaryd::test;
using namespace std::chrono_literals;
using nlohmann::json;

namespace {

const std::vector<std::string> kGoldenPath = {"agent_started", "agent_thinking", "tool_executing",
                                              "tool_completed", "agent_completed"};

AgentPlatform& platform() {
  static AgentPlatform p;
  return p;
}

struct SseAgent {
  std::string name{};
  std::string query{};             // the /sse query, without '?'
  std::vector<std::string> sse{};  // more keys under sse: (url is set)
  std::vector<std::string> keys{};
  std::string timeout = "5s";
  std::string url{};  // replaces the fixture's /sse URL
};

// One agent_pipeline probe with transport: sse; without send: or events: in
// a.keys, the golden-path message and events are used.
std::string sse_probe(const SseAgent& a) {
  std::string url = a.url.empty() ? platform().fp.url("/sse?" + a.query) : a.url;
  std::string out = fmt::format(
      "  - name: {}\n    type: agent_pipeline\n    interval: 10s\n    timeout: {}\n"
      "    agent_pipeline:\n      transport: sse\n      sse:\n        url: \"{}\"\n",
      a.name, a.timeout, url);
  for (const auto& line : a.sse) out += "        " + line + "\n";
  return out + agent_keys(a.keys);
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

std::vector<std::string> strings(const json& j) {
  std::vector<std::string> out;
  if (j.is_array())
    for (const auto& v : j) out.push_back(v.is_string() ? v.get<std::string>() : v.dump());
  return out;
}

// Runs of [A-Za-z0-9_-] at least 20 long with upper and lower case or digits:
// the shape of the fixture's tokens (43 such characters), whole or clipped.
std::vector<std::string> token_like_runs(const std::string& text) {
  auto in_run = [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '_' || c == '-';
  };
  std::vector<std::string> out;
  for (size_t i = 0; i < text.size();) {
    if (!in_run(text[i])) {
      ++i;
      continue;
    }
    size_t j = i;
    bool upper = false, other = false;
    for (; j < text.size() && in_run(text[j]); ++j) {
      unsigned char c = static_cast<unsigned char>(text[j]);
      upper = upper || std::isupper(c) != 0;
      other = other || std::islower(c) != 0 || std::isdigit(c) != 0;
    }
    if (j - i >= 20 && upper && other) out.push_back(text.substr(i, j - i));
    i = j;
  }
  return out;
}

}  // namespace

TEST_CASE("agent sse: the golden path passes with each end sentinel and type source",
          "[agent][sse]") {
  auto& p = platform();
  const std::string q = "event_delay_ms=50&agent=";
  std::string config =
      "probes:\n" +
      sse_probe({.name = "end-event", .query = q + "happy", .sse = {"end_event: done"}}) +
      sse_probe({.name = "end-data", .query = q + "happy", .sse = {"end_data: \"[DONE]\""}}) +
      sse_probe({.name = "type-from-data",
                 .query = q + "happy",
                 .sse = {"event_type_from: data", "end_data: \"[DONE]\""}}) +
      sse_probe({.name = "crlf", .query = q + "happy&crlf=1", .sse = {"end_event: done"}}) +
      // Without a sentinel the run ends at the last expected event.
      sse_probe({.name = "no-sentinel", .query = q + "happy"}) +
      sse_probe({.name = "correlated",
                 .query = q + "happy",
                 .sse = {"end_event: done"},
                 .keys = {"correlation_field: thread_id"}}) +
      sse_probe({.name = "token",
                 .query = q + "happy&require_token=1",
                 .sse = {"headers: {Authorization: \"Bearer {{token}}\"}", "end_event: done"},
                 .keys = {agent_token_step(p.fp.url("/auth/token"))}}) +
      sse_probe({.name = "openai",
                 .query = q + "openai",
                 .sse = {"event_type_from: data", "end_data: \"[DONE]\""},
                 .keys = {"send: {json: {model: fake-gpt, stream: true, messages: [{role: user, "
                          "content: \"canary ping {{run_id}}\"}]}}",
                          "event_type_field: object",
                          "events: [{type: chat.completion.chunk, required: [choices.0.delta]}]"}});
  int code = 0;
  json out = once_json(config, &code, p.env());
  INFO(out.dump(2));
  CHECK(code == 0);
  for (const char* name : {"end-event", "end-data", "type-from-data", "crlf", "no-sentinel",
                           "correlated", "token", "openai"}) {
    INFO(name);
    auto r = result_of(out, name);
    CHECK(r["reason"] == "ok");
    CHECK(r["success"] == true);
    CHECK(detail(r, "status_code") == 200);
  }
  auto happy = result_of(out, "end-event");
  CHECK(result_message(happy).rfind("agent_completed at ", 0) == 0);
  CHECK(contains(result_message(happy), "then event done at "));
  for (const char* phase :
       {"connect", "handshake", "first_event", "agent_started", "agent_thinking", "tool_executing",
        "tool_completed", "agent_completed", "total"}) {
    INFO(phase);
    CHECK(happy["phases"].contains(phase));
  }
  CHECK_FALSE(happy["phases"].contains("token"));
  double previous = 0;
  for (const auto& type : kGoldenPath) {
    INFO(type);
    double t = happy["phases"].value(type, -1.0);
    CHECK(t >= previous);
    previous = t;
  }
  CHECK(happy["phases"].value("agent_completed", 0.0) >= 0.2);
  // The end event is not a configured one: it counts as "other".
  auto with_end = kGoldenPath;
  with_end.push_back("other");
  CHECK(timeline_types(happy) == with_end);
  CHECK(detail(happy, "awaited_event").is_null());
  CHECK(contains(result_message(result_of(out, "end-data")), "data [DONE]"));
  CHECK(result_message(result_of(out, "no-sentinel")).rfind("agent_completed at ", 0) == 0);
  CHECK(result_of(out, "token")["phases"].contains("token"));
  auto openai = result_of(out, "openai");
  CHECK(detail(openai, "events_received")["chat.completion.chunk"] == 7);
  CHECK(contains(result_message(openai), "data [DONE]"));
}

TEST_CASE("agent sse: each failure is its own reason with its phase and details", "[agent][sse]") {
  auto& p = platform();
  const std::string q = "event_delay_ms=50&agent=";
  const std::string end = "end_event: done";
  std::string config =
      "probes:\n" +
      sse_probe({.name = "silent",
                 .query = q + "silent",
                 .sse = {end},
                 .keys = {"first_event_timeout: 1s"}}) +
      sse_probe({.name = "stall",
                 .query = q + "no_tool_completed",
                 .sse = {end},
                 .keys = {"idle_timeout: 1s"}}) +
      sse_probe({.name = "overall", .query = q + "no_tool_completed", .timeout = "2s"}) +
      // The head came, no event: the probe's own timeout names first_event.
      sse_probe({.name = "silent-overall", .query = q + "silent", .timeout = "2s"}) +
      // Not even the head came: the request is still being answered.
      sse_probe({.name = "no-head", .query = q + "no_head", .timeout = "2s"}) +
      sse_probe({.name = "missing-field", .query = q + "no_tool_name", .sse = {end}}) +
      sse_probe({.name = "dropped", .query = q + "drop", .sse = {end}}) +
      sse_probe({.name = "ended", .query = q + "no_end", .sse = {end}}) +
      // Every event came, then the stream ended without the sentinel.
      sse_probe({.name = "no-sentinel", .query = q + "happy", .sse = {"end_event: finished"}}) +
      // The sentinel came before every expected event had.
      sse_probe({.name = "sentinel-early",
                 .query = q + "happy",
                 .sse = {end},
                 .keys = {"events: [{type: agent_started}, {type: agent_completed}, "
                          "{type: agent_summary}]"}}) +
      sse_probe({.name = "wrong-type", .query = q + "wrong_content_type", .sse = {end}}) +
      sse_probe({.name = "rejected", .query = q + "happy&reject=503", .sse = {end}}) +
      sse_probe({.name = "unauthorized", .query = q + "happy&require_token=1", .sse = {end}}) +
      sse_probe(
          {.name = "non-json", .query = q + "non_json", .sse = {"event_type_from: data", end}}) +
      sse_probe({.name = "non-json-event",
                 .query = q + "non_json",
                 .sse = {end},
                 .keys = {"correlation_field: thread_id"}}) +
      sse_probe({.name = "oversized",
                 .query = q + "oversized",
                 .sse = {end, "max_event_bytes: 65536", "max_line_bytes: 4194304"}}) +
      sse_probe({.name = "long-line", .query = q + "oversized", .sse = {end}}) +
      sse_probe({.name = "too-much", .query = q + "happy", .sse = {end, "max_total_bytes: 256"}}) +
      sse_probe({.name = "refused", .url = fmt::format("http://127.0.0.1:{}/sse", free_port())}) +
      sse_probe({.name = "token-denied",
                 .query = q + "happy",
                 .sse = {"headers: {Authorization: \"Bearer {{token}}\"}", end},
                 .keys = {agent_token_step(p.fp.url("/auth/token?mode=deny"))}});
  int code = 0;
  json out = once_json(config, &code, p.env());
  INFO(out.dump(2));
  CHECK(code == 1);

  auto silent = result_of(out, "silent");
  CHECK(silent["reason"] == "timeout");
  CHECK(detail(silent, "timeout_phase") == "first_event");
  CHECK(detail(silent, "awaited_event") == "agent_started");
  CHECK(strings(detail(silent, "missing_events")).size() == 5);

  auto stall = result_of(out, "stall");
  CHECK(stall["reason"] == "timeout");
  CHECK(detail(stall, "timeout_phase") == "idle");
  CHECK(detail(stall, "awaited_event") == "tool_completed");
  CHECK(timeline_types(stall) ==
        std::vector<std::string>{"agent_started", "agent_thinking", "tool_executing"});

  auto overall = result_of(out, "overall");
  CHECK(overall["reason"] == "timeout");
  CHECK(detail(overall, "timeout_phase") == "events");
  CHECK(contains(result_message(overall), "awaiting tool_completed"));

  auto silent_overall = result_of(out, "silent-overall");
  CHECK(silent_overall["reason"] == "timeout");
  CHECK(detail(silent_overall, "timeout_phase") == "first_event");
  CHECK(detail(silent_overall, "awaited_event") == "agent_started");

  auto no_head = result_of(out, "no-head");
  CHECK(no_head["reason"] == "timeout");
  CHECK(detail(no_head, "timeout_phase") == "handshake");
  CHECK(detail(no_head, "awaited_event") == "agent_started");
  CHECK(contains(result_message(no_head), "during handshake"));

  auto field = result_of(out, "missing-field");
  CHECK(field["reason"] == "schema");
  CHECK(detail(field, "missing_field") ==
        json({{"event", "tool_executing"}, {"field", "data.tool_name"}}));

  auto dropped = result_of(out, "dropped");
  CHECK(dropped["reason"] == "missing_event");
  CHECK(result_message(dropped).rfind("tool_executing (after agent_thinking", 0) == 0);
  CHECK(contains(result_message(dropped), "the connection broke"));
  CHECK(strings(detail(dropped, "missing_events")) ==
        std::vector<std::string>{"tool_executing", "tool_completed", "agent_completed"});

  auto ended = result_of(out, "ended");
  CHECK(ended["reason"] == "missing_event");
  CHECK(contains(result_message(ended), "the server ended the stream"));

  auto no_sentinel = result_of(out, "no-sentinel");
  CHECK(no_sentinel["reason"] == "missing_event");
  CHECK(result_message(no_sentinel).rfind("event finished (after agent_completed", 0) == 0);
  CHECK(detail(no_sentinel, "awaited_event") == "event finished");

  auto early = result_of(out, "sentinel-early");
  CHECK(early["reason"] == "missing_event");
  CHECK(result_message(early).rfind("agent_summary (", 0) == 0);
  CHECK(contains(result_message(early), "the stream ended with event done"));

  auto wrong = result_of(out, "wrong-type");
  CHECK(wrong["reason"] == "protocol");
  CHECK(contains(result_message(wrong), "application/json"));

  auto rejected = result_of(out, "rejected");
  CHECK(rejected["reason"] == "http_status");
  CHECK(detail(rejected, "status_code") == 503);
  CHECK(contains(result_message(rejected), "503"));
  auto unauthorized = result_of(out, "unauthorized");
  CHECK(unauthorized["reason"] == "http_status");
  CHECK(detail(unauthorized, "status_code") == 401);

  CHECK(result_of(out, "non-json")["reason"] == "protocol");
  CHECK(contains(result_message(result_of(out, "non-json")), "after agent_started"));
  CHECK(result_of(out, "non-json-event")["reason"] == "protocol");
  CHECK(contains(result_message(result_of(out, "oversized")), "max_event_bytes"));
  CHECK(result_of(out, "oversized")["reason"] == "protocol");
  CHECK(contains(result_message(result_of(out, "long-line")), "max_line_bytes"));
  CHECK(result_of(out, "long-line")["reason"] == "protocol");
  CHECK(contains(result_message(result_of(out, "too-much")), "max_total_bytes"));
  CHECK(result_of(out, "too-much")["reason"] == "protocol");
  CHECK(result_of(out, "refused")["reason"] == "connect_refused");
  auto denied = result_of(out, "token-denied");
  CHECK(denied["reason"] == "auth");
  CHECK(detail(denied, "status_code") == 401);
  for (const auto& r : out["results"]) CHECK(r["reason"] != "internal");
}

TEST_CASE("agent sse: an issued token never reaches the output", "[agent][sse][secrets]") {
  auto& p = platform();
  const std::string q = "event_delay_ms=20&require_token=1&agent=";
  const std::string header = "headers: {Authorization: \"Bearer {{token}}\"}";
  const std::string step = agent_token_step(p.fp.url("/auth/token"));
  std::string config =
      "probes:\n" +
      sse_probe({.name = "ok", .query = q + "happy", .sse = {header}, .keys = {step}}) +
      sse_probe({.name = "dropped",
                 .query = q + "drop",
                 .sse = {header, "end_event: done"},
                 .keys = {step}}) +
      sse_probe({.name = "wrong-type",
                 .query = q + "wrong_content_type",
                 .sse = {header},
                 .keys = {step}});
  auto once = run_once_json(config, p.env());
  INFO(once.out.dump(2) << once.err);
  REQUIRE_FALSE(once.out.is_discarded());
  CHECK(once.exit_code == 1);
  CHECK(once_result(once.out, "ok")["reason"] == "ok");
  CHECK(once_result(once.out, "dropped")["reason"] == "missing_event");
  CHECK(once_result(once.out, "wrong-type")["reason"] == "protocol");
  CHECK(token_like_runs(once.out.dump()) == std::vector<std::string>{});
  CHECK(token_like_runs(once.err) == std::vector<std::string>{});
}
