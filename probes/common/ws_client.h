// The WebSocket client shared by the `websocket` and `agent_pipeline` probes:
// libwebsockets on the daemon's libuv loop (a foreign loop to lws), the
// endpoint settings both probes read from YAML, and the RFC 6455 subprotocol
// negotiation checks.
//
// lws does not resolve names asynchronously in Debian's build, so a
// connection is always opened to an address the probe resolved off the loop
// (AsyncResolve); the URL's host still goes out as Host, SNI and the name the
// certificate is checked against.
#pragma once

#include <uv.h>

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/utf8_check.h"
#include "base/yaml_section.h"
#include "probes/common/resolve.h"
#include "probes/probe.h"

struct lws;
struct lws_context;
struct lws_vhost;

namespace canaryd {

struct WsEndpoint {
  bool tls = false;
  std::string host;  // from the URL: a name or an address literal
  int port = 0;
  std::string path;                       // path and query, as requested
  std::string host_header;                // Host, SNI and certificate name (tls.server_name if set)
  std::string display_url;                // safe to show
  std::vector<std::string> subprotocols;  // offered, in order, as sent
  std::vector<std::string> subprotocol_labels;  // the same with secret parts redacted
  std::optional<size_t> expect_subprotocol;     // index into subprotocols; nullopt: any offered
  std::vector<std::pair<std::string, std::string>> headers;
  std::string origin;
  std::string ca_file;
  bool insecure_skip_verify = false;
  size_t max_message_bytes = 1024 * 1024;
  const char* max_message_key = "max_message_bytes";  // its name in the config, for messages

  // "ws://host:port/path [jwt-auth, jwt.<redacted>]"
  std::string describe() const;
};

// Reads url, subprotocols, expect_subprotocol, headers, origin, tls and
// max_message_bytes from `s`; errors are recorded in the section. The caller
// reads its own keys and calls s.finish(). With `templates`, subprotocol
// entries and header values may hold {{token}}, filled in per run.
void read_ws_endpoint(YamlSection& s, WsEndpoint& out, bool templates = false);

// `text` with every "{{name}}" replaced by `value`.
std::string fill_template(std::string text, std::string_view name, std::string_view value);

// How a connection ended. `clean` is a close both sides agreed on (our close
// answered, or the server closing with 1000); anything else is a failure with
// its reason.
struct WsEnd {
  bool clean = false;
  Reason reason = Reason::kInternal;
  std::string message;
  std::optional<int> status_code;  // the HTTP status of a rejected upgrade
  std::optional<int> close_code;   // the peer's close code; 1006 for a drop without one
  bool canaryd_limit = false;      // never started: canaryd holds its connection cap
};

class WsService;

// The lws protocol of canaryd's client connections (ws_service.cc).
inline constexpr const char* kWsProtocolName = "canaryd-ws";

// One client connection. It frees itself when lws is done with its socket, so
// the owner may drop it at any moment (abort) without waiting.
//
// Thread-safety: loop thread only.
class WsConnection {
 public:
  class Handler {
   public:
    virtual ~Handler() = default;
    // The upgrade succeeded and the negotiation checks passed.
    virtual void on_ws_open(WsConnection* c) = 0;
    // One whole text message, valid UTF-8.
    virtual void on_ws_message(WsConnection* c, std::string_view text) = 0;
    // One whole binary message; ignored unless the probe's protocol forbids it.
    virtual void on_ws_binary(WsConnection* /*c*/, size_t /*bytes*/) {}
    // The last callback: the connection failed, was closed, or was dropped.
    // The connection releases itself afterwards; the pointer is then invalid.
    virtual void on_ws_end(WsConnection* c, const WsEnd& end) = 0;
  };

  // Phases as the probes report them.
  enum class Phase { kConnect, kTls, kHandshake, kOpen, kClosing, kEnded };

  // Starts connecting to `addr`. Never calls the handler synchronously.
  // `traceparent`, unless empty, goes out with the upgrade request
  // (RunContext::new_traceparent).
  static WsConnection* open(WsService& service, std::shared_ptr<const WsEndpoint> endpoint,
                            const ResolvedAddress& addr, Handler* handler,
                            std::string traceparent = {});

  void send_text(std::string text);
  // Sends close 1000 once queued messages are out; on_ws_end follows when
  // the server answers with its close.
  void close();
  // No more callbacks; the TCP connection is reset.
  void abort();

  Phase phase() const;
  static const char* phase_name(Phase p);
  // Durations of the phases finished so far, in order (connect, tls, handshake).
  Phases phases() const;
  // The offered entry the server selected, if any.
  std::optional<size_t> selected() const { return selected_; }
  // The server's 101 arrived and its subprotocol choice was read.
  bool negotiated() const { return negotiated_; }
  std::optional<double> cert_expiry_unix() const { return cert_expiry_; }
  uint64_t open_ns() const { return handshake_end_ns_; }
  // When the last text message actually went out (a send waits for the
  // socket to be writable, a loop pass or more after send_text()); 0 before.
  uint64_t last_write_ns() const { return last_write_ns_; }

