// --web.config.file: the web configuration file of the Prometheus exporters
// (exporter-toolkit's format), so that the scrape configs, certificates and
// bcrypt hashes an SRE team already has for its exporters work unchanged:
//
//   tls_server_config:
//     cert_file: server.pem          # relative paths: to this file's folder
//     key_file: server.key
//     client_ca_file: clients.pem    # mutual TLS
//     client_auth_type: RequireAndVerifyClientCert
//     min_version: TLS12             # TLS10..TLS13; max_version too
//   basic_auth_users:
//     prometheus: $2y$10$...         # bcrypt only
//
// A key canaryd does not support is an error naming it, never silently
// ignored: a security setting that does not take effect must not look as if
// it did.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "base/yaml_section.h"

namespace canaryd {

// Go's crypto/tls names, as exporter-toolkit spells them.
enum class ClientAuth {
  kNoClientCert,
  kRequestClientCert,
  kRequireAnyClientCert,
  kVerifyClientCertIfGiven,
  kRequireAndVerifyClientCert,
};

struct TlsServerSettings {
  std::string cert_file;  // absolute, once loaded
  std::string key_file;
  std::string client_ca_file;  // "" when no client certificate is verified
  ClientAuth client_auth = ClientAuth::kNoClientCert;
  int min_version = 0;  // an OpenSSL TLS*_VERSION; TLS 1.2 by default
  int max_version = 0;  // 0: the newest OpenSSL offers
  // Where each file is named, for an error about the file itself.
  int cert_line = 0, key_line = 0, client_ca_line = 0;
};

struct WebConfig {
  std::string file;
  std::optional<TlsServerSettings> tls;
  std::map<std::string, std::string> basic_auth_users;  // user -> bcrypt hash
};

struct WebConfigLoad {
  std::optional<WebConfig> config;
  ConfigErrors errors;
};

// Reads and checks the file. The certificate and key are not loaded here
// (WebSecurity does that, and names the key of a file it cannot use).
WebConfigLoad load_web_config(const std::string& path);
// The same for text already read; ${file:} references go through `files`.
WebConfigLoad load_web_config_text(const std::string& text, const std::string& path,
                                   BoundedFileReader& files);

// An Authorization header "Basic <base64 of user:password>" -> user,
// password. False for anything else (the header is the client's: hostile).
bool parse_basic_credentials(std::string_view header, std::string& user, std::string& password);

// "$2a$", "$2b$" or "$2y$" with a cost and 53 characters of salt and hash.
bool looks_like_bcrypt(const std::string& hash);

}  // namespace canaryd
