// Dotted paths into JSON documents ("status", "data.tool_name", "items.0.id"),
// shared by the HTTP probe's JSON expectations and the agent pipeline's
// required fields.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

namespace canaryd {

// The value at `path`, or nullptr when any step is missing. Numeric steps index
// arrays.
const nlohmann::json* json_at_path(const nlohmann::json& doc, std::string_view path);

// Whether a JSON value equals a YAML scalar as the user wrote it: strings by
// text, numbers numerically, booleans and null by their YAML spelling.
bool json_equals_scalar(const nlohmann::json& value, const std::string& expected);

// A value for a message, through target_text() (it comes from the target and
// may be huge, hold a secret or a line break).
std::string json_brief(const nlohmann::json& value, size_t max_chars = 80);

}  // namespace canaryd
