// One TLS connection of canaryd's endpoints, with OpenSSL doing all of TLS:
// ciphertext goes in and out through memory BIOs, so the event loop of
// http_server.cc moves the bytes and no call ever blocks on the socket.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

struct ssl_st;

namespace canaryd {

class TlsChannel {
 public:
  // Takes ownership of a server-side session and sets it up to accept.
  // ok() is false if OpenSSL could not make the BIOs.
  explicit TlsChannel(ssl_st* ssl);
  ~TlsChannel();
  TlsChannel(const TlsChannel&) = delete;
  TlsChannel& operator=(const TlsChannel&) = delete;

  bool ok() const { return ok_; }

  enum class Received {
    kMore,        // keep reading
    kPeerClosed,  // close_notify: the client sends no more, as with a FIN
    kFailed,      // a failed handshake or a broken record: send output(), then close
  };
  // Ciphertext from the socket; the plaintext it yields is appended to `plain`.
  Received receive(const char* data, size_t size, std::string& plain);
  // Plaintext to send; false if the session cannot take it (then close).
  bool send(std::string_view plain);
  // close_notify, when the handshake completed and nothing failed.
  void close_notify();
  // The ciphertext waiting to go to the socket (handshake flights, records, alerts).
  std::string output();

 private:
  ssl_st* ssl_;
  bool ok_ = false;
  bool failed_ = false;
};

}  // namespace canaryd
