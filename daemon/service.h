// `canaryd run`: the long-running daemon. Wires the engine to its sinks
// (metrics, state, log), serves the HTTP endpoints from their own thread, and
// handles SIGHUP / POST /-/reload, SIGTERM and systemd notification.
#pragma once

#include <string>

namespace canaryd {

// Returns the process exit code.
int run_service(const std::string& config_path);

}  // namespace canaryd
