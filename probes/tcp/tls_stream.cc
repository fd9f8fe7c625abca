#include "probes/tcp/tls_stream.h"

#include <arpa/inet.h>
#include <fmt/format.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>

#include <algorithm>

#include "base/memory_bio.h"
#include "probes/common/tls_verify.h"

namespace canaryd {

namespace {

// OpenSSL's description of the oldest error queued on this thread, or `fallback`.
std::string openssl_error(const char* fallback) {
  unsigned long code = ERR_get_error();
  ERR_clear_error();
  if (code == 0) return fallback;
  char text[256];
  ERR_error_string_n(code, text, sizeof text);
  return text;
}

bool is_ip_literal(const std::string& host) {
  unsigned char buf[sizeof(in6_addr)];
  return inet_pton(AF_INET, host.c_str(), buf) == 1 || inet_pton(AF_INET6, host.c_str(), buf) == 1;
}

}  // namespace

std::shared_ptr<SSL_CTX> TlsClientContext::get(std::string& error) {
  std::string identity;
  if (!opts_.ca_file.empty()) {
    struct stat st {};
    if (stat(opts_.ca_file.c_str(), &st) != 0) {
      error = fmt::format("cannot read CA file {}", opts_.ca_file);
      return nullptr;
    }
    identity =
        fmt::format("{}:{}:{}.{}", st.st_ino, st.st_size, st.st_mtim.tv_sec, st.st_mtim.tv_nsec);
  }
  if (ctx_ && identity == ca_identity_) return ctx_;

  ERR_clear_error();
  std::shared_ptr<SSL_CTX> ctx(SSL_CTX_new(TLS_client_method()), SSL_CTX_free);
  if (!ctx) {
    error = "cannot create a TLS context: " + openssl_error("out of memory");
    return nullptr;
  }
  bool loaded = opts_.ca_file.empty()
                    ? SSL_CTX_set_default_verify_paths(ctx.get()) == 1
                    : SSL_CTX_load_verify_locations(ctx.get(), opts_.ca_file.c_str(), nullptr) == 1;
  if (!loaded) {
    error = fmt::format("cannot load CA certificates from {}: {}",
                        opts_.ca_file.empty() ? "the system store" : opts_.ca_file,
                        openssl_error("no certificates"));
    return nullptr;
  }
  // Every run does a full handshake, as the HTTP probe does: a resumed
  // session would skip the certificate, so a replaced or expired one could
  // keep passing.
  SSL_CTX_set_session_cache_mode(ctx.get(), SSL_SESS_CACHE_OFF);
  SSL_CTX_set_options(ctx.get(), SSL_OP_NO_TICKET);
  SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER, &TlsStream::on_verify);
  ctx_ = std::move(ctx);
  ca_identity_ = std::move(identity);
  return ctx_;
}

TlsStream::TlsStream(std::shared_ptr<SSL_CTX> ctx, const std::string& host, bool verify)
    : ctx_(std::move(ctx)), verify_(verify) {
  ssl_ = SSL_new(ctx_.get());
  if (ssl_ == nullptr) {
    fail(Reason::kInternal, "cannot create a TLS session: " + openssl_error("out of memory"));
    return;
  }
  if (!attach_memory_bios(ssl_)) {
    fail(Reason::kInternal, "cannot create TLS buffers: " + openssl_error("out of memory"));
    return;
  }
  from_peer_ = SSL_get_rbio(ssl_);
  SSL_set_app_data(ssl_, this);
  SSL_set_connect_state(ssl_);
  bool ip = is_ip_literal(host);
  // SNI carries names only (RFC 6066).
  if (!ip) SSL_set_tlsext_host_name(ssl_, host.c_str());
  if (verify_) {
    X509_VERIFY_PARAM* param = SSL_get0_param(ssl_);
    X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    if (ip) {
      X509_VERIFY_PARAM_set1_ip_asc(param, host.c_str());
    } else {
      X509_VERIFY_PARAM_set1_host(param, host.c_str(), host.size());
    }
  }
}

