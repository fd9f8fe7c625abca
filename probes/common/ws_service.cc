// The libwebsockets context and its vhosts, shared by every WebSocket
// connection of one loop (WsConnection, in ws_client.cc, is one connection).
#include <fmt/format.h>
#include <libwebsockets.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include <algorithm>
#include <stdexcept>
#include <string>

#include "base/guard.h"
#include "probes/common/ws_client.h"
#include "probes/common/ws_lws_log.h"

namespace canaryd {

namespace {

// Subprotocol entries can carry a JWT, echoed back by the server: header data
// and the handshake buffer must hold a few kilobytes, not lws's 1 KiB default.
constexpr unsigned short kMaxHeaderData = 16 * 1024;
constexpr unsigned int kServiceBufferBytes = 32 * 1024;
// lws's own timeouts must never fire before the scheduler's deadline.
constexpr unsigned int kLwsTimeoutSecs = 24 * 3600;

int lws_callback(struct lws* wsi, enum lws_callback_reasons reason, void* user, void* in,
                 size_t len);

const lws_protocols kProtocols[] = {
    {kWsProtocolName, &lws_callback, 0, 4096, 0, nullptr, 0},
    {nullptr, nullptr, 0, 0, 0, nullptr, 0},
};

int lws_callback(struct lws* wsi, enum lws_callback_reasons reason, void* user, void* in,
                 size_t len) {
  int rc = 0;
  if (guarded("a libwebsockets callback",
              [&] { rc = WsConnection::callback(wsi, static_cast<int>(reason), user, in, len); }))
    return rc;
  WsConnection::on_exception(wsi);
  return 0;
}

}  // namespace

WsService::WsService(uv_loop_t* loop) : loop_(loop) {
  install_lws_log();
  void* loops[1] = {loop_};
  lws_context_creation_info info{};
  info.port = CONTEXT_PORT_NO_LISTEN;
  // A foreign loop: lws adds its handles to ours and installs no signal
  // handlers of its own.
  info.options = LWS_SERVER_OPTION_LIBUV | LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT |
                 LWS_SERVER_OPTION_JUST_USE_RAW_ORIGIN;  // else lws prefixes "http://"
  info.foreign_loops = loops;
  info.protocols = kProtocols;
  info.vhost_name = "canaryd";
  info.gid = static_cast<gid_t>(-1);
  info.uid = static_cast<uid_t>(-1);
  info.timeout_secs = kLwsTimeoutSecs;
  info.connect_timeout_secs = kLwsTimeoutSecs;
  info.max_http_header_data = kMaxHeaderData;
  // Every handshake in flight holds a header table; a small pool would queue
  // handshakes behind hung ones.
  info.max_http_header_pool = 65535;
  info.pt_serv_buf_size = kServiceBufferBytes;
  // Three quarters of the descriptor limit: the rest stays for the HTTP
  // server, the other probe types and lws itself.
  rlimit lim{};
  size_t fds = getrlimit(RLIMIT_NOFILE, &lim) == 0 ? static_cast<size_t>(lim.rlim_cur) : 1024;
  max_live_ = std::max<size_t>(16, fds / 4 * 3);
  context_ = lws_create_context(&info);
  if (context_ == nullptr) throw std::runtime_error("cannot create the libwebsockets context");
  vhosts_[""].vhost = lws_get_vhost_by_name(context_, "canaryd");
}

WsService::~WsService() {
  // On a foreign loop lws frees the context in two steps: the first call
  // closes its handles, and a second one, once the loop has run their close
  // callbacks, frees the rest.
  if (context_ == nullptr) return;
  if (!shut_down_) lws_context_destroy(context_);
  lws_context_destroy(context_);
}

void WsService::shutdown() {
  if (context_ == nullptr || shut_down_) return;
  shut_down_ = true;
  lws_context_destroy(context_);
  vhosts_.clear();
}

WsService::ClientVhost* WsService::vhost_for(const std::string& ca_file) {
  if (ca_file.empty()) return &vhosts_[""];
  // lws loads the trust store when the vhost is made: a replaced CA file
  // (rotation) gets a new vhost. The file is looked at once a second at
  // most, not at every connection.
  CaFile& ca = ca_files_[ca_file];
  uint64_t now = uv_now(loop_);
  if (ca.key.empty() || now - ca.checked_ms >= 1000) {
    struct stat st {};
    std::string key = ca_file;
    if (stat(ca_file.c_str(), &st) == 0)
      key += fmt::format("@{}.{}:{}", st.st_mtim.tv_sec, st.st_mtim.tv_nsec, st.st_size);
    ca.checked_ms = now;
    ca.key = std::move(key);
    // Also retries vhosts that were still in use at an earlier rotation.
    sweep_vhosts();
  }
  const std::string& key = ca.key;
  auto it = vhosts_.find(key);
  if (it != vhosts_.end()) return &it->second;
  lws_context_creation_info info{};
  info.port = CONTEXT_PORT_NO_LISTEN;
  info.options = LWS_SERVER_OPTION_LIBUV | LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT |
                 LWS_SERVER_OPTION_JUST_USE_RAW_ORIGIN;  // else lws prefixes "http://"
  info.protocols = kProtocols;
  std::string name = fmt::format("canaryd-ca-{}", ++vhosts_made_);
  info.vhost_name = name.c_str();
  info.client_ssl_ca_filepath = ca_file.c_str();
  info.timeout_secs = kLwsTimeoutSecs;
  info.connect_timeout_secs = kLwsTimeoutSecs;
  lws_vhost* vh = lws_create_vhost(context_, &info);
  if (vh == nullptr) return nullptr;
  ClientVhost& made = vhosts_[key];
  made.vhost = vh;
  made.path = ca_file;
  return &made;
}

void WsService::sweep_vhosts() {
  // lws 4.1.6 frees a vhost at once only when no wsi is bound to it; with
  // one bound it defers, and (being_destroyed is never set) never finishes.
  // A connection is counted until lws has freed its wsi, which unbinds it,
  // and this runs from open(), outside lws's callbacks: a count of 0 means
  // lws has no wsi on the vhost either.
  for (auto it = vhosts_.begin(); it != vhosts_.end();) {
    const ClientVhost& v = it->second;
    auto ca = ca_files_.find(v.path);
    bool current = v.path.empty() || (ca != ca_files_.end() && ca->second.key == it->first);
    if (current || *v.users != 0) {
      ++it;
      continue;
    }
    lws_vhost_destroy(v.vhost);
    it = vhosts_.erase(it);
  }
}

}  // namespace canaryd
