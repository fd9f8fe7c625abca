// `transport: sse` of `type: agent_pipeline`: the message goes out as an HTTP
// POST of the `send.json` template, and the agent's events come back in the
// response, a text/event-stream, read on the loop through the shared libcurl
// multi handle as they arrive. The events are checked by the same matcher as
// the WebSocket transport's frames; an optional end sentinel (an event type,
// or a literal `data:` payload such as OpenAI's `[DONE]`) ends the run.
#pragma once

#include "probes/agent_pipeline/agent_options.h"
#include "probes/probe.h"

namespace canaryd {

// `series`: the agent type's per-event phases and counters for `opts`.
ProbePtr make_sse_agent_probe(AgentOptions opts, Probe::Series series);

}  // namespace canaryd
