// The web config and the Authorization header, as a user sees them: what is
// accepted, and the FILE:LINE: KEY of what is not (the daemon's behaviour
// with real clients is tests/web/check_web_security.py).
#include "daemon/web_config.h"

#include <catch2/catch.hpp>
#include <string>

#include "daemon/web_security.h"

using canaryd::BoundedFileReader;
using canaryd::load_web_config_text;
using canaryd::parse_basic_credentials;

namespace {
std::string errors_of(const std::string& text) {
  BoundedFileReader files;
  auto load = load_web_config_text(text, "/etc/canaryd/web.yml", files);
  return load.config ? "" : load.errors.str();
}
}  // namespace

TEST_CASE("web config: TLS paths resolve against the file's folder, TLS 1.2 by default", "[web]") {
  BoundedFileReader files;
  auto load = load_web_config_text(
      "tls_server_config:\n  cert_file: tls/server.pem\n  key_file: /abs/server.key\n",
      "/etc/canaryd/web.yml", files);
  REQUIRE(load.config);
  REQUIRE(load.config->tls);
  CHECK(load.config->tls->cert_file == "/etc/canaryd/tls/server.pem");
  CHECK(load.config->tls->key_file == "/abs/server.key");
  CHECK(load.config->tls->client_auth == canaryd::ClientAuth::kNoClientCert);
  CHECK(load.config->basic_auth_users.empty());
}

TEST_CASE("web config: an empty file is plain HTTP with no users", "[web]") {
  BoundedFileReader files;
  auto load = load_web_config_text("", "/etc/canaryd/web.yml", files);
  REQUIRE(load.config);
  CHECK_FALSE(load.config->tls);
}

TEST_CASE("web config: errors name the file, line and key, and never quote a hash", "[web]") {
  CHECK(errors_of("tls_server_config:\n  key_file: k\n") ==
        "/etc/canaryd/web.yml:2: tls_server_config.cert_file: required with tls_server_config\n");
  CHECK(errors_of("tls_server_config:\n  cert_file: c\n  key_file: k\n  min_version: SSL3\n") ==
        "/etc/canaryd/web.yml:4: tls_server_config.min_version: \"SSL3\" is not TLS10, TLS11, "
        "TLS12 or TLS13\n");
  CHECK(errors_of("tls_server_config:\n  cert_file: c\n  key_file: k\n  client_auth_type: "
                  "RequireAndVerifyClientCert\n") ==
        "/etc/canaryd/web.yml:4: tls_server_config.client_auth_type: verifying client "
        "certificates needs client_ca_file\n");
  const std::string bad = errors_of("basic_auth_users:\n  bob: $2y$10$tooshort-SECRET\n");
  CHECK(bad.find("web.yml:2: basic_auth_users: user \"bob\": not a bcrypt hash") !=
        std::string::npos);
  CHECK(bad.find("SECRET") == std::string::npos);
  CHECK(errors_of("http_server_config:\n  http2: false\n") ==
        "/etc/canaryd/web.yml:1: http_server_config: unknown key\n");
}

TEST_CASE("Authorization: Basic is parsed, anything else is refused", "[web]") {
  std::string user, password;
  REQUIRE(parse_basic_credentials("Basic YWxpY2U6czNjcmV0OndpdGg6Y29sb25z", user, password));
  CHECK(user == "alice");
  CHECK(password == "s3cret:with:colons");
  REQUIRE(parse_basic_credentials("basic   Ym9iOg==", user, password));
  CHECK(user == "bob");
  CHECK(password.empty());
  CHECK_FALSE(parse_basic_credentials("Bearer YWxpY2U6czNjcmV0", user, password));
  CHECK_FALSE(parse_basic_credentials("Basic !!!!", user, password));
  CHECK_FALSE(parse_basic_credentials("Basic YWxpY2U=", user, password));  // no colon
  CHECK_FALSE(parse_basic_credentials("Basic YTpiAGM=", user, password));  // NUL in password
  CHECK_FALSE(parse_basic_credentials("Basic " + std::string(5000, 'A'), user, password));
}

TEST_CASE("hash-password's bcrypt hashes are what the web config accepts", "[web]") {
  const std::string hash = canaryd::bcrypt_hash("correct horse");
  CHECK(canaryd::looks_like_bcrypt(hash));
  CHECK(hash.rfind("$2b$10$", 0) == 0);
  CHECK(canaryd::bcrypt_hash("correct horse") != hash);  // a fresh salt each time
}
