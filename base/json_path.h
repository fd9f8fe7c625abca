// JSON from targets and the dotted paths into it ("status", "data.tool_name",
// "items.0.id"), shared by the HTTP probe's JSON expectations and the agent
// pipeline's events, required fields and token step.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

namespace canaryd {

// The deepest nesting of arrays and objects accepted from a target. nlohmann's
// parser keeps its own stack on the heap, but dump(), operator== and copies
// recurse once per level, so a document nested 300,000 deep (600 KB) would
// overflow the stack wherever it is later printed or compared.
inline constexpr size_t kMaxTargetJsonDepth = 128;

// How deeply arrays and objects nest in a JSON text, counting brackets outside
// strings (escapes respected); scanning stops once the depth exceeds `limit`,
// so the result is at most limit + 1. Linear, no recursion, no allocation; it
// does not validate, so on text that is not JSON the number means little.
size_t json_nesting_depth(std::string_view text, size_t limit);

struct TargetJson {
  nlohmann::json value;  // null unless ok()
  std::string error;     // why the text was refused: not JSON, or nested too deeply
  bool ok() const { return error.empty(); }
};

// Parses a JSON text that a target sent. A document nested deeper than
// `max_depth` is refused like invalid JSON, with an error that says so. Every
// JSON text from a target goes through here, never nlohmann::json::parse.
TargetJson parse_target_json(std::string_view text, size_t max_depth = kMaxTargetJsonDepth);

// The value at `path`, or nullptr when any step is missing. Numeric steps index
// arrays.
const nlohmann::json* json_at_path(const nlohmann::json& doc, std::string_view path);

// A YAML scalar as a JSON value, typed the way YAML spells it. A quoted (or
// block) scalar is a string. A plain one follows the YAML 1.2 core schema: null
// (null, Null, NULL, ~, empty), bool (true/True/TRUE, false/False/FALSE), int
// (decimal, 0o octal, 0x hex), float (decimal, exponent, .inf, .nan), else a
// string. `plain` is yaml-cpp's node.Tag() == "?".
nlohmann::json yaml_scalar_to_json(const std::string& text, bool plain);

// Whether a JSON value from a target equals an expected value built by
// yaml_scalar_to_json: same type, numbers compared by value (5 == 5.0), so the
// string "5" never equals the number 5.
bool json_equals_expected(const nlohmann::json& value, const nlohmann::json& expected);

// A value for a message, through target_text() (it comes from the target and
// may be huge, hold a secret or a line break).
std::string json_brief(const nlohmann::json& value, size_t max_chars = 80);

// j[key] when j is an object that has it, else null: a document from another
// process or version may lack any key or hold another type there, and a read
// of it must never throw. For nlohmann::json and ordered_json alike.
template <class Json>
const Json& json_member(const Json& j, const char* key) {
  static const Json kNull;
  if (!j.is_object()) return kNull;
  auto it = j.find(key);
  return it == j.end() ? kNull : *it;
}

}  // namespace canaryd
