// The libwebsockets context and its vhosts, shared by every WebSocket
// connection of one loop (WsConnection, in ws_client.cc, is one connection).
#include <fcntl.h>
#include <fmt/format.h>
#include <libwebsockets.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

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

// The poll handles on `loop` (lws watches each of its descriptors with one).
std::vector<uv_handle_t*> poll_handles(uv_loop_t* loop) {
  std::vector<uv_handle_t*> out;
  uv_walk(
      loop,
      [](uv_handle_t* h, void* arg) {
        if (h->type == UV_POLL && !uv_is_closing(h))
          static_cast<std::vector<uv_handle_t*>*>(arg)->push_back(h);
      },
      &out);
  return out;
}

}  // namespace

WsService::WsService(uv_loop_t* loop, int loops_sharing, std::shared_ptr<size_t> live)
    : loop_(loop), live_(std::move(live)) {
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
  // Three quarters of the descriptor limit, split evenly between the loops:
  // the rest stays for the HTTP server, the other probe types and lws itself.
  rlimit lim{};
  size_t fds = getrlimit(RLIMIT_NOFILE, &lim) == 0 ? static_cast<size_t>(lim.rlim_cur) : 1024;
  max_live_ = std::max<size_t>(16, fds / 4 * 3 / static_cast<size_t>(std::max(1, loops_sharing)));
  std::vector<uv_handle_t*> before = poll_handles(loop_);
  context_ = create_context(info);
  // A new context's only descriptor is its event pipe (see hold_pipe_number).
  std::vector<uv_handle_t*> added;
  for (uv_handle_t* h : poll_handles(loop_))
    if (std::find(before.begin(), before.end(), h) == before.end()) added.push_back(h);
  uv_os_fd_t fd = -1;
  if (added.size() == 1 && uv_fileno(added[0], &fd) == 0) pipe_fd_ = fd;
}

WsService::~WsService() {
  // On a foreign loop lws frees the context in two steps: the first call
  // closes its handles, and a second one, once the loop has run their close
  // callbacks, frees the rest.
  if (context_ == nullptr) return;
  if (!shut_down_) lws_context_destroy(context_);
  lws_context_destroy(context_);
  release_pipe_number();
}

void WsService::shutdown() {
  if (context_ == nullptr || shut_down_) return;
  shut_down_ = true;
  lws_context_destroy(context_);
  hold_pipe_number();
  vhosts_.clear();
}

// lws 4.1.6 on libuv closes its event pipe's descriptor twice when a context
// is destroyed: lws_destroy_event_pipe (lib/core-net/vhost.c) hands the pipe
// wsi to the loop for closing and closes the descriptor at once
// (lws_plat_pipe_close); the loop's close callback then closes the wsi's
// descriptor, the same number, again (lws_libuv_closewsi,
// __lws_close_free_wsi_final). Whatever was given that number in between, a
// socket of another context on this loop, of another loop or of another
// library, was closed under its owner: another context's lws then asserted
// in insert_wsi or kept a wsi on a dead descriptor. So the number is taken
// back at once with a placeholder for lws's second close to close. Only the
// first destroy step, on this thread, lies between lws's close and ours.
void WsService::hold_pipe_number() {
  if (pipe_fd_ < 0) return;
  // A memfd: a file of its own, told apart from anything else later given
  // the number.
  int fd = memfd_create("canaryd-lws-pipe", MFD_CLOEXEC);
  if (fd < 0) return;
  int held = fd == pipe_fd_ ? fd : fcntl(fd, F_DUPFD_CLOEXEC, pipe_fd_);
  if (held != fd) close(fd);
  if (held != pipe_fd_) {
    // Taken already: nothing to hold.
    if (held >= 0) close(held);
    return;
  }
  struct stat st {};
  if (fstat(held, &st) != 0) return;  // kept for lws to close
  hold_dev_ = static_cast<uint64_t>(st.st_dev);
  hold_ino_ = static_cast<uint64_t>(st.st_ino);
  holding_ = true;
}

void WsService::release_pipe_number() {
  if (!holding_) return;
  holding_ = false;
  // Still the placeholder: lws's second close has not run. Once it has, the
  // number may be anyone's.
  struct stat st {};
  if (fstat(pipe_fd_, &st) == 0 && static_cast<uint64_t>(st.st_dev) == hold_dev_ &&
      static_cast<uint64_t>(st.st_ino) == hold_ino_)
    close(pipe_fd_);
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
