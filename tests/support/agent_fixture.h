// What the agent_pipeline tests share: the fake platform with a bypass key,
// the golden-path message and events, the token step, and a reading of a
// result's event timeline.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "tests/support/harness.h"

namespace canaryd::test {

// A FakePlatform started with a bypass key, so that /auth/token answers only a
// request carrying it (X-Bypass-Key). Tests keep one in a function-local static.
struct AgentPlatform {
  std::string bypass_key = "bypassKEY" + random_token(24);
  FakePlatform fp{options()};
  FakePlatform::Options options() const;
  // The agent WebSocket endpoint; query without the '?'.
  std::string ws(const std::string& query) const;
  // The environment a probe's ${env:AGENT_BYPASS_KEY} reads the key from.
  std::vector<std::string> env() const { return {"AGENT_BYPASS_KEY=" + bypass_key}; }
};

// The golden path's message (thread_id is the run id) and its five events.
extern const std::string kGoldenSend;
extern const std::string kGoldenEvents;

// A token step (one flow-style line under agent_pipeline:) against the
// fixture, sending the bypass key from the environment variable key_env.
std::string agent_token_step(const std::string& url, const std::string& extra = "",
                             const std::string& key_env = "AGENT_BYPASS_KEY");

// The lines under agent_pipeline: for `keys`, indented, plus the golden-path
// send: and events: unless keys has its own.
std::string agent_keys(const std::vector<std::string>& keys);

// The event types of a result's details.events timeline, in arrival order.
std::vector<std::string> timeline_types(const nlohmann::json& result);

}  // namespace canaryd::test
