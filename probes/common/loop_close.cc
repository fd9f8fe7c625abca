#include "probes/common/loop_close.h"

#include <fmt/format.h>

#include <cstdlib>
#include <vector>

namespace canaryd {

namespace {

std::vector<uv_handle_t*> open_handles(uv_loop_t* loop) {
  std::vector<uv_handle_t*> out;
  uv_walk(
      loop,
      [](uv_handle_t* h, void* arg) { static_cast<std::vector<uv_handle_t*>*>(arg)->push_back(h); },
      &out);
  return out;
}

// "a poll handle (descriptor 12, active 0, closing 0)"
std::string describe(uv_handle_t* h) {
  uv_os_fd_t fd = -1;
  std::string fd_text = uv_fileno(h, &fd) == 0 ? fmt::format("descriptor {}, ", fd) : "";
  return fmt::format("a {} handle ({}active {}, closing {})",
                     uv_handle_type_name(uv_handle_get_type(h)), fd_text, uv_is_active(h),
                     uv_is_closing(h));
}

}  // namespace

bool close_probe_loop(uv_loop_t* loop, const std::function<void(const std::string&)>& warn) {
  uv_run(loop, UV_RUN_DEFAULT);
  if (uv_loop_close(loop) == 0) return true;
  int freed = 0;
  for (uv_handle_t* h : open_handles(loop)) {
    bool lws_watcher = uv_handle_get_type(h) == UV_POLL && !uv_is_closing(h) && !uv_is_active(h);
    warn(fmt::format("{} is still open at exit{}", describe(h),
                     lws_watcher ? ": a poll watcher lws left behind, closed and freed" : ""));
    if (!lws_watcher) continue;
    // lws allocates its watchers with realloc and frees them with free.
    uv_close(h, [](uv_handle_t* handle) { std::free(handle); });
    ++freed;
  }
  if (freed == 0) return false;
  uv_run(loop, UV_RUN_DEFAULT);
  if (uv_loop_close(loop) == 0) return true;
  for (uv_handle_t* h : open_handles(loop)) warn(describe(h) + " is still open at exit");
  return false;
}

}  // namespace canaryd
