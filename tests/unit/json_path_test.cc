// JSON from targets (the depth-bounded parser), the dotted paths into it, the
// brief quoted in messages, and typed expectations (YAML scalars compared with
// JSON values), from base/json_path.h.
#include "base/json_path.h"

#include <yaml-cpp/yaml.h>

#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <string>

#include "base/secrets.h"
#include "tests/support/harness.h"

using canaryd::json_at_path;
using canaryd::json_brief;
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

TEST_CASE("JSON paths step through objects by key and arrays by decimal index", "[json]") {
  const json doc = json::parse(
      R"({"status": "ok", "data": {"tool_name": "search", "0": "key zero"},
          "items": [{"id": 7}, {"id": 8}], "": {"empty": true}, "n": null})");
  REQUIRE(json_at_path(doc, "status") != nullptr);
  CHECK(*json_at_path(doc, "status") == "ok");
  CHECK(*json_at_path(doc, "data.tool_name") == "search");
  CHECK(*json_at_path(doc, "items.0.id") == 7);
  CHECK(*json_at_path(doc, "items.1.id") == 8);
  CHECK(*json_at_path(doc, "items") == doc["items"]);
  // A number names a key in an object, an index only in an array.
  CHECK(*json_at_path(doc, "data.0") == "key zero");
  // A present null is found (a null value), unlike a missing field.
  REQUIRE(json_at_path(doc, "n") != nullptr);
  CHECK(json_at_path(doc, "n")->is_null());
  // The empty key is a key like any other.
  CHECK(*json_at_path(doc, ".empty") == true);
}

TEST_CASE("a JSON path that does not lead anywhere is missing, never an error", "[json]") {
  const json doc = json::parse(R"({"items": [{"id": 7}], "status": "ok", "n": null})");
  for (const char* path : {"missing", "items.1", "items.1.id", "items.-1", "items.+0", "items. 0",
                           "items.0x0", "items.id", "items.", "items.99999999999999999999999",
                           "status.length", "status.0", "n.x", "items.0.id.deeper", "status."}) {
    INFO(path);
    CHECK(json_at_path(doc, path) == nullptr);
  }
  // A scalar document has no fields.
  CHECK(json_at_path(json(5), "x") == nullptr);
  CHECK(json_at_path(json("text"), "") == nullptr);
}

TEST_CASE("a JSON value quoted in a message is short, one line and has no secret", "[json]") {
  CHECK(json_brief(json{{"a", 1}}) == R"({"a":1})");
  CHECK(json_brief(json("line\nbreak")) == R"("line\nbreak")");
  const std::string brief = json_brief(json(std::string(10000, 'x')));
  CHECK(brief.size() <= 80);
  CHECK(brief.find("[clipped]") != std::string::npos);
  // A control character inside a string reaches the message as an escape, never raw.
  CHECK(json_brief(json(std::string("\x1b[31m"))).find('\x1b') == std::string::npos);
  // Invalid UTF-8 from a target (possible in a value read from a non-JSON source) does not
  // throw.
  CHECK_NOTHROW(json_brief(json(std::string("\xff\xfe"))));

  const std::string secret = "json-secret-" + canaryd::test::random_token(12);
  canaryd::global_secrets().add(secret);
  CHECK(json_brief(json{{"token", secret}}) == R"({"token":"<redacted>"})");
}
