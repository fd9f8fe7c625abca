// A WebSocket endpoint from its YAML (shared by the websocket and
// agent_pipeline probes), apart from the connection machinery in ws_client.cc.
#include <curl/curl.h>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cstdlib>
#include <string>
#include <string_view>

#include "base/secrets.h"
#include "probes/common/config_fields.h"
#include "probes/common/ws_client.h"

namespace canaryd {

namespace {

bool valid_subprotocol(std::string_view p) {
  // RFC 6455: a token (RFC 2616), so no separators, spaces or controls.
  return !p.empty() && std::all_of(p.begin(), p.end(), [](char c) {
    return c > 32 && c < 127 &&
           std::string_view("()<>@,;:\\\"/[]?={}").find(c) == std::string_view::npos;
  });
}

}  // namespace

std::string WsEndpoint::describe() const {
  std::string out = display_url;
  if (!subprotocol_labels.empty()) out += fmt::format(" [{}]", fmt::join(subprotocol_labels, ", "));
  return out;
}

std::string fill_template(std::string text, std::string_view name, std::string_view value) {
  const std::string placeholder = "{{" + std::string(name) + "}}";
  for (size_t at = text.find(placeholder); at != std::string::npos;
       at = text.find(placeholder, at + value.size()))
    text.replace(at, placeholder.size(), value);
  return text;
}

void read_ws_endpoint(YamlSection& s, WsEndpoint& o, bool templates) {
  auto url = s.get_string("url");
  if (!url) {
    if (!s.has("url")) s.error("", "missing required key url");
  } else {
    CurlUrl u;
    if (!u.set(*url, CURLU_NON_SUPPORT_SCHEME)) {
      s.error("url", "not a valid URL");
    } else {
      auto scheme = u.get(CURLUPART_SCHEME);
      auto host = u.get(CURLUPART_HOST);
      if (scheme != "ws" && scheme != "wss") {
        s.error("url", "scheme must be ws or wss");
      } else if (!host || host->empty()) {
        s.error("url", "the URL has no host");
      } else if (u.get(CURLUPART_USER)) {
        s.error("url", "credentials in the URL are not supported; use headers");
      } else {
        o.tls = scheme == "wss";
        o.host = *host;
        if (o.host.size() > 2 && o.host.front() == '[')
          o.host = o.host.substr(1, o.host.size() - 2);
        auto port = u.get(CURLUPART_PORT);
        o.port = port ? std::atoi(port->c_str()) : (o.tls ? 443 : 80);
        o.path = u.get(CURLUPART_PATH).value_or("/");
        if (auto q = u.get(CURLUPART_QUERY)) o.path += "?" + *q;
        o.host_header = *host;
        if (port) o.host_header += ":" + *port;
        o.display_url = fmt::format("{}://{}{}{}", *scheme, *host, port ? ":" + *port : "",
                                    u.get(CURLUPART_PATH).value_or("/"));
      }
    }
  }

  if (auto list = s.get_string_list("subprotocols")) {
    for (const auto& p : *list) {
      if (!valid_subprotocol(templates ? fill_template(p, "token", "t") : p)) {
        s.error("subprotocols", fmt::format("\"{}\" is not a valid subprotocol name (a token: no "
                                            "spaces, commas or separators)",
                                            s.context().secrets ? s.context().secrets->redact(p)
                                                                : std::string(kRedacted)));
        continue;
      }
      o.subprotocols.push_back(p);
      o.subprotocol_labels.push_back(s.context().secrets ? s.context().secrets->redact(p) : p);
    }
  }
  if (auto want = s.get_string("expect_subprotocol")) {
    if (o.subprotocols.empty()) {
      // A subprotocols list with errors has been reported already.
      if (!s.has("subprotocols"))
        s.error("expect_subprotocol", "needs a subprotocols list to choose from");
    } else if (*want != "any_offered") {
      auto it = std::find(o.subprotocols.begin(), o.subprotocols.end(), *want);
      if (it == o.subprotocols.end()) {
        s.error("expect_subprotocol",
                fmt::format("\"{}\" is not in subprotocols (or use any_offered)", *want));
      } else {
        o.expect_subprotocol = static_cast<size_t>(it - o.subprotocols.begin());
      }
    }
  }
  o.headers = read_headers(s, "headers");
  if (auto origin = s.get_string("origin")) o.origin = *origin;
  if (auto m = s.get_int("max_message_bytes", 1, 256ll * 1024 * 1024))
    o.max_message_bytes = static_cast<size_t>(*m);

  if (auto tls = s.get_section("tls")) {
    if (url && !o.tls && !o.host.empty()) tls->error("", "tls options need a wss:// url");
    o.ca_file = read_ca_file(*tls);
    if (auto name = tls->get_string("server_name")) {
      if (name->empty() || name->find_first_of(" /:\r\n") != std::string::npos) {
        tls->error("server_name", "expected a host name");
      } else {
        o.host_header = *name;
      }
    }
    if (auto skip = tls->get_bool("insecure_skip_verify")) o.insecure_skip_verify = *skip;
    tls->finish();
  }
}

}  // namespace canaryd
