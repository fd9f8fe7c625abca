// libcurl's multi *socket* interface driven by the daemon's libuv loop: one
// uv_poll per socket curl cares about and one uv_timer for curl's timeouts.
// Every HTTP transfer of every probe on the loop goes through one CurlMulti.
#pragma once

#include <curl/curl.h>
#include <uv.h>

#include <functional>
#include <unordered_map>
#include <unordered_set>

#include "base/guard.h"

namespace canaryd {

// What every probe's transfer sets: errors into `error_buffer` (CURL_ERROR_SIZE
// bytes), no signals, canaryd's User-Agent, and a fresh connection with a full
// TLS handshake every run. A kept connection would hide DNS, connect and TLS
// failures and their latency; a resumed session (the handle lives across runs)
// would time an abbreviated handshake and skip the certificate check.
void set_probe_transfer_defaults(CURL* easy, char* error_buffer);

// Thread-safety: loop thread only.
class CurlMulti {
 public:
  explicit CurlMulti(uv_loop_t* loop);
  ~CurlMulti();
  CurlMulti(const CurlMulti&) = delete;
  CurlMulti& operator=(const CurlMulti&) = delete;

  using Completion = std::function<void(CURLcode)>;

  // Starts a configured easy handle. `on_done` runs on the loop, once, when the
  // transfer ends, after the handle has left the multi (so it may be reused).
  // An exception from it goes to `fail` (the run the transfer belongs to).
  void add(CURL* easy, RunFault fail, Completion on_done);
  void add(CURL* easy, Completion on_done) { add(easy, {}, std::move(on_done)); }
  // Aborts a transfer that has not completed; its completion never runs.
  void remove(CURL* easy);
  size_t in_flight() const { return transfers_.size(); }
  // Aborts everything and closes the handles; run the loop afterwards so the
  // close callbacks free them.
  void shutdown();

 private:
  struct SocketWatch;
  struct Transfer {
    Completion done;
    RunFault fail;
  };

  static int on_socket(CURL* easy, curl_socket_t fd, int what, void* userp, void* socketp);
  static int watch_socket(CURL* easy, curl_socket_t fd, int what, void* userp, void* socketp);
  static int on_timer(CURLM* multi, long timeout_ms, void* userp);
  static void on_poll(uv_poll_t* handle, int status, int events);
  static void on_timeout(uv_timer_t* handle);
  void socket_action(curl_socket_t fd, int flags);
  void drain_completions();
  void forget_watch(SocketWatch* watch);

  uv_loop_t* loop_;
  CURLM* multi_ = nullptr;
  uv_timer_t* timer_ = nullptr;  // heap: freed in its close callback
  bool in_timeout_ = false;      // inside on_timeout's call into curl
  std::unordered_map<CURL*, Transfer> transfers_;
  std::unordered_set<SocketWatch*> watches_;
};

}  // namespace canaryd
