// Closing a probe loop once every probe and service on it has let go of its
// handles, including the one handle libwebsockets 4.1.6 can leave behind.
#pragma once

#include <uv.h>

#include <functional>
#include <string>

namespace canaryd {

// Runs `loop` until nothing on it is active and closes it. lws 4.1.6 can free
// a client wsi whose socket it had already closed without closing the
// uv_poll_t it allocated for it (elops_wsi_logical_close_uv returns early for
// an invalid socket), so the poll handle stays on the loop, stopped: the loop
// cannot close, and the loop's memory and the handle leak. Called when
// nothing of canaryd's is left on the loop, so a poll handle still there is
// such a watcher: it is closed and freed as lws's own close callback would.
// `warn` hears of every handle found. Returns whether the loop closed.
bool close_probe_loop(uv_loop_t* loop, const std::function<void(const std::string&)>& warn);

}  // namespace canaryd
