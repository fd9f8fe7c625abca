// `type: dns`: one query for a name's records of one type, straight to a
// resolver (the configured one, or /etc/resolv.conf's), over UDP or TCP, on
// the loop with c-ares; checks the response code and the answers.
#pragma once

#include "probes/registry.h"

namespace canaryd {

// The type's entry in the registry (probes/registry.cc).
ProbeType dns_probe_type();

}  // namespace canaryd
