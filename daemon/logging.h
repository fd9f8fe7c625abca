// Levelled logging to stderr through spdlog, as text for people or as one JSON
// object per line for log shippers. Every message passes through the secrets
// redactor first.
#pragma once

#include <string>

namespace canaryd {

// Returns an error message when `level` or `format` is not recognised.
std::string setup_logging(const std::string& level, const std::string& format);

}  // namespace canaryd
