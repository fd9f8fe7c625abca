// TLS on memory BIOs, the way canaryd does it on both sides (the TCP probe's
// client sessions, the endpoints' server sessions): OpenSSL does all of TLS,
// and the caller carries the bytes between the BIOs and a libuv socket, so
// the loop never blocks on the network.
#pragma once

#include <openssl/ssl.h>

#include <string>

namespace canaryd {

// Gives `ssl` its two memory BIOs (it owns them from then on): what the peer
// sent is written into SSL_get_rbio(ssl), what goes to the peer comes out of
// SSL_get_wbio(ssl). An empty input BIO means "wait for more", never the end
// of the stream. False, with nothing attached, if OpenSSL cannot make them.
bool attach_memory_bios(SSL* ssl);

// Everything the session has written for the peer so far (handshake
// messages, records, alerts), taken out of its output BIO.
std::string take_for_peer(SSL* ssl);

}  // namespace canaryd
