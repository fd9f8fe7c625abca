// libwebsockets' log, routed to spdlog, and what lws 4.1.6's log says about a
// server frame it refused: lws then closes the connection as if the server
// had dropped it, and its log line is the only place that names the
// violation.
#pragma once

#include <string_view>

namespace canaryd {

// Routes lws's log (process-wide) through canaryd's.
void install_lws_log();

// The violation the frame parser refused on this thread since the last
// take or forget, in words; empty if none. Taken at CLIENT_CLOSED.
std::string_view take_parser_complaint();
// Called at every sign of a connection carrying on, so that a complaint is
// only ever taken by the connection it was about.
void forget_parser_complaint();

}  // namespace canaryd
