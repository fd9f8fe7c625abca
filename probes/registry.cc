#include "probes/registry.h"

#include "probes/agent_pipeline/agent_pipeline.h"
#include "probes/dns/dns.h"
#include "probes/http/http.h"
#include "probes/postgres/postgres.h"
#include "probes/redis/redis.h"
#include "probes/tcp/tcp.h"
#include "probes/websocket/websocket.h"

namespace canaryd {

const std::vector<ProbeType>& probe_types() {
  // The one list of probe types: adding a type is one line here.
  // clang-format off
  static const std::vector<ProbeType> types = {
      http_probe_type(),
      redis_probe_type(),
      postgres_probe_type(),
      websocket_probe_type(),
      agent_pipeline_probe_type(),
      tcp_probe_type(),
      dns_probe_type(),
  };
  // clang-format on
  return types;
}

const ProbeType* find_probe_type(std::string_view name) {
  for (const auto& t : probe_types()) {
    if (t.name == name) return &t;
  }
  return nullptr;
}

std::string probe_type_names() {
  std::string out;
  for (const auto& t : probe_types()) {
    if (!out.empty()) out += ", ";
    out += t.name;
  }
  return out;
}

}  // namespace canaryd