TlsStream::~TlsStream() {
  if (ssl_ != nullptr) SSL_free(ssl_);  // frees both BIOs
}

int TlsStream::on_verify(int ok, X509_STORE_CTX* store) {
  // OpenSSL calls this for every certificate of the chain; nothing here throws.
  auto* ssl =
      static_cast<SSL*>(X509_STORE_CTX_get_ex_data(store, SSL_get_ex_data_X509_STORE_CTX_idx()));
  auto* self = ssl != nullptr ? static_cast<TlsStream*>(SSL_get_app_data(ssl)) : nullptr;
  if (self == nullptr) return ok;
  if (X509_STORE_CTX_get_error_depth(store) == 0) {
    if (auto expiry = cert_not_after_unix(X509_STORE_CTX_get_current_cert(store)))
      self->cert_expiry_ = expiry;
  }
  if (ok == 0 && self->verify_error_ == 0) self->verify_error_ = X509_STORE_CTX_get_error(store);
  // Without verification the chain is still walked, for the expiry above.
  return self->verify_ ? ok : 1;
}

void TlsStream::fail(Reason reason, const std::string& what) {
  state_ = State::kFailed;
  failure_ = {reason, what};
}

void TlsStream::start() {
  if (state_ == State::kHandshaking) handshake();
}

void TlsStream::handshake() {
  ERR_clear_error();
  int rc = SSL_do_handshake(ssl_);
  if (rc == 1) {
    state_ = State::kOpen;
    return;
  }
  int err = SSL_get_error(ssl_, rc);
  if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) return;
  if (verify_ && verify_error_ != 0) {
    ERR_clear_error();
    failure_ = classify_cert_error(verify_error_);
    state_ = State::kFailed;
    return;
  }
  fail(Reason::kTls, "TLS handshake failed: " + openssl_error("the peer broke the handshake"));
}

void TlsStream::feed(std::string_view from_peer, std::string& plain, size_t limit) {
  if (state_ == State::kFailed || state_ == State::kClosed) return;
  // TcpClient hands over at most 64 KiB at a time, and every chunk is
  // consumed below before the next, so the buffer stays bounded.
  if (!from_peer.empty() &&
      BIO_write(from_peer_, from_peer.data(), static_cast<int>(from_peer.size())) <= 0) {
    fail(Reason::kInternal, "cannot buffer TLS input: " + openssl_error("out of memory"));
    return;
  }
  if (state_ == State::kHandshaking) handshake();
  if (state_ == State::kOpen) read_into(plain, limit);
}

void TlsStream::read_into(std::string& plain, size_t limit) {
  char buf[16 * 1024];
  while (plain.size() < limit) {
    size_t want = std::min(sizeof buf, limit - plain.size());
    ERR_clear_error();
    int n = SSL_read(ssl_, buf, static_cast<int>(want));
    if (n > 0) {
      plain.append(buf, static_cast<size_t>(n));
      continue;
    }
    int err = SSL_get_error(ssl_, n);
    if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) return;
    if (err == SSL_ERROR_ZERO_RETURN) {
      state_ = State::kClosed;  // the peer's close_notify
      return;
    }
    fail(Reason::kTls, "TLS record error: " + openssl_error("the peer broke the TLS stream"));
    return;
  }
}

void TlsStream::write(std::string_view data) {
  if (state_ != State::kOpen || data.empty()) return;
  ERR_clear_error();
  // Memory BIOs grow as needed, so one call takes everything.
  if (SSL_write(ssl_, data.data(), static_cast<int>(data.size())) <= 0)
    fail(Reason::kTls, "TLS write failed: " + openssl_error("the TLS session broke"));
}

std::string TlsStream::take_wire() { return from_peer_ != nullptr ? take_for_peer(ssl_) : ""; }

}  // namespace canaryd
