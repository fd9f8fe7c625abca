// `type: http`: one HTTP(S) request per run over a fresh connection, checked
// against status, body regex and JSON field expectations.
#pragma once

#include <string_view>
#include <vector>

#include "probes/registry.h"

namespace canaryd {

// The type's entry in the registry (probes/registry.cc).
ProbeType http_probe_type();

}  // namespace canaryd
