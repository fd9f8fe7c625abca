// Levelled logging to stderr through spdlog, as text for people or as one JSON
// object per line for log shippers. Every message passes through target_text()
// first: redacted, and one line of valid UTF-8 with control characters escaped.
#pragma once

#include <string>

namespace canaryd {

// Returns an error message when `level` or `format` is not recognised.
std::string setup_logging(const std::string& level, const std::string& format);

}  // namespace canaryd
