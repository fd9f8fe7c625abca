#include "base/json_path.h"

#include <fmt/format.h>

#include <charconv>
#include <cstdint>
#include <cstdlib>
#include <limits>

#include "base/secrets.h"

namespace canaryd {

size_t json_nesting_depth(std::string_view text, size_t limit) {
  size_t depth = 0;
  size_t deepest = 0;
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (in_string) {
      if (c == '\\') {
        ++i;  // the escaped character, even a quote, is part of the string
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    switch (c) {
      case '"':
        in_string = true;
        break;
      case '[':
      case '{':
        if (++depth > deepest) {
          deepest = depth;
          if (deepest > limit) return deepest;
        }
        break;
      case ']':
      case '}':
        if (depth > 0) --depth;
        break;
      default:
        break;
    }
  }
  return deepest;
}

TargetJson parse_target_json(std::string_view text, size_t max_depth) {
  TargetJson out;
  // The depth check comes first: it is linear and cheap, and a refused text is
  // never turned into a tree that something might later recurse over.
  if (json_nesting_depth(text, max_depth) > max_depth) {
    out.error = fmt::format("nested deeper than {} levels", max_depth);
    return out;
  }
  auto doc = nlohmann::json::parse(text.begin(), text.end(), nullptr, false);
  if (doc.is_discarded()) {
    out.error = "not valid JSON";
    return out;
  }
  out.value = std::move(doc);
  return out;
}

const nlohmann::json* json_at_path(const nlohmann::json& doc, std::string_view path) {
  const nlohmann::json* cur = &doc;
  size_t pos = 0;
  while (pos <= path.size()) {
    size_t dot = path.find('.', pos);
    std::string_view step = path.substr(pos, dot == std::string_view::npos ? path.npos : dot - pos);
    if (cur->is_object()) {
      auto it = cur->find(std::string(step));
      if (it == cur->end()) return nullptr;
      cur = &*it;
    } else if (cur->is_array()) {
      size_t index = 0;
      auto [ptr, ec] = std::from_chars(step.data(), step.data() + step.size(), index);
      if (ec != std::errc() || ptr != step.data() + step.size() || index >= cur->size())
        return nullptr;
      cur = &(*cur)[index];
    } else {
      return nullptr;
    }
    if (dot == std::string_view::npos) break;
    pos = dot + 1;
  }
  return cur;
}

namespace {

bool all_of(std::string_view s, bool (*pred)(char)) {
  if (s.empty()) return false;
  for (char c : s)
    if (!pred(c)) return false;
  return true;
}
bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_octal(char c) { return c >= '0' && c <= '7'; }
bool is_hex(char c) { return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }

// An unsigned integer in `base`, as a JSON number; one too large for 64 bits
// stays a number, as a double.
nlohmann::json unsigned_number(std::string_view digits, int base, bool negative) {
  uint64_t v = 0;
  auto [ptr, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), v, base);
  if (ec == std::errc() && ptr == digits.data() + digits.size()) {
    if (!negative) return v;
    if (v <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) + 1)
      return static_cast<int64_t>(0 - v);
  }
  double d = 0;
  for (char c : digits) d = d * base + (is_digit(c) ? c - '0' : (c | 0x20) - 'a' + 10);
  return negative ? -d : d;
}

// [-+]? ( \. [0-9]+ | [0-9]+ ( \. [0-9]* )? ) ( [eE] [-+]? [0-9]+ )?
bool is_core_float(std::string_view s) {
  size_t i = 0;
  if (i < s.size() && (s[i] == '-' || s[i] == '+')) ++i;
  size_t int_digits = 0, frac_digits = 0;
  while (i < s.size() && is_digit(s[i])) ++i, ++int_digits;
  if (i < s.size() && s[i] == '.') {
    ++i;
    while (i < s.size() && is_digit(s[i])) ++i, ++frac_digits;
    if (int_digits == 0 && frac_digits == 0) return false;
  } else if (int_digits == 0) {
    return false;
  }
  if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
    ++i;
    if (i < s.size() && (s[i] == '-' || s[i] == '+')) ++i;
    if (!all_of(s.substr(i), is_digit)) return false;
    i = s.size();
  }
  return i == s.size();
}

}  // namespace

nlohmann::json yaml_scalar_to_json(const std::string& text, bool plain) {
  if (!plain) return text;
  std::string_view s = text;
  if (s.empty() || s == "~" || s == "null" || s == "Null" || s == "NULL") return nullptr;
  if (s == "true" || s == "True" || s == "TRUE") return true;
  if (s == "false" || s == "False" || s == "FALSE") return false;
  if (s.size() > 2 && s.substr(0, 2) == "0o" && all_of(s.substr(2), is_octal))
    return unsigned_number(s.substr(2), 8, false);
  if (s.size() > 2 && s.substr(0, 2) == "0x" && all_of(s.substr(2), is_hex))
    return unsigned_number(s.substr(2), 16, false);
  bool sign = s[0] == '-' || s[0] == '+';
  if (all_of(s.substr(sign ? 1 : 0), is_digit))
    return unsigned_number(s.substr(sign ? 1 : 0), 10, s[0] == '-');
  if (is_core_float(s)) return std::strtod(text.c_str(), nullptr);
  std::string_view unsigned_part = s.substr(sign ? 1 : 0);
  if (unsigned_part == ".inf" || unsigned_part == ".Inf" || unsigned_part == ".INF")
    return s[0] == '-' ? -std::numeric_limits<double>::infinity()
                       : std::numeric_limits<double>::infinity();
  if (s == ".nan" || s == ".NaN" || s == ".NAN") return std::numeric_limits<double>::quiet_NaN();
  return text;
}

bool json_equals_expected(const nlohmann::json& value, const nlohmann::json& expected) {
  // Both sides are checked to be scalars of the same kind before comparing, so
  // operator== never walks a structure the target sent.
  if (expected.is_number()) return value.is_number() && value == expected;
  if (expected.is_structured() || value.type() != expected.type()) return false;
  return value == expected;
}

std::string json_brief(const nlohmann::json& value, size_t max_chars) {
  return target_text(value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace),
                     max_chars);
}

}  // namespace canaryd
