// The agent stream's timing over both transports against the fake platform's
// scripted agents, whose events go out at known times (first_event_delay_ms,
// then every event_delay_ms): the run's details and the stream metrics a
// running daemon exports. Only lower bounds on times (the schedule is a
// floor: nothing can arrive before it is sent); CI machines are too noisy
// for upper ones.
#include <fmt/format.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cmath>
#include <map>
#include <nlohmann/json.hpp>
#include <string>

#include "tests/support/agent_fixture.h"
#include "tests/support/harness.h"

using namespace canaryd::test;
using namespace std::chrono_literals;
using nlohmann::json;

namespace {

constexpr double kFirst = 0.15;  // first_event_delay_ms=150
constexpr double kDelay = 0.1;   // event_delay_ms=100
const std::string kTiming = "first_event_delay_ms=150&event_delay_ms=100&agent=";

// The golden path's events without their required fields: only the timing matters here.
const std::string kEvents =
    "events: [{type: agent_started}, {type: agent_thinking}, {type: tool_executing}, "
    "{type: tool_completed}, {type: agent_completed}]";

FakePlatform& platform() {
  static FakePlatform fp;
  return fp;
}

std::string ws_probe(const std::string& name, const std::string& mode,
                     const std::string& more = "") {
  return fmt::format(
      "  - name: {}\n    type: agent_pipeline\n    interval: 2s\n    timeout: 2s\n{}"
      "    agent_pipeline:\n      websocket: {{url: \"ws://127.0.0.1:{}/ws?{}{}\"}}\n"
      "      idle_timeout: 1s\n      first_event_timeout: 1s\n      {}\n      {}\n",
      name, more, platform().http_port(), kTiming, mode, kGoldenSend, kEvents);
}

std::string sse_probe(const std::string& name, const std::string& mode,
                      const std::string& more = "") {
  return fmt::format(
      "  - name: {}\n    type: agent_pipeline\n    interval: 2s\n    timeout: 2s\n{}"
      "    agent_pipeline:\n      transport: sse\n"
      "      sse: {{url: \"{}\", end_event: done}}\n"
      "      idle_timeout: 1s\n      first_event_timeout: 1s\n      {}\n      {}\n",
      name, more, platform().url("/sse?" + kTiming + mode), kGoldenSend, kEvents);
}

double value(const std::string& metrics, const std::string& name,
             const std::map<std::string, std::string>& labels) {
  auto v = metric_value(metrics, name, labels);
  return v ? *v : -1;
}

// The details of a stream that delivered `events` on the fixture's schedule.
void check_timing(const json& last, int events) {
  INFO(last.dump(2));
  const json& d = last["details"];
  REQUIRE(d.contains("event_count"));
  CHECK(d["event_count"] == events);
  // Nothing arrives before the fixture sends it, and it sends the first
  // event kFirst after the request or message reached it. canaryd stamps
  // the send once the write has returned, which the fixture may beat to
  // its own stamp by a few microseconds: 1 ms of slack.
  CHECK(d["first_event_seconds"].get<double>() >= kFirst - 0.001);
  const double max_gap = d["max_gap_seconds"].get<double>();
  const double rate = d["events_per_second"].get<double>();
  // events - 1 gaps span the stream: the largest is at least their mean.
  const double span = (events - 1) / rate;
  CHECK(max_gap * (events - 1) >= span * 0.999);
  // The last event is due (events - 1) delays after the first; only the
  // first can come late (a busy fixture), so the span stays near that. 80%
  // leaves a late first event 80 ms of room.
  CHECK(span >= 0.8 * (events - 1) * kDelay);
  CHECK(max_gap >= 0.8 * kDelay);
  // The timeline (rounded to ms) agrees on the first event.
  CHECK(std::abs(d["events"][0]["offset_ms"].get<double>() / 1000 -
                 d["first_event_seconds"].get<double>()) <= 0.001);
}

}  // namespace

