// JSON from targets (the depth-bounded parser) and typed expectations (YAML
// scalars compared with JSON values), from base/json_path.h.
#include "base/json_path.h"

#include <yaml-cpp/yaml.h>

#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <string>

using canaryd::json_equals_expected;
using canaryd::json_nesting_depth;
using canaryd::kMaxTargetJsonDepth;
using canaryd::parse_target_json;
using canaryd::yaml_scalar_to_json;
using nlohmann::json;

namespace {

std::string nested(size_t depth, char open = '[', char close = ']') {
  return std::string(depth, open) + std::string(depth, close);
}

// The expectation a config line `key: <text>` gives.
json expectation(const std::string& yaml_value) {
  YAML::Node node = YAML::Load("key: " + yaml_value)["key"];
  if (node.IsNull()) return nullptr;
  return yaml_scalar_to_json(node.Scalar(), node.Tag() == "?");
}

}  // namespace

TEST_CASE("json_nesting_depth counts brackets outside strings", "[json]") {
  CHECK(json_nesting_depth("", 10) == 0);
  CHECK(json_nesting_depth("5", 10) == 0);
  CHECK(json_nesting_depth("[]", 10) == 1);
  CHECK(json_nesting_depth(R"({"a": [1, {"b": [[]]}], "c": {}})", 10) == 5);
  // Brackets in strings, escaped quotes and escaped backslashes.
  CHECK(json_nesting_depth(R"(["[[[[", "\"[[[", "\\", [{"k]": "}}}"}]])", 10) == 3);
  // Stops early: the answer is at most limit + 1 however deep the text goes.
  CHECK(json_nesting_depth(nested(1000), 10) == 11);
  CHECK(json_nesting_depth(nested(10, '{', '}'), 10) == 10);
  // Unbalanced closers do not go negative.
  CHECK(json_nesting_depth("]]]][", 10) == 1);
}

TEST_CASE("parse_target_json refuses documents nested deeper than the bound", "[json]") {
  auto at_limit = parse_target_json(nested(kMaxTargetJsonDepth));
  CHECK(at_limit.ok());
  CHECK(at_limit.value.is_array());

  auto over = parse_target_json(nested(kMaxTargetJsonDepth + 1));
  CHECK_FALSE(over.ok());
  CHECK(over.error == "nested deeper than 128 levels");
  CHECK(over.value.is_null());

  // The issue's document: 300,000 deep, 600 KB. Refused without recursion (the
  // test itself would overflow the stack if anything recursed over it).
  std::string deep = "{\"status\": " + nested(300000) + "}";
  auto refused = parse_target_json(deep);
  CHECK(refused.error == "nested deeper than 128 levels");

  // Deep text inside a string is just a string.
  auto in_string = parse_target_json("{\"s\": \"" + nested(100000) + "\"}");
  CHECK(in_string.ok());

  auto invalid = parse_target_json("{\"a\": ");
  CHECK(invalid.error == "not valid JSON");
  CHECK(parse_target_json("").error == "not valid JSON");
  CHECK(parse_target_json("[1] x").error == "not valid JSON");
  CHECK(parse_target_json("nested", 0).error == "not valid JSON");
  CHECK(parse_target_json("[]", 0).error == "nested deeper than 0 levels");
  CHECK(parse_target_json("5", 0).ok());
}

TEST_CASE("YAML scalars become JSON values by the YAML 1.2 core schema", "[json][yaml]") {
  // Quoted and block scalars are strings, whatever they spell.
  CHECK(expectation("\"5\"") == json("5"));
  CHECK(expectation("'true'") == json("true"));
  CHECK(expectation("\"null\"") == json("null"));
  CHECK(expectation("|\n  5\n") == json("5\n"));
  // Plain scalars take their type.
  CHECK(expectation("5").is_number_integer());
  CHECK(expectation("5") == json(5));
  CHECK(expectation("-7") == json(-7));
  CHECK(expectation("+7") == json(7));
  CHECK(expectation("0o17") == json(15));
  CHECK(expectation("0x1F") == json(31));
  CHECK(expectation("18446744073709551615") == json(18446744073709551615ull));
  CHECK(expectation("-9223372036854775808") == json(INT64_MIN));
  CHECK(expectation("99999999999999999999").is_number_float());
  CHECK(expectation("1.5") == json(1.5));
  CHECK(expectation(".5") == json(0.5));
  CHECK(expectation("1e3") == json(1000.0));
  CHECK(expectation("-2.5E-1") == json(-0.25));
  CHECK(std::isinf(expectation(".inf").get<double>()));
  CHECK(expectation("-.Inf").get<double>() < 0);
  CHECK(std::isnan(expectation(".NaN").get<double>()));
  for (const char* t : {"true", "True", "TRUE"}) CHECK(expectation(t) == json(true));
  for (const char* f : {"false", "False", "FALSE"}) CHECK(expectation(f) == json(false));
  for (const char* n : {"null", "Null", "NULL", "~", ""}) CHECK(expectation(n).is_null());
  // Not core-schema spellings: strings.
  for (const char* s :
       {"yes", "on", "tRUE", "0x", "0o8", "1_000", "1.2.3", "e5", ".", "healthy", "0b101"}) {
    INFO(s);
    CHECK(expectation(s) == json(s));
  }
}

TEST_CASE("JSON values equal expectations of the same type only", "[json]") {
  CHECK(json_equals_expected(json("5"), expectation("\"5\"")));
  CHECK_FALSE(json_equals_expected(json("5"), expectation("5")));
  CHECK_FALSE(json_equals_expected(json(5), expectation("\"5\"")));
  CHECK(json_equals_expected(json(5), expectation("5")));
  CHECK(json_equals_expected(json(5), expectation("5.0")));
  CHECK(json_equals_expected(json(5.0), expectation("5")));
  CHECK(json_equals_expected(json(31), expectation("0x1F")));
  CHECK_FALSE(json_equals_expected(json(5.5), expectation("5")));
  CHECK(json_equals_expected(json(true), expectation("true")));
  CHECK_FALSE(json_equals_expected(json("true"), expectation("true")));
  CHECK_FALSE(json_equals_expected(json(true), expectation("'true'")));
  CHECK(json_equals_expected(json(nullptr), expectation("null")));
  CHECK(json_equals_expected(json(nullptr), expectation("~")));
  CHECK_FALSE(json_equals_expected(json("null"), expectation("null")));
  CHECK_FALSE(json_equals_expected(json(nullptr), expectation("'null'")));
  CHECK_FALSE(json_equals_expected(json(nullptr), expectation("0")));
  CHECK_FALSE(json_equals_expected(json::array(), expectation("'[]'")));
  CHECK_FALSE(json_equals_expected(json::object(), expectation("'{}'")));
  // NaN equals nothing, not even a NaN (a JSON text cannot hold one anyway).
  CHECK_FALSE(json_equals_expected(json(std::nan("")), expectation(".nan")));
}
