// canaryd's command line. The verbs and exit codes are a contract (DESIGN.md):
// deploy pipelines and on-call scripts depend on them.
#include <fmt/format.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/resource.h>

#include <CLI/CLI.hpp>
#include <iostream>

#include "daemon/config.h"
#include "daemon/logging.h"
#include "daemon/once.h"
#include "daemon/service.h"
#include "daemon/status_client.h"

#ifndef CANARYD_VERSION
#define CANARYD_VERSION "dev"
#endif

namespace {

int check_config(const std::string& path) {
  auto load = canaryd::load_config_file(path);
  if (!load.config) {
    std::cerr << canaryd::global_secrets().redact(load.errors.str());
    return 1;
  }
  std::cout << fmt::format("{}: OK, {} probes\n", path, load.config->probes.size());
  return 0;
}

}  // namespace

// Each in-flight probe holds a socket; thousands of probes need more than the
// usual soft limit of 1024 descriptors.
static void raise_fd_limit() {
  rlimit lim{};
  if (getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur < lim.rlim_max) {
    lim.rlim_cur = lim.rlim_max;
    setrlimit(RLIMIT_NOFILE, &lim);
  }
}

int main(int argc, char** argv) {
  // libuv's pool runs name lookups, PostgreSQL connect steps, query cancels
  // and config parsing; its default of 4 threads is too few for hundreds of
  // database probes a second. A fixed size: threads never grow with probes.
  setenv("UV_THREADPOOL_SIZE", "8", /*overwrite=*/0);
  CLI::App app{"canaryd: synthetic monitoring for an AI chat platform", "canaryd"};
  app.set_version_flag("--version", "canaryd " CANARYD_VERSION);
  app.require_subcommand(0, 1);

  std::string config_path, log_level = "info", log_format = "text";
  auto add_log_flags = [&](CLI::App* cmd) {
    cmd->add_option("--log-level", log_level, "debug, info, warn or error")->capture_default_str();
    cmd->add_option("--log-format", log_format, "text or json")->capture_default_str();
  };
  // A bare `canaryd --config FILE` runs the daemon.
  app.add_option("--config", config_path, "config file (runs the daemon)");
  add_log_flags(&app);

  auto* run = app.add_subcommand("run", "run the daemon");
  run->add_option("--config", config_path, "config file")->required();
  add_log_flags(run);

  std::string check_path;
  auto* check = app.add_subcommand("check-config", "validate a config file (exit 0 valid, 1 not)");
  check->add_option("file", check_path, "config file")->required();

  std::vector<std::string> once_probes;
  bool once_json = false;
  auto* once = app.add_subcommand(
      "once",
      "run probes once now, as a deploy gate (exit 0 all passed, 1 any failed, 2 bad config)");
  once->add_option("--config", config_path, "config file")->required();
  once->add_option("--probe", once_probes, "probe to run (repeatable; default: all)");
  once->add_flag("--json", once_json, "print results as JSON");
  add_log_flags(once);

  std::string status_url = "http://127.0.0.1:9464";
  bool status_json = false;
  auto* status = app.add_subcommand(
      "status", "show a running daemon's state (exit 0 all passing, 1 any failing, 2 unreachable)");
  status->add_option("--url", status_url, "daemon base URL")->capture_default_str();
  status->add_flag("--json", status_json, "print the raw state JSON");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int code = app.exit(e);
    return code == 0 ? 0 : 2;
  }

  if (*check) return check_config(check_path);
  if (*status) return canaryd::run_status(status_url, status_json);

  if (auto err = canaryd::setup_logging(log_level, log_format); !err.empty()) {
    std::cerr << "canaryd: " << err << "\n";
    return 2;
  }
  raise_fd_limit();
  // A peer that closes early must cost one failed write, never the process.
  signal(SIGPIPE, SIG_IGN);
  if (*once) return canaryd::run_once(config_path, once_probes, once_json);
  if (*run || !config_path.empty()) return canaryd::run_service(config_path);
  std::cout << app.help();
  return 2;
}
