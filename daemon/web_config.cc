#include "daemon/web_config.h"

#include <fmt/format.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>

#include <array>
#include <utility>

namespace canaryd {

namespace {

constexpr std::array<std::pair<const char*, ClientAuth>, 5> kClientAuthNames = {{
    {"NoClientCert", ClientAuth::kNoClientCert},
    {"RequestClientCert", ClientAuth::kRequestClientCert},
    {"RequireAnyClientCert", ClientAuth::kRequireAnyClientCert},
    {"VerifyClientCertIfGiven", ClientAuth::kVerifyClientCertIfGiven},
    {"RequireAndVerifyClientCert", ClientAuth::kRequireAndVerifyClientCert},
}};

constexpr std::array<std::pair<const char*, int>, 4> kVersionNames = {{
    {"TLS10", TLS1_VERSION},
    {"TLS11", TLS1_1_VERSION},
    {"TLS12", TLS1_2_VERSION},
    {"TLS13", TLS1_3_VERSION},
}};

// Relative paths in the file are relative to the file's own folder, as in
// exporter-toolkit: the daemon's working directory is not the operator's.
std::string resolve(const std::string& web_file, const std::string& path) {
  if (path.empty() || path.front() == '/') return path;
  const auto slash = web_file.find_last_of('/');
  if (slash == std::string::npos) return path;
  return web_file.substr(0, slash + 1) + path;
}

std::optional<int> read_version(YamlSection& tls, const char* key) {
  auto text = tls.get_string(key);
  if (!text) return std::nullopt;
  for (const auto& [name, version] : kVersionNames) {
    if (*text == name) return version;
  }
  tls.error(key, fmt::format("\"{}\" is not TLS10, TLS11, TLS12 or TLS13", *text));
  return std::nullopt;
}

std::optional<TlsServerSettings> read_tls(YamlSection& tls, const std::string& file) {
  TlsServerSettings out;
  out.min_version = TLS1_2_VERSION;
  bool ok = true;
  for (const char* inline_key : {"cert", "key", "client_ca"}) {
    if (tls.has(inline_key)) {
      tls.get_node(inline_key);
      tls.error(inline_key, "inline PEM is not supported by canaryd; name a file with " +
                                std::string(inline_key) + "_file");
      ok = false;
    }
  }
  auto cert = tls.get_string("cert_file");
  auto key = tls.get_string("key_file");
  for (auto [name, value] : {std::pair{"cert_file", &cert}, std::pair{"key_file", &key}}) {
    if (!*value) {
      if (!tls.has(name)) tls.error(name, "required with tls_server_config");
      ok = false;
    } else if ((*value)->empty()) {
      tls.error(name, "must name a file");
      ok = false;
    }
  }
  out.cert_line = tls.line_of("cert_file");
  out.key_line = tls.line_of("key_file");
  out.client_ca_line = tls.line_of("client_ca_file");
  if (auto ca = tls.get_string("client_ca_file")) out.client_ca_file = resolve(file, *ca);
  bool auth_given = false;
  if (auto auth = tls.get_string("client_auth_type")) {
    auth_given = true;
    bool known = false;
    for (const auto& [name, value] : kClientAuthNames) {
      if (*auth == name) {
        out.client_auth = value;
        known = true;
      }
    }
    if (!known) {
      tls.error("client_auth_type",
                fmt::format("\"{}\" is not one of NoClientCert, RequestClientCert, "
                            "RequireAnyClientCert, VerifyClientCertIfGiven, "
                            "RequireAndVerifyClientCert",
                            *auth));
      ok = false;
    }
  }
  const bool verifies = out.client_auth == ClientAuth::kVerifyClientCertIfGiven ||
                        out.client_auth == ClientAuth::kRequireAndVerifyClientCert;
  if (verifies && out.client_ca_file.empty()) {
    tls.error("client_auth_type", "verifying client certificates needs client_ca_file");
    ok = false;
  }
  // A CA file with no policy would look like mutual TLS and be none.
  if (!out.client_ca_file.empty() && !verifies) {
    tls.error("client_ca_file",
              auth_given ? "client_auth_type does not verify client certificates; use "
                           "VerifyClientCertIfGiven or RequireAndVerifyClientCert"
                         : "set client_auth_type (RequireAndVerifyClientCert for mutual TLS)");
    ok = false;
  }
  if (auto v = read_version(tls, "min_version")) out.min_version = *v;
  if (auto v = read_version(tls, "max_version")) out.max_version = *v;
  if (out.max_version != 0 && out.max_version < out.min_version) {
    tls.error("max_version", "is below min_version");
    ok = false;
  }
  tls.finish();
  if (!ok || !cert || !key) return std::nullopt;
  out.cert_file = resolve(file, *cert);
  out.key_file = resolve(file, *key);
  return out;
}

}  // namespace

bool parse_basic_credentials(std::string_view header, std::string& user, std::string& password) {
  constexpr std::string_view kScheme = "basic ";
  if (header.size() <= kScheme.size() || header.size() > 4096) return false;
  for (size_t i = 0; i < kScheme.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(header[i])) != kScheme[i]) return false;
  }
  std::string b64(header.substr(kScheme.size()));
  while (!b64.empty() && b64.front() == ' ') b64.erase(0, 1);
  while (!b64.empty() && b64.back() == ' ') b64.pop_back();
  if (b64.empty() || b64.size() % 4 != 0) return false;
  std::string decoded(b64.size() / 4 * 3, '\0');
  const int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(decoded.data()),
                                reinterpret_cast<const unsigned char*>(b64.data()),
                                static_cast<int>(b64.size()));
  if (n < 0) return false;
  size_t len = static_cast<size_t>(n);
  // EVP_DecodeBlock counts the padding as zero bytes.
  if (b64.back() == '=') --len;
  if (b64.size() >= 2 && b64[b64.size() - 2] == '=') --len;
  decoded.resize(len);
  const auto colon = decoded.find(':');
  if (colon == std::string::npos) return false;
  user = decoded.substr(0, colon);
  password = decoded.substr(colon + 1);
  // crypt() reads a C string: a password with a NUL in it would be checked cut short.
  return password.find('\0') == std::string::npos;
}