  // lws's protocol callback (one for every connection); not for probes.
  static int callback(struct lws* wsi, int reason, void* user, void* in, size_t len);
  // canaryd's own code threw inside callback(): the run ends as `internal`.
  static void on_exception(struct lws* wsi);

 private:
  friend class WsService;
  WsConnection(std::shared_ptr<const WsEndpoint> endpoint, Handler* handler);
  ~WsConnection() {
    --*live_;
    if (vhost_users_) --*vhost_users_;
  }
  int on_callback(int reason, void* user, void* in, size_t len);
  void end(WsEnd e);
  void check_negotiation(struct lws* wsi);
  WsEnd classify_error(struct lws* wsi, std::string_view lws_message);
  void mark_connected(uint64_t now);
  // Ends the connection now for something the server sent while open (the
  // socket is killed asynchronously: returning -1 mid-frame crashes lws).
  void fail_open(Reason reason, std::string message);
  int on_receive(const char* data, size_t len);
  // lws closed the connection itself while the server still held it open.
  bool lws_ended_it(struct lws* wsi) const;
  static std::string closed_with(int code);

  // Shared: an aborted connection can outlive its probe (a reload) until lws
  // has closed the socket.
  std::shared_ptr<const WsEndpoint> endpoint_;
  std::shared_ptr<size_t> live_;         // the service's count; may outlive the service
  std::shared_ptr<size_t> vhost_users_;  // the count of the vhost this connection uses
  Handler* handler_;
  std::string traceparent_;
  struct lws* wsi_ = nullptr;
  uv_timer_t* deferred_ = nullptr;  // delivers an end that happened inside open()
  bool opening_ = false;
  bool ended_ = false;
  bool close_requested_ = false;
  bool close_sent_ = false;
  std::optional<WsEnd> pending_end_;  // a failure decided in a callback, reported at close
  std::optional<int> peer_close_code_;
  std::optional<size_t> selected_;
  bool negotiated_ = false;
  std::optional<double> cert_expiry_;
  int tls_verify_error_ = 0;
  std::vector<std::string> outbox_;
  std::string message_;
  bool message_binary_ = false;
  bool refused_ = false;  // failed on what the server sent; the rest is ignored
  Utf8Check utf8_;
  uint64_t start_ns_ = 0;
  uint64_t connect_end_ns_ = 0;
  uint64_t tls_end_ns_ = 0;
  uint64_t handshake_end_ns_ = 0;
  uint64_t last_write_ns_ = 0;
};

// The lws context on one loop, with one client vhost per CA file (lws keeps
// the trust store per vhost) and one for the default trust store, each made
// at first use. A rotated CA file gets a new vhost, and the old one is
// destroyed once no connection uses it, so rotation costs no memory.
//
// Thread-safety: loop thread only. Any number of services may live at once,
// on one loop or several threads, made and destroyed in any order: they share
// no lws state that changes after the first one is made (ws_service.cc). One
// caveat, lws's: shutdown() should not run while another thread opens
// descriptors (hold_pipe_number in ws_service.cc).
class WsService {
 public:
  // `loops`: how many loops of this process have services; they share the
  // connection cap (three quarters of the descriptor limit) evenly. The
  // services of one loop share its part through `live` (their connections
  // alive); a service alone counts its own.
  explicit WsService(uv_loop_t* loop, int loops = 1,
                     std::shared_ptr<size_t> live = std::make_shared<size_t>(0));
  ~WsService();
  WsService(const WsService&) = delete;
  WsService& operator=(const WsService&) = delete;

  // Starts destroying the context; the loop must run afterwards for lws to
  // close its handles, and the destructor (after that run) frees the rest.
  void shutdown();

  // Client vhosts alive, the default one included once used.
  size_t vhost_count() const { return vhosts_.size(); }

 private:
  friend class WsConnection;
  struct ClientVhost {
    lws_vhost* vhost = nullptr;
    std::string path;  // the CA file; empty for the default trust store
    std::shared_ptr<size_t> users = std::make_shared<size_t>(0);
  };
  ClientVhost* vhost_for(const std::string& ca_file);
  // Destroys the vhosts of replaced CA files that no connection uses.
  void sweep_vhosts();
  // Keep lws's second close of its event pipe off other descriptors
  // (ws_service.cc).
  void hold_pipe_number();
  void release_pipe_number();

  uv_loop_t* loop_;
  lws_context* context_ = nullptr;
  // Connections alive (open, or closing until lws lets go of the socket), and
  // the most allowed: beyond it a run fails at once instead of taking the
  // descriptors that /metrics and the other probes need.
  std::shared_ptr<size_t> live_;
  size_t max_live_ = 0;
  bool shut_down_ = false;
  int pipe_fd_ = -1;  // lws's event pipe descriptor; -1 if not found
  bool holding_ = false;
  uint64_t hold_dev_ = 0;  // the placeholder's file, told apart from any later one
  uint64_t hold_ino_ = 0;
  std::map<std::string, ClientVhost> vhosts_;  // by CA file and its mtime
  struct CaFile {
    std::string key;  // path, mtime and size when last looked at
    uint64_t checked_ms = 0;
  };
  std::map<std::string, CaFile> ca_files_;  // by path
};

}  // namespace canaryd
