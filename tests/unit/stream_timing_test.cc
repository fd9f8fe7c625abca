// The agent's stream timing (probes/agent_pipeline/stream_timing.*) from
// made-up offsets, and its histograms as /metrics shows them in each
// metrics.detail.
#include "probes/agent_pipeline/stream_timing.h"

#include <algorithm>
#include <catch2/catch.hpp>
#include <string>

#include "daemon/config.h"
#include "daemon/probe_book.h"
#include "daemon/probe_metrics.h"
#include "probes/registry.h"

using canaryd::ProbeDetails;
using canaryd::StreamTiming;

namespace {

std::string agent_config(const std::string& detail) {
  return R"(
probes:
  - name: agent
    type: agent_pipeline
    metrics: {detail: )" +
         detail + R"(}
    agent_pipeline:
      websocket: {url: "ws://127.0.0.1:1/ws"}
      send: {text: ping}
      events: [{type: agent_started}]
)";
}

// The line of `name` (with its labels) in `text`, or "".
std::string line_of(const std::string& text, const std::string& start) {
  size_t at = text.find("\n" + start);
  if (at == std::string::npos) return "";
  size_t end = text.find('\n', at + 1);
  return text.substr(at + 1, end - at - 1);
}

double value_of(const std::string& line) { return std::stod(line.substr(line.rfind(' ') + 1)); }

}  // namespace

TEST_CASE("stream timing: first event and gaps from the offsets") {
  StreamTiming t;
  for (double offset : {0.05, 0.07, 0.09, 0.2}) t.on_event(offset);
  CHECK(t.events() == 4);
  CHECK(*t.first() == Approx(0.05));
  CHECK(t.max_gap() == Approx(0.11));
  // Three events after the first in 0.15 s.
  CHECK(*t.rate() == Approx(20));
  ProbeDetails d;
  t.report(d);
  CHECK(d.fields["event_count"] == 4);
  CHECK(d.fields["first_event_seconds"].get<double>() == Approx(0.05));
  CHECK(d.fields["max_gap_seconds"].get<double>() == Approx(0.11));
  CHECK(d.fields["events_per_second"].get<double>() == Approx(20));
  const auto& gaps = d.observed.at("event_gap_seconds");
  REQUIRE(gaps.counts.size() == canaryd::kGapBounds.size() + 1);
  CHECK(gaps.counts[2] == 2);  // 0.02 s twice: le 0.025
  CHECK(gaps.counts[5] == 1);  // 0.11 s: le 0.25
  CHECK(gaps.sum == Approx(0.15));
}

TEST_CASE("stream timing: no event or one event reports what it can") {
  ProbeDetails d;
  StreamTiming none;
  none.report(d);
  CHECK(d.fields["event_count"] == 0);
  CHECK_FALSE(d.fields.contains("first_event_seconds"));
  CHECK_FALSE(d.fields.contains("max_gap_seconds"));
  CHECK_FALSE(d.fields.contains("events_per_second"));
  CHECK(d.observed.empty());
  StreamTiming one;
  one.on_event(1.5);
  one.report(d);
  CHECK(d.fields["event_count"] == 1);
  CHECK(d.fields["first_event_seconds"].get<double>() == Approx(1.5));
  CHECK_FALSE(d.fields.contains("max_gap_seconds"));
  CHECK_FALSE(d.fields.contains("events_per_second"));
  CHECK(d.observed.empty());
}

TEST_CASE("stream timing: sessions merge into the slowest first event and every gap") {
  StreamTiming a, b;
  for (double offset : {0.1, 0.2, 0.3}) a.on_event(offset);
  for (double offset : {0.4, 1.4}) b.on_event(offset);
  a.merge(b);
  CHECK(a.events() == 5);
  CHECK(*a.first() == Approx(0.4));
  CHECK(a.max_gap() == Approx(1.0));
  // Three gaps over 1.2 s of streaming in all.
  CHECK(*a.rate() == Approx(2.5));
  // A gap that went backwards (never from a monotonic clock) counts as 0.
  StreamTiming odd;
  odd.on_event(0.5);
  odd.on_event(0.4);
  CHECK(odd.max_gap() == 0);
}

