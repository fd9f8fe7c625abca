// The agent probe's event matcher on synthetic frames: order, required fields,
// correlation, repeats, and what it reports as awaited and missing. The
// integration tests play the same scripts over a real WebSocket.
#include "probes/agent_pipeline/event_matcher.h"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

using canaryd::EventMatcher;
using canaryd::EventMatchOptions;
using canaryd::Reason;
using Step = EventMatcher::Step;
using nlohmann::json;

namespace {

EventMatchOptions golden_path(bool strict = true) {
  EventMatchOptions o;
  o.strict = strict;
  o.events = {{"agent_started", {}},
              {"agent_thinking", {}},
              {"tool_executing", {"data.tool_name"}},
              {"tool_completed", {"data.tool_name", "data.results"}},
              {"agent_completed", {}}};
  return o;
}

json event(const std::string& type, json data = json::object(), const std::string& id = "run-1") {
  return {{"type", type}, {"thread_id", id}, {"data", std::move(data)}};
}

const json kTool = {{"tool_name", "search"}};
const json kResults = {{"tool_name", "search"}, {"results", json::array({"canary"})}};

// Feeds frames 0.1 s apart until the matcher stops; returns the last step.
Step feed(EventMatcher& m, const std::vector<json>& frames) {
  Step step = Step::kProgress;
  double t = 0;
  for (const auto& f : frames) {
    step = m.on_frame(f, t += 0.1);
    if (step == Step::kDone || step == Step::kFailed) break;
  }
  return step;
}

}  // namespace

TEST_CASE("event matcher: the golden path in order is done, with every first arrival") {
  auto opts = golden_path();
  EventMatcher m(&opts, "run-1");
  CHECK(m.awaited() == "agent_started");
  CHECK(m.after_text() == "before any event");
  CHECK(feed(m, {event("agent_started"), event("agent_thinking"), event("tool_executing", kTool),
                 event("tool_completed", kResults), event("agent_completed")}) == Step::kDone);
  CHECK(m.awaited().empty());
  CHECK(m.missing().empty());
  CHECK_FALSE(m.failure());
  REQUIRE(m.first_at().size() == 5);
  CHECK(m.first_at()[0] == Approx(0.1));
  CHECK(m.first_at()[4] == Approx(0.5));
  CHECK(m.after_text() == "after agent_completed at 500ms");
  CHECK(m.received().at("tool_executing") == 1);
}

TEST_CASE("event matcher: heartbeats count as other and move nothing") {
  auto opts = golden_path();
  EventMatcher m(&opts, "run-1");
  CHECK(m.on_frame(event("agent_started"), 0.1) == Step::kProgress);
  CHECK(m.on_frame(json{{"type", "heartbeat"}}, 0.2) == Step::kOther);
  CHECK(m.on_frame(json{{"no_type", 1}}, 0.3) == Step::kOther);
  CHECK(m.on_frame(json::array({1, 2}), 0.4) == Step::kOther);
  CHECK(m.received().at("other") == 3);
  CHECK(m.timeline().size() == 4);
  CHECK(m.awaited() == "agent_thinking");
  CHECK(m.after_text() == "after agent_started at 100ms");
}

TEST_CASE("event matcher: strict order fails on a skipped event and names it") {
  auto opts = golden_path();
  EventMatcher m(&opts, "run-1");
  CHECK(feed(m, {event("agent_started"), event("tool_executing", kTool)}) == Step::kFailed);
  REQUIRE(m.failure());
  CHECK(m.failure()->reason == Reason::kMissingEvent);
  CHECK(m.failure()->details.fields.at("missing_events") ==
        nlohmann::ordered_json::array({"agent_thinking"}));
  CHECK(m.failure()->message ==
        "agent_thinking (tool_executing arrived before it, at 200ms; after agent_started at "
        "100ms)");
}

