// `canaryd once`: the deploy gate. Runs the chosen probes now, in parallel,
// prints their results and exits 0 if all passed, 1 if any failed, 2 if the
// config (or a --probe name) is bad.
#pragma once

#include <string>
#include <vector>

namespace canaryd {

int run_once(const std::string& config_path, const std::vector<std::string>& probe_names,
             bool json);

}  // namespace canaryd
