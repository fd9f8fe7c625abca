// `type: websocket`: open N WebSocket connections at once over fresh TCP
// connections, check the RFC 6455 subprotocol negotiation of each, optionally
// exchange one text message, hold them open watching for an abnormal close,
// then close them with 1000.
#pragma once

#include <string_view>
#include <vector>

#include "probes/registry.h"

namespace canaryd {

// The type's entry in the registry (probes/registry.cc).
ProbeType websocket_probe_type();

}  // namespace canaryd
