// W3C trace context ids (base/trace_context.h) and the traceparent a run's
// requests carry (RunContext::new_traceparent).
#include "base/trace_context.h"

#include <catch2/catch.hpp>
#include <regex>
#include <set>
#include <string>

#include "probes/probe.h"

using namespace canaryd;

TEST_CASE("trace ids: 32 and 16 lower-case hex digits, never zero, never repeated", "[trace]") {
  static const std::regex kTrace("[0-9a-f]{32}"), kSpan("[0-9a-f]{16}");
  std::set<std::string> traces, spans;
  for (int i = 0; i < 1000; ++i) {
    const std::string t = new_trace_id(), s = new_span_id();
    REQUIRE(std::regex_match(t, kTrace));
    REQUIRE(std::regex_match(s, kSpan));
    REQUIRE(t != std::string(32, '0'));
    REQUIRE(s != std::string(16, '0'));
    REQUIRE(is_trace_id(t));
    traces.insert(t);
    spans.insert(s);
  }
  CHECK(traces.size() == 1000);
  CHECK(spans.size() == 1000);
}

TEST_CASE("traceparent: version 00, the flags say sampled", "[trace]") {
  CHECK(traceparent("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", true) ==
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
  CHECK(traceparent("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", false) ==
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00");
}

TEST_CASE("is_trace_id and is_traceparent_header", "[trace]") {
  CHECK(is_trace_id("4bf92f3577b34da6a3ce929d0e0e4736"));
  CHECK_FALSE(is_trace_id(std::string(32, '0')));
  CHECK_FALSE(is_trace_id("4BF92F3577B34DA6A3CE929D0E0E4736"));  // the spec's hex is lower case
  CHECK_FALSE(is_trace_id("8e6d5d4105b66d1a"));                  // a run id of old
  CHECK_FALSE(is_trace_id("4bf92f3577b34da6a3ce929d0e0e473g"));
  CHECK(is_traceparent_header("traceparent"));
  CHECK(is_traceparent_header("TraceParent"));
  CHECK_FALSE(is_traceparent_header("tracestate"));
  CHECK_FALSE(is_traceparent_header("traceparent2"));
}

TEST_CASE("a run's requests: one trace, a span each", "[trace]") {
  RunContext ctx;
  ctx.run_id = new_trace_id();
  const std::string a = ctx.new_traceparent(), b = ctx.new_traceparent();
  CHECK(a.substr(0, 36) == "00-" + ctx.run_id + "-");
  CHECK(b.substr(0, 36) == a.substr(0, 36));
  CHECK(a.substr(36, 16) != b.substr(36, 16));
  CHECK(a.substr(52) == "-01");
  ctx.trace_sampled = false;
  CHECK(ctx.new_traceparent().substr(52) == "-00");
}
