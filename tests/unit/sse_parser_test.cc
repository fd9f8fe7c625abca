// The SSE parser against the WHATWG event stream interpretation: line ends,
// the BOM, field parsing, comments, id and retry, dispatch, and its bounds;
// every stream is also fed one byte at a time, which must change nothing.
#include "probes/agent_pipeline/sse_parser.h"

#include <catch2/catch.hpp>
#include <string>
#include <vector>

using canaryd::SseEvent;
using canaryd::SseLimits;
using canaryd::SseParser;
using namespace std::string_literals;

namespace {

struct Parsed {
  std::vector<SseEvent> events;
  SseParser::Error error = SseParser::Error::kNone;
  bool pending = false;
  std::optional<uint64_t> retry;
  size_t comments = 0;
};

Parsed parse_in(const std::string& stream, size_t piece, SseLimits limits) {
  SseParser p(limits);
  Parsed out;
  for (size_t i = 0; i < stream.size(); i += piece) {
    if (!p.feed(std::string_view(stream).substr(i, piece), [&](SseEvent&& e) {
          out.events.push_back(std::move(e));
          return true;
        }))
      break;
  }
  out.error = p.error();
  out.pending = p.pending();
  out.retry = p.retry_ms();
  out.comments = p.comments();
  return out;
}

// Whole, and byte by byte: the result must be the same.
Parsed parse(const std::string& stream, SseLimits limits = {}) {
  Parsed whole = parse_in(stream, stream.size() + 1, limits);
  Parsed bytes = parse_in(stream, 1, limits);
  REQUIRE(whole.events.size() == bytes.events.size());
  for (size_t i = 0; i < whole.events.size(); ++i) {
    CHECK(whole.events[i].type == bytes.events[i].type);
    CHECK(whole.events[i].data == bytes.events[i].data);
    CHECK(whole.events[i].id == bytes.events[i].id);
  }
  CHECK(whole.error == bytes.error);
  CHECK(whole.pending == bytes.pending);
  CHECK(whole.retry == bytes.retry);
  CHECK(whole.comments == bytes.comments);
  return whole;
}

}  // namespace

TEST_CASE("sse: events, types, multi-line data and the default type", "[sse]") {
  auto r = parse(
      "event: agent_started\ndata: {\"a\": 1}\n\n"
      "data: first\ndata: second\n\n"
      "data:no space\ndata:  two spaces\n\n");
  REQUIRE(r.events.size() == 3);
  CHECK(r.events[0].type == "agent_started");
  CHECK(r.events[0].data == "{\"a\": 1}");
  CHECK(r.events[1].type == "message");
  CHECK(r.events[1].data == "first\nsecond");
  CHECK(r.events[2].data == "no space\n two spaces");
  CHECK_FALSE(r.pending);
}

TEST_CASE("sse: CR, LF and CRLF line ends, mixed, and a BOM at the start only", "[sse]") {
  auto r = parse(
      "\xEF\xBB\xBF"
      "data: a\r\n\r\ndata: b\r\rdata: c\n\ndata: d\r\n\n");
  REQUIRE(r.events.size() == 4);
  CHECK(r.events[0].data == "a");
  CHECK(r.events[1].data == "b");
  CHECK(r.events[2].data == "c");
  CHECK(r.events[3].data == "d");
  // A second BOM is part of the line: its field is not "data".
  auto twice = parse(
      "\xEF\xBB\xBF\xEF\xBB\xBF"
      "data: x\n\n");
  CHECK(twice.events.empty());
  // A stream starting with part of a BOM keeps those bytes.
  auto partial = parse(
      "\xEF\xBB"
      "data: x\n\ndata: y\n\n");
  REQUIRE(partial.events.size() == 1);
  CHECK(partial.events[0].data == "y");
}

