// The agent probe's event matcher (probes/agent_pipeline/event_matcher.*) over a
// sequence of frames, as a platform streams them after the probe's message.
// Input: one byte of options, then frames separated by '\n'. The options pick
// strict or any order, a correlation field, a list with repeated types, and a
// nested type field, so every branch of the matcher is reachable.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <string_view>

#include "base/json_path.h"
#include "probes/agent_pipeline/event_matcher.h"

namespace {

canaryd::EventMatchOptions options(uint8_t bits) {
  canaryd::EventMatchOptions o;
  o.strict = (bits & 1) != 0;
  if (bits & 2) o.correlation_field = "thread_id";
  if (bits & 8) o.type_field = "event.type";
  o.events = {{"agent_started", {}},
              {"agent_thinking", {}},
              {"tool_executing", {"data.tool_name"}},
              {"tool_completed", {"data.tool_name", "data.results"}}};
  if (bits & 4) {
    o.events.push_back({"tool_executing", {"data.tool_name"}});
    o.events.push_back({"tool_completed", {"data.results.0"}});
  }
  o.events.push_back({"agent_completed", {}});
  return o;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const canaryd::EventMatchOptions opts = options(data[0]);
  canaryd::EventMatcher m(&opts, "run-1");
  std::string_view rest(reinterpret_cast<const char*>(data + 1), size - 1);
  int frames = 0;
  double offset = 0;
  auto step = canaryd::EventMatcher::Step::kProgress;
  while (!rest.empty()) {
    size_t nl = rest.find('\n');
    std::string_view frame = rest.substr(0, nl);
    rest.remove_prefix(nl == std::string_view::npos ? rest.size() : nl + 1);
    // As the probe parses a frame: depth-bounded.
    auto doc = canaryd::parse_target_json(frame);
    if (!doc.ok()) break;  // the probe fails the run with reason protocol
    offset += 0.25;
    ++frames;
    step = m.on_frame(doc.value, offset);
    (void)m.after_text();
    if (step == canaryd::EventMatcher::Step::kFailed || step == canaryd::EventMatcher::Step::kDone)
      break;
  }
  const bool failed = step == canaryd::EventMatcher::Step::kFailed;
  if (failed != m.failure().has_value()) std::abort();
  if (failed && m.failure()->reason != canaryd::Reason::kSchema &&
      m.failure()->reason != canaryd::Reason::kMissingEvent)
    std::abort();
  if (failed && m.failure()->message.empty()) std::abort();
  int counted = 0;
  for (const auto& [type, n] : m.received()) counted += n;
  if (counted != frames || m.timeline().size() > canaryd::EventMatcher::kMaxTimeline) std::abort();
  for (const auto& t : m.first_at())
    if (t && (*t <= 0 || *t > offset)) std::abort();
  const auto missing = m.missing();
  for (const auto& type : missing)
    if (std::none_of(opts.events.begin(), opts.events.end(),
                     [&](const auto& e) { return e.type == type; }))
      std::abort();
  if (step == canaryd::EventMatcher::Step::kDone && (!missing.empty() || !m.awaited().empty()))
    std::abort();
  if (step != canaryd::EventMatcher::Step::kDone && m.awaited().empty()) std::abort();
  return 0;
}
