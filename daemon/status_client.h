// `canaryd status`: asks a running daemon for /api/v1/state and prints it for
// a person (or passes the JSON through). Exit 0: every probe passing or not
// yet run; 1: at least one failing; 2: the daemon could not be asked.
#pragma once

#include <string>

namespace canaryd {

int run_status(const std::string& base_url, bool json);

}  // namespace canaryd
