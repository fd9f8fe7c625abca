// The bytes of a response head, apart from the connection machine
// (http_server.cc) that writes them: the status line, the managed headers and
// the handler's own, none of which may end the head early.
#pragma once

#include <string>

#include "daemon/http_server.h"

namespace canaryd {

// The phrase of a status code ("Not Found"), or its class's for an unlisted one.
const char* reason_phrase(int status);

// RFC 9110: 204 and 304 never carry content (nor, for 204, a Content-Length).
inline bool response_has_content(int status) { return status != 204 && status != 304; }

// The head of `response`, ending with the blank line. `response` must hold a
// final status (200-599).
std::string http_response_head(const HttpResponse& response, bool keep_alive, bool http10);

}  // namespace canaryd