TEST_CASE(
    "agent timing: first event and gaps in the details and the stream metrics of both transports",
    "[agent][sse][timing]") {
  Daemon d(std::string("global:\n  listen: \"{{listen}}\"\n  labels: {env: test}\nprobes:\n") +
           ws_probe("ws-happy", "happy") +
           ws_probe("ws-full", "happy", "    metrics: {detail: full}\n") +
           ws_probe("ws-silent", "silent") + sse_probe("sse-happy", "happy") +
           sse_probe("sse-stall", "no_tool_completed"));
  const std::vector<std::string> probes = {"ws-happy", "ws-full", "ws-silent", "sse-happy",
                                           "sse-stall"};
  REQUIRE(wait_until(
      [&] {
        for (const auto& name : probes)
          if (!has_run(d, name, 2)) return false;
        return true;
      },
      60s));

  // Five agent frames; over SSE the end event "done" too.
  json ws = d.state("ws-happy")["last"];
  CHECK(ws["reason"] == "ok");
  check_timing(ws, 5);
  json sse = d.state("sse-happy")["last"];
  CHECK(sse["reason"] == "ok");
  check_timing(sse, 6);
  // The first event is the first configured one here: the phase agrees.
  CHECK(std::abs(sse["phases"]["first_event"].get<double>() -
                 sse["details"]["first_event_seconds"].get<double>()) < 1e-6);
  // A stall is a failed run that still shows the stream so far.
  json stall = d.state("sse-stall")["last"];
  CHECK(stall["reason"] == "timeout");
  CHECK(stall["details"]["timeout_phase"] == "idle");
  check_timing(stall, 3);
  // No event: a count of 0 and no times.
  json silent = d.state("ws-silent")["last"];
  CHECK(silent["reason"] == "timeout");
  CHECK(silent["details"]["event_count"] == 0);
  CHECK_FALSE(silent["details"].contains("first_event_seconds"));
  CHECK_FALSE(silent["details"].contains("max_gap_seconds"));

  std::string m = d.metrics();
  INFO(m);
  auto of = [](const std::string& probe, std::map<std::string, std::string> more = {}) {
    more["probe"] = probe;
    return more;
  };
  for (const auto& [probe, gaps] : std::map<std::string, int>{
           {"ws-happy", 4}, {"ws-full", 4}, {"sse-happy", 5}, {"sse-stall", 2}}) {
    INFO(probe);
    double runs = value(m, "canary_agent_first_event_seconds_count", of(probe));
    CHECK(runs >= 2);
    // Every run is judged the same way, so every run adds the same gaps
    // (one run may finish while the scrape is written).
    double gap_count = value(m, "canary_agent_event_gap_seconds_count", of(probe));
    CHECK(gap_count >= gaps * runs);
    CHECK(gap_count <= gaps * (runs + 1));
    CHECK(value(m, "canary_agent_event_gap_seconds_sum", of(probe)) >= 0.8 * kDelay * gap_count);
    CHECK(value(m, "canary_agent_first_event_seconds_bucket", of(probe, {{"le", "+Inf"}})) == runs);
    CHECK(value(m, "canary_agent_stream_events_per_second", of(probe)) > 0);
  }
  CHECK(value(m, "canary_agent_stream_events", of("ws-happy")) == 5);
  CHECK(value(m, "canary_agent_stream_events", of("sse-happy")) == 6);
  CHECK(value(m, "canary_agent_stream_events", of("sse-stall")) == 3);
  CHECK(value(m, "canary_agent_stream_events", of("ws-silent")) == 0);
  // A probe with no event yet has its histograms at 0, and no rate.
  CHECK(value(m, "canary_agent_first_event_seconds_count", of("ws-silent")) == 0);
  CHECK(value(m, "canary_agent_event_gap_seconds_count", of("ws-silent")) == 0);
  CHECK(value(m, "canary_agent_stream_events_per_second", of("ws-silent")) == -1);
  // basic (the default) keeps fewer buckets than full; 10 s is in both.
  CHECK(value(m, "canary_agent_event_gap_seconds_bucket", of("ws-happy", {{"le", "10"}})) >= 0);
  CHECK(value(m, "canary_agent_event_gap_seconds_bucket", of("ws-full", {{"le", "10"}})) >= 0);
  CHECK(value(m, "canary_agent_event_gap_seconds_bucket", of("ws-happy", {{"le", "0.025"}})) == -1);
  CHECK(value(m, "canary_agent_event_gap_seconds_bucket", of("ws-full", {{"le", "0.025"}})) == 0);
}
