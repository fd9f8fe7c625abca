// The config loader end to end: YAML text to a validated Config, through the
// strict section reader, every probe type's factory and the alerting section.
// A bad file must come back as errors, never as an exception or a crash.
// ${file:...} reads no file in the fuzz build (base/yaml_section.cc).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "daemon/config.h"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  setenv("CANARY_FUZZ_TOKEN", "s3cr3t-token-value", 1);
  setenv("REDIS_PASSWORD", "redis-fuzz-password", 1);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string text(reinterpret_cast<const char*>(data), size);
  canaryd::ConfigLoad load = canaryd::load_config_text(text, "fuzz.yaml");
  if ((load.config == nullptr) == load.errors.empty()) std::abort();
  for (const auto& e : load.errors.list()) {
    // Every error names its file; a value from the environment never appears in one.
    if (e.file != "fuzz.yaml") std::abort();
    if (e.str().find("s3cr3t-token-value") != std::string::npos &&
        text.find("s3cr3t-token-value") == std::string::npos)
      std::abort();
  }
  if (load.config) {
    for (const auto& p : load.config->probes) {
      if (p.probe == nullptr || p.type == nullptr) std::abort();
      (void)p.probe->target();
    }
  }
  // `canaryd rules` reads the same text without the probes.
  canaryd::ConfigLoad rules =
      canaryd::load_config_text(text, "fuzz.yaml", canaryd::ConfigParts::kWithoutProbes);
  (void)rules;
  return 0;
}
