// `canaryd once`: the deploy gate. Runs the chosen probes now, in parallel,
// prints their results and exits 0 if all passed, 1 if any failed, 2 if the
// config (or a --probe name) is bad, or the --junit report cannot be written.
#pragma once

#include <string>
#include <vector>

namespace canaryd {

struct OnceOptions {
  std::vector<std::string> probes;  // empty: all
  bool json = false;
  std::string junit_path;  // "": no JUnit XML report (daemon/junit.h)
};

int run_once(const std::string& config_path, const OnceOptions& options);

}  // namespace canaryd
