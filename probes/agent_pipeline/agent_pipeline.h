// `type: agent_pipeline`: the users' golden path as a scripted conversation.
// An optional HTTP token step, a WebSocket connection with the same
// negotiation checks as `type: websocket` (and the same client code), one
// message sent from a JSON template, then the stream of agent events checked
// for presence, order, required fields, correlation and timing.
#pragma once

#include <string_view>
#include <vector>

#include "probes/registry.h"

namespace canaryd {

// The type's entry in the registry (probes/registry.cc).
ProbeType agent_pipeline_probe_type();

}  // namespace canaryd
