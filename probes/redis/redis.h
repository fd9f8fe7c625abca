// `type: redis`: connect, AUTH if configured, SELECT if configured, PING
// expecting PONG, and optionally check the server's role. RESP over a libuv
// TCP handle; the name is resolved off the loop.
#pragma once

#include <string_view>
#include <vector>

#include "probes/registry.h"

namespace canaryd {

std::vector<Reason> redis_probe_reasons();
std::vector<std::string_view> redis_probe_phases();
ProbePtr make_redis_probe(const ProbeSpec& spec, YamlSection& section);

}  // namespace canaryd
