// `type: tcp`: connect, optionally TLS, optionally send a text, and optionally
// read until the peer's bytes hold an expected text or match a regex. For
// services that speak a line protocol or just need to accept connections
// (SMTP banners, Memcached, a TLS port's certificate).
#pragma once

#include "probes/registry.h"

namespace canaryd {

// The type's entry in the registry (probes/registry.cc).
ProbeType tcp_probe_type();

}  // namespace canaryd
