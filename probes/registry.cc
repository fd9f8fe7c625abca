#include "probes/registry.h"

#include "probes/agent_pipeline/agent_pipeline.h"
#include "probes/http/http.h"
#include "probes/postgres/postgres.h"
#include "probes/redis/redis.h"
#include "probes/websocket/websocket.h"

namespace canaryd {

const std::vector<ProbeType>& probe_types() {
  static const std::vector<ProbeType> types = {
      {"http", http_probe_reasons(), http_probe_phases(), &make_http_probe},
      {"redis", redis_probe_reasons(), redis_probe_phases(), &make_redis_probe},
      {"postgres", postgres_probe_reasons(), postgres_probe_phases(), &make_postgres_probe},
      {"websocket", websocket_probe_reasons(), websocket_probe_phases(), &make_websocket_probe},
      {"agent_pipeline", agent_pipeline_probe_reasons(), agent_pipeline_probe_phases(),
       &make_agent_pipeline_probe},
  };
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
