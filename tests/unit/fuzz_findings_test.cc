// One regression test per finding of the libFuzzer targets in fuzz/ (each
// crashing input is also in that target's seed corpus, fuzz/corpus/).
#include <catch2/catch.hpp>
#include <chrono>

#include "daemon/yaml_section.h"

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
