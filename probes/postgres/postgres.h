// `type: postgres`: connect with libpq's non-blocking API on the loop, run one
// query, optionally compare the first column of the first row. The host is
// resolved off the loop and handed to libpq as hostaddr; canaryd enforces the
// deadline itself and has the server cancel a query that outlives it.
#pragma once

#include <string_view>
#include <vector>

#include "probes/registry.h"

namespace canaryd {

// The type's entry in the registry (probes/registry.cc).
ProbeType postgres_probe_type();

}  // namespace canaryd
