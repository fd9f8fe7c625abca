// ${env:NAME} / ${file:PATH} expansion of config strings. The fuzz build never
// reads a file (base/yaml_section.cc returns a fixed value under
// FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION); env lookups are real, over a few
// variables set here.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "base/secrets.h"
#include "base/yaml_section.h"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  setenv("CANARY_FUZZ_TOKEN", "s3cr3t-token-value", 1);
  setenv("CANARY_FUZZ_EMPTY", "", 1);
  setenv("CANARY_FUZZ_BRACES", "${env:CANARY_FUZZ_TOKEN}", 1);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  canaryd::Secrets secrets;
  std::string error;
  auto out = canaryd::expand_references(text, error, &secrets);
  if (!out) {
    // A resolved value never reaches an error message (unless the text itself
    // spelled it out, e.g. as the name of a second variable).
    if (error.empty() || (secrets.contains_secret(error) && !secrets.contains_secret(text)))
      std::abort();
    return 0;
  }
  // Text without a reference passes through untouched, and expansion is one
  // pass: a value that itself looks like a reference is not expanded again.
  if (text.find("${") == std::string_view::npos && *out != text) std::abort();
  // The value of a variable never survives redaction (the text may spell it
  // out itself: that is not a value from the environment).
  if (text.find("s3cr3t") == std::string_view::npos &&
      secrets.redact(*out).find("s3cr3t-token-value") != std::string::npos)
    std::abort();
  return 0;
}
