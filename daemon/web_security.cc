#include "daemon/web_security.h"

#include <crypt.h>
#include <fmt/format.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>

#include <chrono>
#include <cstring>
#include <stdexcept>
#include <vector>

namespace canaryd {

namespace {

// How often the files are looked at. A rotated certificate is in use within
// this long; a stat() of four files a second costs nothing.
constexpr std::chrono::seconds kWatchPeriod{1};
// Verdicts kept before the cache starts over: far more than the scrapers and
// people of one daemon, small enough that guessing cannot grow it.
constexpr size_t kMaxVerdicts = 1024;

std::string openssl_errors() {
  std::string out;
  while (const unsigned long code = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(code, buf, sizeof buf);
    if (!out.empty()) out += "; ";
    out += buf;
  }
  return out.empty() ? "unknown OpenSSL error" : out;
}

// What identifies the content of the files without reading them.
std::string file_signature(const std::vector<std::string>& files) {
  std::string out;
  for (const auto& f : files) {
    struct stat st {};
    if (f.empty()) continue;
    if (stat(f.c_str(), &st) != 0) {
      out += fmt::format("{}:missing;", f);
      continue;
    }
    out += fmt::format("{}:{}:{}:{}:{}.{};", f, st.st_dev, st.st_ino, st.st_size, st.st_mtim.tv_sec,
                       st.st_mtim.tv_nsec);
  }
  return out;
}

// Accepts any certificate: RequestClientCert and RequireAnyClientCert ask
// for one without judging it.
int accept_any(int /*preverify_ok*/, X509_STORE_CTX* /*ctx*/) { return 1; }

}  // namespace

struct WebSecurity::Settings {
  WebConfig config;
  SSL_CTX* ctx = nullptr;
  std::string signature;
  ~Settings() { SSL_CTX_free(ctx); }
};

namespace {

std::vector<std::string> watched_files(const std::string& path, const WebConfig* config) {
  std::vector<std::string> files{path};
  if (config && config->tls) {
    files.push_back(config->tls->cert_file);
    files.push_back(config->tls->key_file);
    files.push_back(config->tls->client_ca_file);
  }
  return files;
}

// The TLS context for `tls`, or null with `error` naming the key at fault.
SSL_CTX* make_context(const std::string& file, const TlsServerSettings& tls, std::string& error) {
  ERR_clear_error();
  SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
  if (ctx == nullptr) {
    error = fmt::format("{}: cannot create a TLS context: {}", file, openssl_errors());
    return nullptr;
  }
  auto fail = [&](int line, const char* key, const std::string& what) {
    error =
        fmt::format("{}:{}: tls_server_config.{}: {}: {}", file, line, key, what, openssl_errors());
    SSL_CTX_free(ctx);
    return nullptr;
  };
  SSL_CTX_set_min_proto_version(ctx, tls.min_version);
  if (tls.max_version != 0) SSL_CTX_set_max_proto_version(ctx, tls.max_version);
  // Client-initiated renegotiation would let one client make the server
  // thread do handshake after handshake on a single connection.
  SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
  // The memory BIOs of http_server.cc take whole records; partial writes
  // only add states.
  SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
  if (SSL_CTX_use_certificate_chain_file(ctx, tls.cert_file.c_str()) != 1)
    return fail(tls.cert_line, "cert_file", "cannot load " + tls.cert_file);
  if (SSL_CTX_use_PrivateKey_file(ctx, tls.key_file.c_str(), SSL_FILETYPE_PEM) != 1)
    return fail(tls.key_line, "key_file", "cannot load " + tls.key_file);
  if (SSL_CTX_check_private_key(ctx) != 1)
    return fail(tls.key_line, "key_file", "does not match cert_file");
  if (!tls.client_ca_file.empty()) {
    if (SSL_CTX_load_verify_locations(ctx, tls.client_ca_file.c_str(), nullptr) != 1)
      return fail(tls.client_ca_line, "client_ca_file", "cannot load " + tls.client_ca_file);
    STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(tls.client_ca_file.c_str());
    if (names == nullptr)
      return fail(tls.client_ca_line, "client_ca_file", "no certificate in " + tls.client_ca_file);
    SSL_CTX_set_client_CA_list(ctx, names);
  }
  switch (tls.client_auth) {
    case ClientAuth::kNoClientCert:
      SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, nullptr);
      break;
    case ClientAuth::kRequestClientCert:
      SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, accept_any);
      break;
    case ClientAuth::kRequireAnyClientCert:
      SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, accept_any);
      break;
    case ClientAuth::kVerifyClientCertIfGiven:
      SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
      break;
    case ClientAuth::kRequireAndVerifyClientCert:
      SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
      break;
  }
  // Resumed sessions must stay tied to this verification policy.
  static const unsigned char kSessionContext[] = "canaryd-web";
  SSL_CTX_set_session_id_context(ctx, kSessionContext, sizeof kSessionContext - 1);
  return ctx;
}

// Loads everything the file names; null with `error` set when something is unusable.
std::shared_ptr<WebSecurity::Settings> load_settings(const std::string& path, std::string& error) {
  // The signature is taken first: a file replaced while loading is loaded
  // again at the next look, never missed.
  const std::string before = file_signature({path});
  auto load = load_web_config(path);
  if (!load.config) {
    error = load.errors.str();
    while (!error.empty() && error.back() == '\n') error.pop_back();
    return nullptr;
  }
  auto settings = std::make_shared<WebSecurity::Settings>();
  settings->config = std::move(*load.config);
  settings->signature = before + file_signature(watched_files("", &settings->config));
  if (settings->config.tls) {
    settings->ctx = make_context(path, *settings->config.tls, error);
    if (settings->ctx == nullptr) return nullptr;
  }
  return settings;
}
}  // namespace

