// What --web.config.file puts in front of canaryd's endpoints: TLS (OpenSSL
// owns the protocol; http_server.cc only carries its bytes) and basic auth
// against bcrypt hashes.
//
// The file and the certificate, key and CA files it names are watched: a
// change (a rotated certificate) takes effect for the next connection, with
// no restart and no reload. A change that does not load is logged and the
// previous settings stay in force, as with a bad config reload. Whether the
// endpoints speak TLS at all is fixed at start: a listener that changed
// protocol under its scrapers would only break them.
//
// Thread-safety: new_session() and refuse() are called on the HTTP server's
// thread; the watcher thread swaps the settings under a mutex.
#pragma once

#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "daemon/http_server.h"
#include "daemon/web_config.h"

typedef struct ssl_st SSL;
typedef struct ssl_ctx_st SSL_CTX;

namespace canaryd {

class WebSecurity {
 public:
  // Loads the file, the certificate and the key now. Null with `error` set
  // ("FILE:LINE: KEY: why") when any of them cannot be used.
  static std::unique_ptr<WebSecurity> open(const std::string& path, std::string& error);
  ~WebSecurity();
  WebSecurity(const WebSecurity&) = delete;
  WebSecurity& operator=(const WebSecurity&) = delete;

  bool tls() const { return tls_; }
  // A server-side session from the current certificate, or null (logged) if
  // OpenSSL cannot make one; the caller owns it.
  SSL* new_session();
  // Nothing when the request may pass; otherwise the 401 to send.
  std::optional<HttpResponse> refuse(const HttpRequest& request);

  struct Settings;  // one load of the file and the TLS context made from it

 private:
  explicit WebSecurity(std::string path);
  void watch();

  const std::string path_;
  bool tls_ = false;
  std::mutex mu_;
  std::shared_ptr<const Settings> settings_;  // guarded by mu_
  std::condition_variable wake_;
  bool stopping_ = false;  // guarded by mu_
  std::thread watcher_;
  // HTTP thread only: verdicts of credentials already checked (bcrypt costs
  // tens of milliseconds each, and a scraper sends the same ones every time).
  // Keyed by a salted hash, so no password is kept in memory.
  std::map<std::string, bool> verdicts_;
  // The settings the verdicts were made under. Held, not just compared by
  // address: freed settings could come back at the same address with other
  // users, and an old verdict must never outlive the hash it was checked against.
  std::shared_ptr<const Settings> verdicts_for_;
  std::string salt_;
  // Checked for an unknown user, so that a wrong name costs what a wrong
  // password does and the timing does not tell which users exist.
  std::string dummy_hash_;
};

// A bcrypt hash of `password` (cost 10), for basic_auth_users. Throws
// std::runtime_error if libcrypt cannot make one.
std::string bcrypt_hash(const std::string& password);

}  // namespace canaryd
