// One regression test per finding of the libFuzzer targets in fuzz/ (each
// crashing input is also in that target's seed corpus, fuzz/corpus/).
#include <fmt/format.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <string>

#include "base/yaml_section.h"
#include "daemon/config.h"
#include "daemon/probe_state_codec.h"

using namespace std::chrono_literals;

// duration_fuzz: "2221911ms" printed as "2221.91s" ({:g} keeps six digits),
// which reads back as 2221910ms: an error message misquoted the user's value.
TEST_CASE("fuzz finding: a duration prints every millisecond and reads back the same") {
  CHECK(canaryd::format_duration(2221911ms) == "2221.911s");
  CHECK(canaryd::parse_duration(canaryd::format_duration(2221911ms)) == 2221911ms);
  CHECK(canaryd::format_duration(1500ms) == "1.5s");
  CHECK(canaryd::format_duration(61050ms) == "61.05s");
  CHECK(canaryd::format_duration(86'400'001ms) == "86400.001s");
}

namespace {

std::string config_errors(const std::string& send) {
  auto load = canaryd::load_config_text(R"(
probes:
  - name: agent
    type: agent_pipeline
    agent_pipeline:
      websocket: {url: "ws://127.0.0.1:1/ws"}
      events: [{type: agent_started}]
      send: )" + send + "\n",
                                        "t.yaml");
  CHECK(load.config == nullptr);
  return load.errors.str();
}

}  // namespace

// config_fuzz: a mapping key in the message template (`{[a, b]: 1}` is valid
// YAML) threw YAML::TypedBadConversion out of the loader: check-config and a
// reload died on an uncaught exception.
TEST_CASE("fuzz finding: a template key that is not a plain name is a config error") {
  CHECK(config_errors("{json: {[a, b]: 1}}") ==
        "t.yaml:8: probes[0].agent_pipeline.send.json: keys must be plain names\n");
  CHECK(config_errors("{json: {? {a: 1} : 1}}").find("keys must be plain names") !=
        std::string::npos);
}

// config_fuzz: an alias inside its own anchor (`&a [*a]`) made the template
// endless and overflowed the stack; aliases of aliases made it exponential.
TEST_CASE("fuzz finding: a template alias cycle or alias bomb is a config error") {
  CHECK(config_errors("{json: &a [*a]}").find("send.json: nested deeper than 64 levels") !=
        std::string::npos);
  std::string bomb = "{json: {a: &a [x, x, x, x, x, x, x, x, x, x]";
  for (char c = 'b'; c <= 'k'; ++c)
    bomb += fmt::format(", {0}: &{0} [*{1}, *{1}, *{1}, *{1}, *{1}, *{1}, *{1}, *{1}, *{1}, *{1}]",
                        c, static_cast<char>(c - 1));
  bomb += "}}";
  CHECK(config_errors(bomb).find("more than 10000 values") != std::string::npos);
  // A template of ordinary size still loads.
  auto ok = canaryd::load_config_text(R"(
probes:
  - name: agent
    type: agent_pipeline
    agent_pipeline:
      websocket: {url: "ws://127.0.0.1:1/ws"}
      events: [{type: agent_started}]
      send: {json: {type: user_message, payload: {content: "canary ping", n: [1, 2, {x: null}]}}}
)",
                                      "t.yaml");
  CHECK(ok.errors.str() == "");
  CHECK(ok.config != nullptr);
}

// state_codec_fuzz: a saved "failing since" of 1796630796630399000 ms was
// turned into system_clock nanoseconds, past their range (undefined
// behaviour). A time canaryd could not have written now refuses the entry.
TEST_CASE("fuzz finding: a saved time beyond 2200 is refused, not overflowed") {
  canaryd::ProbeBook::Entry e;
  e.history_limit = 20;
  const std::string ok =
      R"({"version":1,"last":null,"history":[],"failing_since_ms":1796630400000,)"
      R"("passing_since_ms":null,"last_success_ms":null,"consecutive_failures":1})";
  REQUIRE(canaryd::decode_probe_state(ok, e));
  CHECK(e.failing_since.has_value());
  std::string bad = ok;
  bad.replace(bad.find("1796630400000"), 13, "1796630796630399000");
  canaryd::ProbeBook::Entry fresh;
  fresh.history_limit = 20;
  CHECK_FALSE(canaryd::decode_probe_state(bad, fresh));
  CHECK_FALSE(fresh.failing_since.has_value());
}
