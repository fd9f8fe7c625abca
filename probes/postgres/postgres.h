// `type: postgres`: connect with libpq's non-blocking API on the loop, run one
// query, optionally compare the first column of the first row. The host is
// resolved off the loop and handed to libpq as hostaddr; canaryd enforces the
// deadline itself and has the server cancel a query that outlives it.
#pragma once

#include <string_view>
#include <vector>

#include "probes/registry.h"

namespace canaryd {

std::vector<Reason> postgres_probe_reasons();
std::vector<std::string_view> postgres_probe_phases();
ProbePtr make_postgres_probe(const ProbeSpec& spec, YamlSection& section);

}  // namespace canaryd
