#include "probes/common/ws_lws_log.h"

#include <libwebsockets.h>
#include <spdlog/spdlog.h>

#include <string>
#include <utility>

namespace canaryd {

namespace {

// What lws 4.1.6's client frame parser says when it refuses a server frame,
// and what that means. lws then drops the connection without a word to us
// (CLIENT_CLOSED, as for a dropped TCP connection), and its log line is the
// only place that names the violation.
struct ParserComplaint {
  std::string_view line;
  std::string_view meaning;
};
constexpr ParserComplaint kParserComplaints[] = {
    {"illegal opcode", "the server sent a frame with an invalid opcode"},
    {"illegal rsv bits set",
     "the server sent a frame with RSV bits set (no extension was negotiated)"},
    {"Control frame asking for extended length is illegal",
     "the server sent a control frame (ping, pong or close) of more than 125 bytes"},
    {"b63 of length must be zero",
     "the server sent a frame length of 2^63 bytes or more (the top bit of the 64-bit length is "
     "set)"},
    {"disordered continuation", "the server sent a continuation frame with no message to continue"},
    {"hey you owed us a FIN",
     "the server started a new message before it finished the fragmented one"},
    {"control msg can't be fragmented", "the server sent a fragmented control frame"},
};

// The parser runs on the loop's thread and closes the connection in the same
// call, so the complaint waits here for that connection's CLIENT_CLOSED. lws
// formats log lines in one static buffer (LWS_MAX_SMP 1), so with several
// loops a line can be garbled: then the violation goes unnamed, never
// misnamed, and the socket's state still tells it from a drop.
thread_local std::string_view t_parser_complaint;

void lws_log(int level, const char* line) {
  std::string_view text(line);
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.remove_suffix(1);
  if (level & (LLL_INFO | LLL_WARN)) {
    for (const auto& c : kParserComplaints)
      if (text == c.line) t_parser_complaint = c.meaning;
  }
  // lws reports every refused upgrade and failed certificate as an error;
  // for a monitor those are results, already reported as such.
  if (level & LLL_ERR)
    spdlog::debug("libwebsockets: {}", text);
  else if (spdlog::should_log(spdlog::level::trace))
    spdlog::trace("libwebsockets: {}", text);
}

}  // namespace

void install_lws_log() {
  // LLL_INFO: the frame parser names most protocol violations at info level.
  lws_set_log_level(LLL_ERR | LLL_WARN | LLL_INFO, &lws_log);
}

std::string_view take_parser_complaint() { return std::exchange(t_parser_complaint, {}); }

void forget_parser_complaint() { t_parser_complaint = {}; }

}  // namespace canaryd
