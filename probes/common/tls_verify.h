// What a failed certificate check means to an SRE, for the probe types that
// see OpenSSL's verification themselves (WebSocket through lws, tcp): one
// mapping, so the same certificate fails with the same reason everywhere.
#pragma once

#include <openssl/x509.h>

#include <optional>
#include <string>
#include <utility>

#include "probes/probe.h"

namespace canaryd {

// The reason and message for OpenSSL's verify error `error` (X509_V_ERR_*):
// tls_hostname, tls_expired or tls.
std::pair<Reason, std::string> classify_cert_error(long error);

// The certificate's notAfter in seconds since the epoch.
std::optional<double> cert_not_after_unix(const X509* cert);

}  // namespace canaryd