WebSecurity::WebSecurity(std::string path) : path_(std::move(path)) {
  unsigned char salt[32];
  if (RAND_bytes(salt, sizeof salt) != 1) throw std::runtime_error("no random bytes for a salt");
  salt_.assign(reinterpret_cast<const char*>(salt), sizeof salt);
  dummy_hash_ = bcrypt_hash("no such user");
}

std::unique_ptr<WebSecurity> WebSecurity::open(const std::string& path, std::string& error) {
  std::unique_ptr<WebSecurity> security(new WebSecurity(path));
  auto settings = load_settings(path, error);
  if (!settings) return nullptr;
  security->tls_ = settings->config.tls.has_value();
  security->settings_ = std::move(settings);
  // The watcher must not take SIGTERM or SIGHUP meant for the daemon's loop.
  sigset_t all, saved;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, &saved);
  security->watcher_ = std::thread([s = security.get()] {
#ifdef __GLIBC__
    pthread_setname_np(pthread_self(), "canaryd-webcfg");
#endif
    s->watch();
  });
  pthread_sigmask(SIG_SETMASK, &saved, nullptr);
  return security;
}

WebSecurity::~WebSecurity() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (watcher_.joinable()) watcher_.join();
}

void WebSecurity::watch() {
  std::string failed_signature;  // of the files that did not load, so it is logged once
  std::unique_lock lock(mu_);
  while (!wake_.wait_for(lock, kWatchPeriod, [this] { return stopping_; })) {
    const auto current = settings_;
    lock.unlock();
    const std::string now =
        file_signature({path_}) + file_signature(watched_files("", &current->config));
    if (now != current->signature && now != failed_signature) {
      std::string error;
      auto next = load_settings(path_, error);
      if (next && next->config.tls.has_value() != tls_) {
        error = fmt::format("{}: tls_server_config was {}; that takes a restart", path_,
                            tls_ ? "removed" : "added");
        next.reset();
      }
      if (next) {
        spdlog::info("web config {} reloaded: the next connections use it", path_);
        failed_signature.clear();
        lock.lock();
        settings_ = std::move(next);
        continue;
      }
      spdlog::error("web config {} changed but cannot be used, the previous one stays: {}", path_,
                    error);
      failed_signature = now;
    }
    lock.lock();
  }
}

SSL* WebSecurity::new_session() {
  std::shared_ptr<const Settings> settings;
  {
    std::lock_guard lock(mu_);
    settings = settings_;
  }
  if (settings->ctx == nullptr) return nullptr;
  SSL* ssl = SSL_new(settings->ctx);  // holds its own reference to the context
  if (ssl == nullptr) spdlog::error("cannot start a TLS session: {}", openssl_errors());
  return ssl;
}

namespace {

bool bcrypt_matches(const std::string& password, const std::string& hash) {
  crypt_data data{};
  const char* out = crypt_rn(password.c_str(), hash.c_str(), &data, sizeof data);
  const bool ok = out != nullptr && out[0] != '*' && std::strlen(out) == hash.size() &&
                  CRYPTO_memcmp(out, hash.data(), hash.size()) == 0;
  OPENSSL_cleanse(&data, sizeof data);
  return ok;
}

HttpResponse unauthorized() {
  HttpResponse r;
  r.status = 401;
  r.body = "unauthorized\n";
  r.headers.emplace_back("WWW-Authenticate", "Basic realm=\"canaryd\", charset=\"UTF-8\"");
  return r;
}

}  // namespace

std::optional<HttpResponse> WebSecurity::refuse(const HttpRequest& request) {
  std::shared_ptr<const Settings> settings;
  {
    std::lock_guard lock(mu_);
    settings = settings_;
  }
  const auto& users = settings->config.basic_auth_users;
  if (users.empty()) return std::nullopt;
  std::string user, password;
  if (!parse_basic_credentials(request.header("authorization"), user, password))
    return unauthorized();

  if (verdicts_for_ != settings || verdicts_.size() >= kMaxVerdicts) {
    verdicts_.clear();
    verdicts_for_ = settings;
  }
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int digest_len = 0;
  const std::string material = salt_ + user + std::string(1, '\0') + password;
  EVP_Digest(material.data(), material.size(), digest, &digest_len, EVP_sha256(), nullptr);
  std::string key(reinterpret_cast<const char*>(digest), digest_len);
  bool ok;
  if (auto it = verdicts_.find(key); it != verdicts_.end()) {
    ok = it->second;
  } else {
    const auto found = users.find(user);
    const bool matches =
        bcrypt_matches(password, found != users.end() ? found->second : dummy_hash_);
    ok = found != users.end() && matches;
    verdicts_.emplace(std::move(key), ok);
  }
  if (ok) return std::nullopt;
  return unauthorized();
}

std::string bcrypt_hash(const std::string& password) {
  if (password.find('\0') != std::string::npos)
    throw std::runtime_error("a password cannot hold a NUL byte");
  char setting[CRYPT_GENSALT_OUTPUT_SIZE];
  if (crypt_gensalt_rn("$2b$", 10, nullptr, 0, setting, sizeof setting) == nullptr)
    throw std::runtime_error("libcrypt cannot make a bcrypt salt");
  crypt_data data{};
  const char* out = crypt_rn(password.c_str(), setting, &data, sizeof data);
  if (out == nullptr || out[0] == '*') throw std::runtime_error("libcrypt cannot hash with bcrypt");
  std::string hash(out);
  OPENSSL_cleanse(&data, sizeof data);
  return hash;
}

}  // namespace canaryd
