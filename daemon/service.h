// `canaryd run`: the long-running daemon. Wires the engine to its sinks
// (metrics, state, log), serves the HTTP endpoints from their own thread, and
// handles SIGHUP / POST /-/reload, SIGTERM and systemd notification.
#pragma once

#include <optional>
#include <string>
#include <utility>

#include "daemon/config.h"
#include "daemon/shard.h"

namespace canaryd {

struct ServiceOptions {
  // POST /-/reload works only with --web.enable-lifecycle (as in Prometheus):
  // anyone who can reach the port could otherwise make the daemon re-read its
  // files. SIGHUP reloads either way.
  bool enable_lifecycle = false;
  // This process's share of the config's probes (--shard, --total-shards).
  Shard shard;
  // --web.listen-address: in place of global.listen, so that shards of one
  // config can run side by side.
  std::optional<ListenAddress> listen;
  // --web.config.file: TLS and basic auth for the endpoints (web_config.h).
  std::string web_config_file;
  // Test only, hidden from --help: `--debug.stall-probe-loop AFTER FOR`
  // makes probe loop 0 block for FOR seconds, AFTER seconds after start,
  // inside a loop callback, as a stuck library call would. Nothing else can
  // stall a loop on purpose, and tests/integration/notify_test.cc needs one
  // to check that the watchdog pings stop and /-/healthy fails meanwhile.
  std::optional<std::pair<double, double>> debug_stall;
};

// Returns the process exit code.
int run_service(const std::string& config_path, const ServiceOptions& options = {});

}  // namespace canaryd
