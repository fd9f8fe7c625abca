#include "probes/common/tls_verify.h"

#include <openssl/asn1.h>
#include <openssl/x509_vfy.h>

#include <ctime>

namespace canaryd {

std::pair<Reason, std::string> classify_cert_error(long error) {
  std::string why = X509_verify_cert_error_string(error);
  if (error == X509_V_ERR_HOSTNAME_MISMATCH || error == X509_V_ERR_IP_ADDRESS_MISMATCH)
    return {Reason::kTlsHostname, "TLS certificate is not valid for the host: " + why};
  if (error == X509_V_ERR_CERT_HAS_EXPIRED)
    return {Reason::kTlsExpired, "TLS certificate has expired: " + why};
  return {Reason::kTls, "TLS verification failed: " + why};
}

std::optional<double> cert_not_after_unix(const X509* cert) {
  std::tm tm{};
  if (cert == nullptr || ASN1_TIME_to_tm(X509_get0_notAfter(cert), &tm) != 1) return std::nullopt;
  return static_cast<double>(timegm(&tm));
}

}  // namespace canaryd
