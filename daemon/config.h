// The daemon's configuration: global settings plus the list of probes, each
// already built by its type's factory. Loading validates everything before
// anything is used, so a bad file never half-applies.
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "base/secrets.h"
#include "base/yaml_section.h"
#include "daemon/alerting.h"
#include "daemon/defaults.h"
#include "probes/registry.h"

namespace canaryd {

struct ListenAddress {
  std::string host;  // numeric IPv4 or IPv6 literal
  int port = 0;
  std::string str() const;
};

struct GlobalConfig {
  ListenAddress listen;
  std::vector<std::pair<std::string, std::string>> labels;  // added to every series
  Duration default_interval;
  Duration default_timeout;
  int state_history;         // results kept per probe for the state API
  int workers = 1;           // probe loops (daemon/worker.h); by default usable_cpus()
  std::string state_file;    // "" (default): no state is kept across restarts
  int default_attempts = 1;  // global.defaults.retries: off by default
  // global.metrics: every probe's unless it sets its own.
  // basic: what a deployment of hundreds of probes can afford (docs/metrics.md).
  ProbeSpec::MetricsDetail default_detail = ProbeSpec::MetricsDetail::kBasic;
  std::vector<double> default_buckets;
  Duration default_retry_delay{0};
  bool trace_sampled = defaults::kTraceSampled;  // global.tracing.sampled
};

struct ConfiguredProbe {
  ProbeSpec spec;
  const ProbeType* type = nullptr;
  ProbePtr probe;
  std::string target;  // display form, secrets already redacted
};

struct Config {
  std::string file;
  GlobalConfig global;
  AlertingConfig alerting = default_alerting();
  std::vector<ConfiguredProbe> probes;
  Secrets secrets;  // every value expanded from ${env:..}/${file:..}
  // Valid but likely wrong; check-config prints them, a (re)load logs them.
  std::vector<ConfigError> warnings;
};

struct ConfigLoad {
  std::unique_ptr<Config> config;  // null when errors is not empty
  ConfigErrors errors;
};

// kWithoutProbes reads only global: and alerting: (for `canaryd rules`, which
// must not need the probes' secrets).
enum class ConfigParts { kAll, kWithoutProbes };

// Neither throws: every problem, odd YAML included, is an error in the result.
// Reading the file and its ${file:} secrets is bounded in time
// (BoundedFileReader::kReadBudget in all); `cancel` turning true ends a read
// that is waiting at once.
ConfigLoad load_config_file(const std::string& path, ConfigParts parts = ConfigParts::kAll,
                            const std::atomic<bool>* cancel = nullptr);
// `file_name` is what errors call the source.
ConfigLoad load_config_text(const std::string& text, const std::string& file_name,
                            ConfigParts parts = ConfigParts::kAll,
                            const std::atomic<bool>* cancel = nullptr);

std::optional<ListenAddress> parse_listen_address(std::string_view text);

}  // namespace canaryd