TEST_CASE("sse: comments, unknown fields, fields without a colon and empty data", "[sse]") {
  auto r = parse(":heartbeat\n: another\nfoo: bar\ndata\n\nevent: x\n\ndata:\ndata:\n\n");
  CHECK(r.comments == 2);
  // "data" alone is a data field with an empty value; "event: x" with no
  // data dispatches nothing, and its type does not carry over.
  REQUIRE(r.events.size() == 2);
  CHECK(r.events[0].data.empty());
  CHECK(r.events[0].type == "message");
  CHECK(r.events[1].data == "\n");
  CHECK(r.events[1].type == "message");
}

TEST_CASE("sse: id carries over, an id with NUL is ignored, retry takes only digits", "[sse]") {
  auto r = parse("id: 7\ndata: a\n\ndata: b\n\nid: 8\0x\ndata: c\n\nid\ndata: d\n\n"s +
                 "retry: 1500\nretry: 15x\nretry:\n");
  REQUIRE(r.events.size() == 4);
  CHECK(r.events[0].id == "7");
  CHECK(r.events[1].id == "7");
  CHECK(r.events[2].id == "7");
  CHECK(r.events[3].id.empty());
  CHECK(r.retry == 1500u);
  auto huge = parse("retry: 99999999999999999999999999\n");
  CHECK(huge.retry.has_value());
}

TEST_CASE("sse: the end of the input without a blank line dispatches nothing", "[sse]") {
  auto r = parse("data: a\n\ndata: unfinished\n");
  CHECK(r.events.size() == 1);
  CHECK(r.pending);
  CHECK(parse("data: cut in the midd").pending);
}

TEST_CASE("sse: a line or an event past its bound stops the parser", "[sse]") {
  SseLimits limits{.max_line_bytes = 16, .max_event_bytes = 32};
  auto line = parse("data: 0123456789abcdef\n\n", limits);
  CHECK(line.events.empty());
  CHECK(line.error == SseParser::Error::kLineTooLong);
  // An endless line without a line end is caught too.
  CHECK(parse(std::string(1000, 'x'), limits).error == SseParser::Error::kLineTooLong);
  auto event = parse("data: 0123456789\ndata: 0123456789\ndata: 0123456789\n\n", limits);
  CHECK(event.events.empty());
  CHECK(event.error == SseParser::Error::kEventTooLarge);
  // Within the bounds, the same event passes; the bound is per event.
  auto ok = parse("data: 0123456789\n\ndata: 0123456789\n\ndata: 0123456789\n\n", limits);
  CHECK(ok.events.size() == 3);
  CHECK(ok.error == SseParser::Error::kNone);
}

TEST_CASE("sse: on_event returning false stops the parser at that event", "[sse]") {
  SseParser p;
  int seen = 0;
  bool more = p.feed("data: 1\n\ndata: 2\n\ndata: 3\n\n", [&](SseEvent&&) { return ++seen < 2; });
  CHECK_FALSE(more);
  CHECK(seen == 2);
  CHECK(p.stopped());
  CHECK(p.error() == SseParser::Error::kNone);
  CHECK_FALSE(p.feed("data: 4\n\n", [&](SseEvent&&) { return ++seen > 0; }));
  CHECK(seen == 2);
}

// sse_fuzz: a line over max_line_bytes fed in pieces stopped with part of it
// buffered, so pending() said an event was under way where the whole stream
// said none. After an error nothing is pending, however the bytes came.
TEST_CASE("sse: fuzz finding: after an error nothing is pending, whole or in pieces", "[sse]") {
  SseLimits limits{.max_line_bytes = 16, .max_event_bytes = 64};
  std::string stream = "event: x\ndata: " + std::string(40, 'y') + "\n\n";
  for (size_t piece : {size_t{1}, size_t{8}, stream.size() + 1}) {
    Parsed got = parse_in(stream, piece, limits);
    CHECK(got.error == SseParser::Error::kLineTooLong);
    CHECK_FALSE(got.pending);
  }
}