TEST_CASE("stream timing: the histograms in full and in basic detail") {
  for (const std::string detail : {"full", "basic"}) {
    INFO(detail);
    auto load = canaryd::load_config_text(agent_config(detail), "t.yaml");
    REQUIRE(load.config);
    canaryd::ProbeBook book;
    book.install({&load.config->probes[0]}, {}, 3);
    std::string before;
    canaryd::render_probe_metrics({&book}, before);
    // Present at 0 before any run, so rate() works from the first scrape.
    CHECK(value_of(line_of(before, "canary_agent_event_gap_seconds_count{")) == 0);
    CHECK(value_of(line_of(before, "canary_agent_first_event_seconds_count{")) == 0);
    CHECK(line_of(before, "canary_agent_stream_events{").empty());

    StreamTiming t;
    for (double offset : {0.3, 0.32, 0.34, 0.7, 12.7}) t.on_event(offset);
    auto result = canaryd::ProbeResult::ok();
    t.report(result.details);
    const auto& spec = load.config->probes[0].spec;
    std::string target = "t";
    book.record({spec, target, result, "run", 13.0, canaryd::WallTime{}});
    std::string text;
    canaryd::render_probe_metrics({&book}, text);
    INFO(text);
    const std::string labels = R"({category="default",probe="agent",type="agent_pipeline"})";
    auto bucket = [&](const std::string& family, const std::string& le) {
      std::string l = labels;
      l.insert(l.size() - 1, ",le=\"" + le + "\"");
      return value_of(line_of(text, family + "_bucket" + l));
    };
    // Gaps: 0.02, 0.02, 0.36 and 12 s; 0.05 and 10 are bounds in both details.
    CHECK(bucket("canary_agent_event_gap_seconds", "0.05") == 2);
    CHECK(bucket("canary_agent_event_gap_seconds", "10") == 3);
    CHECK(bucket("canary_agent_event_gap_seconds", "+Inf") == 4);
    CHECK(value_of(line_of(text, "canary_agent_event_gap_seconds_sum" + labels)) == Approx(12.4));
    CHECK(bucket("canary_agent_first_event_seconds", "0.25") == 0);
    CHECK(bucket("canary_agent_first_event_seconds", "1") == 1);
    CHECK(value_of(line_of(text, "canary_agent_stream_events" + labels)) == 5);
    CHECK(value_of(line_of(text, "canary_agent_stream_events_per_second" + labels)) ==
          Approx(4 / 12.4));
    // basic keeps fewer buckets: no le="0.025" there.
    bool fine =
        text.find(
            R"(canary_agent_event_gap_seconds_bucket{category="default",probe="agent",type="agent_pipeline",le="0.025"})") !=
        std::string::npos;
    CHECK(fine == (detail == "full"));
  }
}

TEST_CASE("every histogram a type declares has ascending bounds and basic bounds among them") {
  for (const auto& type : canaryd::probe_types()) {
    for (const auto& m : type.metrics) {
      if (m.kind != canaryd::TypeMetric::Kind::kHistogram) continue;
      INFO(m.name);
      CHECK_FALSE(m.bounds.empty());
      CHECK(std::is_sorted(m.bounds.begin(), m.bounds.end()));
      CHECK(std::adjacent_find(m.bounds.begin(), m.bounds.end()) == m.bounds.end());
      // Counts are merged into basic's buckets, never split: each basic
      // bound must be a full one.
      for (double b : m.basic_bounds) {
        INFO(b);
        CHECK(std::find(m.bounds.begin(), m.bounds.end(), b) != m.bounds.end());
      }
      // The alerts' default thresholds are bounds in both details.
      for (const auto& a : type.alerts) {
        if (a.metric != m.name) continue;
        CHECK(std::find(m.bounds.begin(), m.bounds.end(), a.threshold) != m.bounds.end());
        CHECK(std::find(m.basic_bounds.begin(), m.basic_bounds.end(), a.threshold) !=
              m.basic_bounds.end());
      }
    }
  }
}
