// `type: redis`: connect, AUTH if configured, SELECT if configured, PING
// expecting PONG, and optionally check the server's role. RESP over a libuv
// TCP handle; the name is resolved off the loop.
#pragma once

#include <string_view>
#include <vector>

#include "probes/registry.h"

namespace canaryd {

// The type's entry in the registry (probes/registry.cc).
ProbeType redis_probe_type();

}  // namespace canaryd
