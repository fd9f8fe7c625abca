// Dotted JSON paths ("data.tool_name", "items.0.id") over target documents, as
// the HTTP probe's json expectations and the agent probe's required fields use
// them. Input: the path, a newline, then the document.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "base/json_path.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  size_t nl = in.find('\n');
  if (nl == std::string_view::npos) return 0;
  std::string_view path = in.substr(0, nl);
  std::string_view text = in.substr(nl + 1);
  // As the probes parse it: depth-bounded, since the document is the target's.
  auto parsed = canaryd::parse_target_json(text);
  if (!parsed.ok()) return 0;
  const nlohmann::json* v = canaryd::json_at_path(parsed.value, path);
  if (v == nullptr) return 0;
  std::string brief = canaryd::json_brief(*v, 80);
  if (brief.size() > 83) std::abort();  // 80 characters and "..."
  // The path's last step doubles as the expected scalar, typed as YAML would.
  std::string expected(
      path.substr(path.rfind('.') == std::string_view::npos ? 0 : path.rfind('.') + 1));
  (void)canaryd::json_equals_expected(*v, canaryd::yaml_scalar_to_json(expected, true));
  return 0;
}
