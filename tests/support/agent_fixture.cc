#include "tests/support/agent_fixture.h"

#include <fmt/format.h>

namespace canaryd::test {

const std::string kGoldenSend =
    "send: {json: {type: user_message, payload: {content: \"canary ping\", thread_id: "
    "\"{{run_id}}\"}}}";
const std::string kGoldenEvents =
    "events: [{type: agent_started}, {type: agent_thinking}, "
    "{type: tool_executing, required: [data.tool_name]}, "
    "{type: tool_completed, required: [data.tool_name, data.results]}, {type: agent_completed}]";

FakePlatform::Options AgentPlatform::options() const {
  FakePlatform::Options o;
  o.extra_args = {"--bypass-key", bypass_key};
  return o;
}

std::string AgentPlatform::ws(const std::string& query) const {
  return fmt::format("ws://127.0.0.1:{}/ws?{}", fp.http_port(), query);
}

std::string agent_token_step(const std::string& url, const std::string& extra,
                             const std::string& key_env) {
  return "token: {url: \"" + url + "\", headers: {X-Bypass-Key: \"${env:" + key_env +
         "}\"}, body: '{\"user\": \"canary\"}', json_path: data.token" + extra + "}";
}

std::string agent_keys(const std::vector<std::string>& keys) {
  std::string out;
  bool send = false, events = false;
  for (const auto& line : keys) {
    out += "      " + line + "\n";
    send = send || line.rfind("send:", 0) == 0;
    events = events || line.rfind("events:", 0) == 0;
  }
  if (!send) out += "      " + kGoldenSend + "\n";
  if (!events) out += "      " + kGoldenEvents + "\n";
  return out;
}

std::vector<std::string> timeline_types(const nlohmann::json& result) {
  std::vector<std::string> out;
  nlohmann::json events = detail(result, "events");
  if (events.is_array())
    for (const auto& e : events) out.push_back(e.value("type", std::string("(none)")));
  return out;
}

}  // namespace canaryd::test
