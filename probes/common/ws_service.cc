// The libwebsockets context and its vhosts, shared by every WebSocket
// connection of one loop (WsConnection, in ws_client.cc, is one connection).
#include <fmt/format.h>
#include <libwebsockets.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include <algorithm>
#include <mutex>
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

// lws 4.1.6 reads LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT in two places:
//  - On a context it runs lws_context_init_ssl_library
//    (lib/tls/openssl/openssl-tls.c), which allocates two new OpenSSL ex_data
//    indexes into process globals (openssl_websocket_private_data_index,
//    openssl_SSL_CTX_private_data_index). Each context made with it replaces
//    the indexes every other context relies on:
//    - a client SSL_CTX holds its reuse record under the index current when
//      lws made it, and lws_ssl_destroy_client_ctx (openssl-ssl.c) looks the
//      record up under the index current at teardown: not found, the SSL_CTX
//      and its CA bundle are never freed;
//    - each SSL holds its wsi under the other index (lws_ssl_client_bio_create,
//      openssl-client.c), and OpenSSL_client_verify_callback fails the
//      certificate ("can't get wsi from ssl privdata") when a context was made
//      during the handshake;
//    - and a context made on one thread writes globals the others read.
//  - On a vhost's creation info it is what makes lws create the vhost's client
//    SSL_CTX at all (lws_context_init_client_ssl, lib/tls/tls-client.c). A
//    context's default vhost is made from the context's own info, so a context
//    without the flag and with a default vhost has no client TLS.
// Hence: the first context of the process alone carries the flag, under a
// once_flag that also orders its writes before any other context exists; all
// contexts make their vhosts explicitly, each vhost with the flag. The indexes
// then never change. (The first context may go first: with LWS_MAX_SMP 1,
// lws_context_deinit_ssl_library frees nothing the others use.)
lws_context* create_context(const lws_context_creation_info& info) {
  static std::once_flag global_init;
  lws_context* made = nullptr;
  std::call_once(global_init, [&] {
    // lws's log level and sink are process globals too, read by every loop.
    install_lws_log();
    lws_context_creation_info first = info;
    first.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
    made = lws_create_context(&first);
    // Thrown, the once_flag stays unset and the next context tries again.
    if (made == nullptr) throw std::runtime_error("cannot create the libwebsockets context");
  });
  if (made == nullptr) made = lws_create_context(&info);
  if (made == nullptr) throw std::runtime_error("cannot create the libwebsockets context");
  return made;
}

// A client vhost; with a CA file, lws loads it as the vhost's trust store.
lws_vhost* create_client_vhost(lws_context* context, const std::string& ca_file) {
  lws_context_creation_info info{};
  info.port = CONTEXT_PORT_NO_LISTEN;
  // The flag makes this vhost's client SSL_CTX (see create_context).
  info.options = LWS_SERVER_OPTION_LIBUV | LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT |
                 LWS_SERVER_OPTION_JUST_USE_RAW_ORIGIN;
  info.protocols = kProtocols;
  // lws keeps this pointer, not a copy (vh->name = info->vhost_name in
  // lib/core-net/vhost.c), and prints it in info lines until the context is
  // freed, e.g. at every connect: a literal. Names need not be unique; only
  // lws_get_vhost_by_name looks them up.
  info.vhost_name = ca_file.empty() ? "canaryd" : "canaryd-ca";
  if (!ca_file.empty()) info.client_ssl_ca_filepath = ca_file.c_str();
  info.timeout_secs = kLwsTimeoutSecs;
  info.connect_timeout_secs = kLwsTimeoutSecs;
  return lws_create_vhost(context, &info);
}

}  // namespace

WsService::WsService(uv_loop_t* loop) : loop_(loop) {
  void* loops[1] = {loop_};
  lws_context_creation_info info{};
  info.port = CONTEXT_PORT_NO_LISTEN;
  // A foreign loop: lws adds its handles to ours and installs no signal
  // handlers of its own. No DO_SSL_GLOBAL_INIT here: see create_context.
  info.options = LWS_SERVER_OPTION_LIBUV | LWS_SERVER_OPTION_EXPLICIT_VHOSTS |
                 LWS_SERVER_OPTION_JUST_USE_RAW_ORIGIN;  // else lws prefixes "http://"
  info.foreign_loops = loops;
  info.protocols = kProtocols;
  info.gid = static_cast<gid_t>(-1);
  info.uid = static_cast<uid_t>(-1);
  info.timeout_secs = kLwsTimeoutSecs;
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
  context_ = create_context(info);
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
  std::string key;  // empty: the default trust store
  if (!ca_file.empty()) {
    // lws loads the trust store when the vhost is made: a replaced CA file
    // (rotation) gets a new vhost. The file is looked at once a second at
    // most, not at every connection.
    CaFile& ca = ca_files_[ca_file];
    uint64_t now = uv_now(loop_);
    if (ca.key.empty() || now - ca.checked_ms >= 1000) {
      struct stat st {};
      std::string k = ca_file;
      if (stat(ca_file.c_str(), &st) == 0)
        k += fmt::format("@{}.{}:{}", st.st_mtim.tv_sec, st.st_mtim.tv_nsec, st.st_size);
      ca.checked_ms = now;
      ca.key = std::move(k);
      // Also retries vhosts that were still in use at an earlier rotation.
      sweep_vhosts();
    }
    key = ca.key;
  }
  auto it = vhosts_.find(key);
  if (it != vhosts_.end()) return &it->second;
  // Made at first use; one lws could not make is tried again at the next.
  lws_vhost* vh = create_client_vhost(context_, ca_file);
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
