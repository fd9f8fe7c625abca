// Config fields several probe types read the same way: HTTP header maps and
// URLs (parsed with libcurl's URL API, which also knows ws:// and wss://).
#pragma once

#include <curl/curl.h>

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/yaml_section.h"

namespace re2 {
class RE2;
}

namespace canaryd {

// RFC 9110 token characters.
bool valid_header_name(std::string_view name);

// Reads a mapping of header names to values at `key`; an invalid name or a
// value with a line break is an error naming the header.
std::vector<std::pair<std::string, std::string>> read_headers(YamlSection& s, std::string_view key);

// Reads `ca_file` from a tls section: it must be readable now, so a typo is
// a config error rather than a TLS failure at every run. Empty if absent.
std::string read_ca_file(YamlSection& tls);

// The client TLS options every probe type that speaks TLS itself takes.
struct TlsOptions {
  std::string ca_file;                     // empty: the system's trust store
  std::optional<std::string> server_name;  // present and verified instead of the host
  bool insecure_skip_verify = false;
};

// Reads a `tls` section's ca_file, server_name and insecure_skip_verify. The
// caller reads its own extra keys, if any, then calls tls.finish().
TlsOptions read_tls_options(YamlSection& tls);

// RAII for curl's URL handle.
class CurlUrl {
 public:
  CurlUrl() : h_(curl_url()) {}
  ~CurlUrl() { curl_url_cleanup(h_); }
  CurlUrl(const CurlUrl&) = delete;
  CurlUrl& operator=(const CurlUrl&) = delete;

  bool set(const std::string& url, unsigned flags = 0) {
    return curl_url_set(h_, CURLUPART_URL, url.c_str(), flags) == CURLUE_OK;
  }
  void set_part(CURLUPart part, const char* value) { curl_url_set(h_, part, value, 0); }
  std::optional<std::string> get(CURLUPart part, unsigned flags = 0) const;

 private:
  CURLU* h_;
};

// The RE2 regular expression at `key`, compiled; nullptr when the key is
// absent or the expression is invalid (then an error naming it is recorded).
std::shared_ptr<re2::RE2> read_regex(YamlSection& s, std::string_view key);

}  // namespace canaryd
