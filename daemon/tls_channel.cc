#include "daemon/tls_channel.h"

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <algorithm>

#include "base/memory_bio.h"

namespace canaryd {

namespace {
// The plaintext of one record at most, decrypted at a time.
constexpr size_t kChunk = 16 * 1024;
// Bytes handed to SSL_write at a time; a memory BIO takes all of them.
constexpr size_t kMaxWrite = size_t{1} << 20;
}  // namespace

TlsChannel::TlsChannel(ssl_st* ssl) : ssl_(ssl) {
  if (!attach_memory_bios(ssl_)) return;
  SSL_set_accept_state(ssl_);
  ok_ = true;
}

TlsChannel::~TlsChannel() { SSL_free(ssl_); }

TlsChannel::Received TlsChannel::receive(const char* data, size_t size, std::string& plain) {
  // OpenSSL's error queue is per thread: whatever one connection left in it
  // must not be read as another's.
  ERR_clear_error();
  if (!ok_ || failed_) return Received::kFailed;
  if (BIO_write(SSL_get_rbio(ssl_), data, static_cast<int>(size)) != static_cast<int>(size)) {
    failed_ = true;
    return Received::kFailed;
  }
  char buf[kChunk];
  for (;;) {
    const int n = SSL_read(ssl_, buf, sizeof buf);
    if (n > 0) {
      plain.append(buf, static_cast<size_t>(n));
      continue;
    }
    const int error = SSL_get_error(ssl_, n);
    ERR_clear_error();
    if (error == SSL_ERROR_WANT_READ) return Received::kMore;
    if (error == SSL_ERROR_ZERO_RETURN) return Received::kPeerClosed;
    // No client certificate under mutual TLS, a version below min_version,
    // garbage: the alert OpenSSL prepared is in output().
    failed_ = true;
    return Received::kFailed;
  }
}

bool TlsChannel::send(std::string_view plain) {
  ERR_clear_error();
  if (!ok_ || failed_) return false;
  while (!plain.empty()) {
    const int n =
        SSL_write(ssl_, plain.data(), static_cast<int>(std::min(plain.size(), kMaxWrite)));
    if (n <= 0) {
      ERR_clear_error();
      failed_ = true;
      return false;
    }
    plain.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

void TlsChannel::close_notify() {
  if (!ok_ || failed_ || !SSL_is_init_finished(ssl_)) return;
  SSL_shutdown(ssl_);
  ERR_clear_error();
}

std::string TlsChannel::output() { return ok_ ? take_for_peer(ssl_) : ""; }

}  // namespace canaryd