TEST_CASE("event matcher: any order accepts a shuffled conversation") {
  auto opts = golden_path(/*strict=*/false);
  EventMatcher m(&opts, "run-1");
  CHECK(feed(m, {event("agent_started"), event("tool_executing", kTool),
                 event("agent_thinking")}) == Step::kProgress);
  CHECK(m.awaited() == "tool_completed");
  CHECK(m.missing() == std::vector<std::string>{"tool_completed", "agent_completed"});
  CHECK(feed(m, {event("agent_completed"), event("tool_completed", kResults)}) == Step::kDone);
}

TEST_CASE("event matcher: a missing required field is a schema failure naming event and field") {
  auto opts = golden_path();
  EventMatcher m(&opts, "run-1");
  CHECK(feed(m, {event("agent_started"), event("agent_thinking"),
                 event("tool_executing", {{"tool_args", {{"query", "canary"}}}})}) ==
        Step::kFailed);
  REQUIRE(m.failure());
  CHECK(m.failure()->reason == Reason::kSchema);
  CHECK(m.failure()->details.fields.at("missing_field") ==
        nlohmann::ordered_json{{"event", "tool_executing"}, {"field", "data.tool_name"}});
  // A null counts as missing.
  EventMatcher n(&opts, "run-1");
  CHECK(feed(n, {event("agent_started"), event("agent_thinking"),
                 event("tool_executing", {{"tool_name", nullptr}})}) == Step::kFailed);
}

TEST_CASE("event matcher: the correlation field must hold the run id") {
  auto opts = golden_path();
  opts.correlation_field = "thread_id";
  EventMatcher ok(&opts, "run-1");
  CHECK(ok.on_frame(event("agent_started"), 0.1) == Step::kProgress);
  EventMatcher wrong(&opts, "run-1");
  CHECK(wrong.on_frame(event("agent_started", json::object(), "not-run-1"), 0.1) == Step::kFailed);
  REQUIRE(wrong.failure());
  CHECK(wrong.failure()->reason == Reason::kSchema);
  CHECK(wrong.failure()->message ==
        "agent_started.thread_id is \"not-run-1\", expected the run id \"run-1\"");
  // A number is compared by its JSON text; other events are not checked.
  EventMatcher numeric(&opts, "7");
  CHECK(numeric.on_frame(json{{"type", "agent_started"}, {"thread_id", 7}}, 0.1) ==
        Step::kProgress);
  CHECK(numeric.on_frame(json{{"type", "heartbeat"}}, 0.2) == Step::kOther);
}

TEST_CASE("event matcher: a type listed twice is matched twice, in order") {
  EventMatchOptions opts;
  opts.events = {{"tool_executing", {}},
                 {"tool_completed", {}},
                 {"tool_executing", {}},
                 {"tool_completed", {}},
                 {"agent_completed", {}}};
  EventMatcher m(&opts, "run-1");
  CHECK(feed(m, {event("tool_executing"), event("tool_completed"), event("tool_executing")}) ==
        Step::kProgress);
  CHECK(m.awaited() == "tool_completed");
  CHECK(m.missing() == std::vector<std::string>{"agent_completed"});
  CHECK(feed(m, {event("tool_completed"), event("agent_completed")}) == Step::kDone);
  CHECK(m.received().at("tool_executing") == 2);
  CHECK(m.first_at()[2] == Approx(0.3));
}

TEST_CASE("event matcher: the type may be nested, and the timeline is capped") {
  EventMatchOptions opts;
  opts.type_field = "event.type";
  opts.events = {{"agent_started", {}}, {"agent_completed", {}}};
  EventMatcher m(&opts, "run-1");
  CHECK(m.on_frame(json{{"event", {{"type", "agent_started"}}}}, 0.1) == Step::kProgress);
  for (int i = 0; i < 500; ++i)
    CHECK(m.on_frame(json{{"type", "agent_completed"}}, 0.2) == Step::kOther);
  CHECK(m.timeline().size() == EventMatcher::kMaxTimeline);
  CHECK(m.received().at("other") == 500);
  CHECK(m.on_frame(json{{"event", {{"type", "agent_completed"}}}}, 0.3) == Step::kDone);
}
