#include "base/memory_bio.h"

namespace canaryd {

bool attach_memory_bios(SSL* ssl) {
  BIO* from_peer = BIO_new(BIO_s_mem());
  BIO* to_peer = BIO_new(BIO_s_mem());
  if (ssl == nullptr || from_peer == nullptr || to_peer == nullptr) {
    BIO_free(from_peer);
    BIO_free(to_peer);
    return false;
  }
  BIO_set_mem_eof_return(from_peer, -1);
  SSL_set_bio(ssl, from_peer, to_peer);
  return true;
}

std::string take_for_peer(SSL* ssl) {
  std::string out;
  BIO* to_peer = ssl != nullptr ? SSL_get_wbio(ssl) : nullptr;
  if (to_peer == nullptr) return out;
  const size_t pending = BIO_ctrl_pending(to_peer);
  if (pending == 0) return out;
  out.resize(pending);
  const int n = BIO_read(to_peer, out.data(), static_cast<int>(pending));
  out.resize(n > 0 ? static_cast<size_t>(n) : 0);
  return out;
}

}  // namespace canaryd