bool looks_like_bcrypt(const std::string& hash) {
  // $2b$10$ + 22 characters of salt + 31 of hash.
  if (hash.size() != 60 || hash[0] != '$' || hash[1] != '2' || hash[3] != '$' || hash[6] != '$')
    return false;
  if (hash[2] != 'a' && hash[2] != 'b' && hash[2] != 'y') return false;
  if (!std::isdigit(static_cast<unsigned char>(hash[4])) ||
      !std::isdigit(static_cast<unsigned char>(hash[5])))
    return false;
  for (size_t i = 7; i < hash.size(); ++i) {
    const char c = hash[i];
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '/') return false;
  }
  return true;
}

WebConfigLoad load_web_config(const std::string& path) {
  BoundedFileReader files;
  std::string error;
  auto text = files.read(path, error);
  if (!text) {
    WebConfigLoad load;
    load.errors.add({path, 0, "", "cannot read the web config: " + error});
    return load;
  }
  return load_web_config_text(*text, path, files);
}

WebConfigLoad load_web_config_text(const std::string& text, const std::string& path,
                                   BoundedFileReader& files) {
  WebConfigLoad load;
  try {
    YAML::Node root;
    try {
      root = YAML::Load(text);
    } catch (const YAML::Exception& e) {
      load.errors.add({path, e.mark.line + 1, "", "invalid YAML: " + e.msg});
      return load;
    }
    WebConfig config;
    config.file = path;
    if (root.IsNull()) {  // an empty file: plain HTTP, no users, as in exporter-toolkit
      load.config = std::move(config);
      return load;
    }
    if (!root.IsMap()) {
      load.errors.add({path, root.Mark().line + 1, "",
                       "the web config must be a mapping with tls_server_config: and/or "
                       "basic_auth_users:"});
      return load;
    }
    Secrets secrets;
    ConfigReadContext ctx{path, &load.errors, &secrets, &files};
    YamlSection top(root, "", ctx);
    if (auto tls = top.get_section("tls_server_config")) config.tls = read_tls(*tls, path);
    if (auto users = top.get_string_map("basic_auth_users")) {
      for (auto& [user, hash] : *users) {
        // The hash is never quoted: it is as good as a password to an offline attack.
        if (user.empty() || user.find(':') != std::string::npos) {
          top.error("basic_auth_users", "a user name must be non-empty and hold no ':'");
        } else if (!looks_like_bcrypt(hash)) {
          const YAML::Node& users_node = root;
          top.error_at(users_node["basic_auth_users"][user], "basic_auth_users",
                       "user \"" + user +
                           "\": not a bcrypt hash ($2y$/$2b$/$2a$, 60 characters); make one with "
                           "`canaryd hash-password`");
        } else {
          config.basic_auth_users[user] = hash;
        }
      }
    }
    top.finish();
    if (load.errors.empty()) load.config = std::move(config);
  } catch (const std::exception& e) {
    load.errors.add({path, 0, "", fmt::format("cannot load the web config: {}", e.what())});
  }
  return load;
}

}  // namespace canaryd
