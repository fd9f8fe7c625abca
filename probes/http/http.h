// `type: http`: one HTTP(S) request per run over a fresh connection, checked
// against status, body regex and JSON field expectations.
#pragma once

#include <string_view>
#include <vector>

#include "probes/registry.h"

namespace canaryd {

std::vector<Reason> http_probe_reasons();
std::vector<std::string_view> http_probe_phases();
ProbePtr make_http_probe(const ProbeSpec& spec, YamlSection& section);

}  // namespace canaryd
