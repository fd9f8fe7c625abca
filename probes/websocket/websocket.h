// `type: websocket`: open N WebSocket connections at once over fresh TCP
// connections, check the RFC 6455 subprotocol negotiation of each, optionally
// exchange one text message, hold them open watching for an abnormal close,
// then close them with 1000.
#pragma once

#include <string_view>
#include <vector>

#include "probes/registry.h"

namespace canaryd {

std::vector<Reason> websocket_probe_reasons();
std::vector<std::string_view> websocket_probe_phases();
ProbePtr make_websocket_probe(const ProbeSpec& spec, YamlSection& section);

}  // namespace canaryd
