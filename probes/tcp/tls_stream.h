// TLS over a connection the probe already owns (a TcpClient on the loop).
// OpenSSL does the whole record layer and the certificate checks on memory
// BIOs; the probe moves the bytes between those BIOs and libuv. So the loop
// never blocks, and TLS needs no second socket layer next to TcpClient.
#pragma once

#include <openssl/ssl.h>

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "probes/common/config_fields.h"
#include "probes/probe.h"

namespace canaryd {

// The client context for one probe's TLS options. The trust store (the CA
// file, or the system's) is loaded once and again only when the CA file
// changes, so a rotated file is picked up without a reload.
//
// Thread-safety: loop thread only.
class TlsClientContext {
 public:
  explicit TlsClientContext(TlsOptions opts) : opts_(std::move(opts)) {}
  const TlsOptions& options() const { return opts_; }
  // The context for a new connection, or nullptr with `error` set.
  std::shared_ptr<SSL_CTX> get(std::string& error);

 private:
  TlsOptions opts_;
  std::shared_ptr<SSL_CTX> ctx_;
  std::string ca_identity_;  // the CA file's inode, size and mtime when ctx_ was built
};

// One client TLS session over bytes the caller carries.
//
// Thread-safety: loop thread only.
class TlsStream {
 public:
  enum class State { kHandshaking, kOpen, kClosed, kFailed };

  // `host` is verified (and sent as SNI when it is a name, not an address).
  TlsStream(std::shared_ptr<SSL_CTX> ctx, const std::string& host, bool verify);
  ~TlsStream();
  TlsStream(const TlsStream&) = delete;
  TlsStream& operator=(const TlsStream&) = delete;

  // Starts the handshake; the ClientHello is then in take_wire().
  void start();
  // Hands over bytes from the peer and advances the session. Decrypted bytes
  // are appended to `plain` while it is shorter than `limit`; the rest stays
  // inside OpenSSL.
  void feed(std::string_view from_peer, std::string& plain, size_t limit);
  // Encrypts `data`; only once the session is open.
  void write(std::string_view data);
  // Bytes to send to the peer (handshake messages, records, alerts).
  std::string take_wire();

  State state() const { return state_; }
  // Whether the handshake completed (the session may have closed since).
  bool handshake_done() const { return ssl_ != nullptr && SSL_is_init_finished(ssl_) == 1; }
  // Why the session failed (state() == kFailed).
  const std::pair<Reason, std::string>& failure() const { return failure_; }
  // The leaf certificate's notAfter, once the peer sent one.
  std::optional<double> cert_expiry_unix() const { return cert_expiry_; }

 private:
  friend class TlsClientContext;  // installs on_verify in the context
  static int on_verify(int ok, X509_STORE_CTX* store);
  void handshake();
  void read_into(std::string& plain, size_t limit);
  void fail(Reason reason, const std::string& what);

  std::shared_ptr<SSL_CTX> ctx_;
  SSL* ssl_ = nullptr;
  BIO* from_peer_ = nullptr;  // owned by ssl_ (base/memory_bio.h)
  bool verify_;
  long verify_error_ = 0;  // the first certificate error OpenSSL reported
  State state_ = State::kHandshaking;
  std::pair<Reason, std::string> failure_{Reason::kTls, ""};
  std::optional<double> cert_expiry_;
};

}  // namespace canaryd
