// The `agent_pipeline:` section: what one conversation sends, which events it
// expects, and the optional token step before it. Parsed once at config load;
// the probe (agent_pipeline.cc) only reads it.
#pragma once

#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "base/yaml_section.h"
#include "probes/agent_pipeline/event_matcher.h"
#include "probes/common/http_call.h"
#include "probes/common/ws_client.h"

namespace canaryd {

// How many conversations one run may hold open at once.
inline constexpr int64_t kMaxAgentSessions = 1000;

struct TokenStep {
  HttpCallOptions http;
  std::string json_path;
  Duration cache_for{0};
};

enum class AgentTransport { kWebSocket, kSse };

// `transport: sse`: the message is an HTTP POST and the events come back as
// a text/event-stream response (probes/agent_pipeline/sse_transport.*).
struct SseOptions {
  std::string url;
  std::string display_url;  // scheme, host, port and path: for target()
  bool https = false;
  std::vector<std::pair<std::string, std::string>> headers;  // values may hold {{token}}
  bool headers_use_token = false;
  std::string ca_file;
  bool insecure_skip_verify = false;
  // event_type_from: the SSE `event:` field (false) or type_field in the
  // JSON of `data:` (true).
  bool type_from_data = false;
  std::string end_event;                // an event of this type ends the run
  std::optional<std::string> end_data;  // a `data:` payload equal to this ends the run
  size_t max_line_bytes = 64 * 1024;
  size_t max_event_bytes = 1024 * 1024;
  size_t max_total_bytes = 16 * 1024 * 1024;
};

// The matching options (type_field, correlation_field, strict, events) are
// the base: the event matcher reads them.
struct AgentOptions : EventMatchOptions {
  AgentTransport transport = AgentTransport::kWebSocket;
  std::shared_ptr<WsEndpoint> endpoint = std::make_shared<WsEndpoint>();
  SseOptions sse;
  bool endpoint_uses_token = false;
  std::optional<TokenStep> token;
  std::optional<nlohmann::json> send_json;  // template: strings may hold {{run_id}}, {{token}}
  std::string send_text;
  Duration first_event_timeout = std::chrono::seconds(35);
  Duration idle_timeout = std::chrono::seconds(35);
  int sessions = 1;
};

// The section's options, or nullopt after recording each error in `s`.
std::optional<AgentOptions> read_agent_options(YamlSection& s);

// The send template with {{run_id}} and {{token}} filled in every string.
nlohmann::json fill_json(const nlohmann::json& tmpl, const std::string& run_id,
                         const std::string& token);

}  // namespace canaryd
