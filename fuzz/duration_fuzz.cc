// Durations as users write them in the config ("500ms", "1m30s", "1.5s").
// Beyond not crashing: whatever parses must print back to text that parses to
// the same value, since errors quote durations through format_duration().
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "base/yaml_section.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto d = canaryd::parse_duration(text);
  if (!d) return 0;
  if (d->count() < 0) std::abort();
  std::string printed = canaryd::format_duration(*d);
  auto again = canaryd::parse_duration(printed);
  if (!again || *again != *d) std::abort();
  return 0;
}
