#include "probes/common/json_path.h"

#include <charconv>
#include <cmath>
#include <cstdlib>

#include "daemon/secrets.h"

namespace canaryd {

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

bool json_equals_scalar(const nlohmann::json& value, const std::string& expected) {
  if (value.is_string()) return value.get_ref<const std::string&>() == expected;
  if (value.is_boolean()) return (value.get<bool>() ? "true" : "false") == expected;
  if (value.is_null()) return expected == "null" || expected == "~" || expected.empty();
  if (value.is_number()) {
    char* end = nullptr;
    double want = std::strtod(expected.c_str(), &end);
    if (end == expected.c_str() || *end != '\0') return false;
    double got = value.get<double>();
    return got == want || std::fabs(got - want) <= 1e-9 * std::fabs(want);
  }
  return false;
}

std::string json_brief(const nlohmann::json& value, size_t max_chars) {
  return target_text(value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace),
                     max_chars);
}

}  // namespace canaryd
