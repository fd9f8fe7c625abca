#include "probes/common/config_fields.h"

#include <fmt/format.h>
#include <re2/re2.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>

namespace canaryd {

bool valid_header_name(std::string_view name) {
  return !name.empty() && std::all_of(name.begin(), name.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) ||
           std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
  });
}

std::vector<std::pair<std::string, std::string>> read_headers(YamlSection& s,
                                                              std::string_view key) {
  std::vector<std::pair<std::string, std::string>> out;
  auto h = s.get_string_map(key);
  if (!h) return out;
  for (auto& [name, value] : *h) {
    if (!valid_header_name(name)) {
      s.error(key, fmt::format("invalid header name \"{}\"", name));
    } else if (value.find_first_of("\r\n") != std::string::npos) {
      s.error(key, fmt::format("header {} contains a line break", name));
    } else {
      out.emplace_back(name, value);
    }
  }
  return out;
}

std::string read_ca_file(YamlSection& tls) {
  auto ca = tls.get_string("ca_file");
  if (!ca) return {};
  if (access(ca->c_str(), R_OK) != 0) {
    tls.error("ca_file", fmt::format("cannot read {}", *ca));
    return {};
  }
  return *ca;
}

TlsOptions read_tls_options(YamlSection& tls) {
  TlsOptions o;
  o.ca_file = read_ca_file(tls);
  if (auto name = tls.get_string("server_name")) {
    if (name->empty() || name->find_first_of(" /:\r\n\t") != std::string::npos) {
      tls.error("server_name", fmt::format("invalid host name \"{}\"", *name));
    } else {
      o.server_name = *name;
    }
  }
  if (auto skip = tls.get_bool("insecure_skip_verify")) o.insecure_skip_verify = *skip;
  return o;
}

std::optional<std::string> CurlUrl::get(CURLUPart part, unsigned flags) const {
  char* out = nullptr;
  if (curl_url_get(h_, part, &out, flags) != CURLUE_OK) return std::nullopt;
  std::string s(out);
  curl_free(out);
  return s;
}

std::shared_ptr<re2::RE2> read_regex(YamlSection& s, std::string_view key) {
  auto text = s.get_string(key);
  if (!text) return nullptr;
  RE2::Options options;
  options.set_log_errors(false);  // the error is the config's, reported once, not logged
  auto compiled = std::make_shared<RE2>(*text, options);
  if (!compiled->ok()) {
    s.error(key, "invalid regular expression: " + compiled->error());
    return nullptr;
  }
  return compiled;
}

}  // namespace canaryd
