#include "probes/agent_pipeline/agent_options.h"

#include <fmt/format.h>

#include <algorithm>
#include <vector>

#include "probes/common/config_fields.h"

namespace canaryd {

namespace {

bool uses_token(const WsEndpoint& ep) {
  auto has = [](const std::string& s) { return s.find("{{token}}") != std::string::npos; };
  return std::any_of(ep.subprotocols.begin(), ep.subprotocols.end(), has) ||
         std::any_of(ep.headers.begin(), ep.headers.end(),
                     [&](const auto& h) { return has(h.second); });
}

bool has_token(const std::string& s) { return s.find("{{token}}") != std::string::npos; }

void read_sse_options(YamlSection& s, SseOptions& o) {
  constexpr int64_t kMaxBytes = 256ll * 1024 * 1024;
  if (auto url = s.get_string("url")) {
    CurlUrl u;
    if (has_token(*url)) {
      s.error("url", "{{token}} goes in a header, never in the URL (URLs are shown)");
    } else if (!u.set(*url)) {
      s.error("url", "not a valid URL");
    } else {
      auto scheme = u.get(CURLUPART_SCHEME);
      auto host = u.get(CURLUPART_HOST);
      if (scheme != "http" && scheme != "https") {
        s.error("url", "scheme must be http or https");
      } else if (!host || host->empty()) {
        s.error("url", "the URL has no host");
      } else if (u.get(CURLUPART_USER)) {
        s.error("url", "credentials in the URL are not supported; use headers");
      } else {
        o.url = *url;
        o.https = scheme == "https";
        auto port = u.get(CURLUPART_PORT);
        o.display_url = fmt::format("{}://{}{}{}", *scheme, *host, port ? ":" + *port : "",
                                    u.get(CURLUPART_PATH).value_or("/"));
      }
    }
  } else if (!s.has("url")) {
    s.error("", "missing required key url");
  }
  o.headers = read_headers(s, "headers");
  o.headers_use_token = std::any_of(o.headers.begin(), o.headers.end(),
                                    [](const auto& h) { return has_token(h.second); });
  if (auto from = s.get_string("event_type_from")) {
    if (*from == "data") {
      o.type_from_data = true;
    } else if (*from != "event") {
      s.error("event_type_from", fmt::format("\"{}\" is not event or data", *from));
    }
  }
  if (auto end = s.get_string("end_event")) {
    if (end->empty())
      s.error("end_event", "expected an event type");
    else
      o.end_event = *end;
  }
  if (auto end = s.get_string("end_data")) {
    if (end->empty() || end->find_first_of("\r\n") != std::string::npos)
      s.error("end_data", "expected one non-empty line");
    else
      o.end_data = *end;
  }
  if (auto m = s.get_int("max_line_bytes", 16, kMaxBytes))
    o.max_line_bytes = static_cast<size_t>(*m);
  if (auto m = s.get_int("max_event_bytes", 16, kMaxBytes))
    o.max_event_bytes = static_cast<size_t>(*m);
  if (auto m = s.get_int("max_total_bytes", 16, kMaxBytes))
    o.max_total_bytes = static_cast<size_t>(*m);
  if (auto tls = s.get_section("tls")) {
    o.ca_file = read_ca_file(*tls);
    if (auto skip = tls->get_bool("insecure_skip_verify")) o.insecure_skip_verify = *skip;
    tls->finish();
  }
}

}  // namespace

nlohmann::json fill_json(const nlohmann::json& tmpl, const std::string& run_id,
                         const std::string& token) {
  if (tmpl.is_string())
    return fill_template(fill_template(tmpl.get<std::string>(), "run_id", run_id), "token", token);
  if (tmpl.is_object()) {
    nlohmann::json out = nlohmann::json::object();
    for (const auto& [k, v] : tmpl.items()) out[k] = fill_json(v, run_id, token);
    return out;
  }
  if (tmpl.is_array()) {
    nlohmann::json out = nlohmann::json::array();
    for (const auto& v : tmpl) out.push_back(fill_json(v, run_id, token));
    return out;
  }
  return tmpl;
}

std::optional<AgentOptions> read_agent_options(YamlSection& s) {
  AgentOptions o;
  size_t errors_before = s.context().errors->size();

  if (auto token = s.get_section("token")) {
    TokenStep t;
    auto url = token->get_string("url");
    if (!url) {
      if (!token->has("url")) token->error("", "missing required key url");
    } else if (url->rfind("http://", 0) != 0 && url->rfind("https://", 0) != 0) {
      token->error("url", "scheme must be http or https");
    } else {
      t.http.url = *url;
    }
    if (auto m = token->get_string("method")) {
      if (m->empty() ||
          !std::all_of(m->begin(), m->end(), [](char c) { return c >= 'A' && c <= 'Z'; }))
        token->error("method", fmt::format("invalid method \"{}\"", *m));
      else
        t.http.method = *m;
    }
    t.http.headers = read_headers(*token, "headers");
    t.http.body = token->get_string("body");
    if (auto path = token->get_string("json_path")) {
      t.json_path = *path;
    } else if (!token->has("json_path")) {
      token->error("", "missing required key json_path (where the token is in the response)");
    }
    if (auto cache = token->get_duration("cache_for")) t.cache_for = *cache;
    if (auto tls = token->get_section("tls")) {
      t.http.ca_file = read_ca_file(*tls);
      if (auto skip = tls->get_bool("insecure_skip_verify")) t.http.insecure_skip_verify = *skip;
      tls->finish();
    }
    token->finish();
    o.token = std::move(t);
  }

  if (auto t = s.get_string("transport")) {
    if (*t == "sse") {
      o.transport = AgentTransport::kSse;
    } else if (*t != "websocket") {
      s.error("transport", fmt::format("\"{}\" is not websocket or sse", *t));
    }
  }
  const bool sse = o.transport == AgentTransport::kSse;
  if (sse) {
    if (s.get_node("websocket")) s.error("websocket", "not used with transport: sse (see sse:)");
    if (auto section = s.get_section("sse")) {
      read_sse_options(*section, o.sse);
      section->finish();
      if (o.sse.headers_use_token && !o.token)
        s.error("sse", "{{token}} is used but there is no token step");
    } else if (!s.has("sse")) {
      s.error("", "missing required key sse (transport: sse)");
    }
  } else if (s.get_node("sse")) {
    s.error("sse", "only with transport: sse");
  } else if (auto ws = s.get_section("websocket")) {
    read_ws_endpoint(*ws, *o.endpoint, /*templates=*/true);
    ws->finish();
    o.endpoint_uses_token = uses_token(*o.endpoint);
    if (o.endpoint_uses_token && !o.token)
      s.error("websocket", "{{token}} is used but there is no token step");
  } else if (!s.has("websocket")) {
    s.error("", "missing required key websocket");
  }

  if (auto send = s.get_section("send")) {
    if (send->has("json")) {
      if (auto json = send->get_json("json")) o.send_json = std::move(*json);
    } else if (sse && send->get_node("text")) {
      send->error("text", "transport: sse posts JSON: use send.json");
    } else if (auto text = send->get_string("text")) {
      o.send_text = *text;
    } else if (!send->has("json") && !send->has("text")) {
      send->error("", "expected json or text");
    }
    send->finish();
  } else if (!s.has("send")) {
    s.error("", "missing required key send");
  }

  if (auto f = s.get_string("event_type_field")) o.type_field = *f;
  if (auto f = s.get_string("correlation_field")) o.correlation_field = *f;
  if (auto order = s.get_string("order")) {
    if (*order == "strict") {
      o.strict = true;
    } else if (*order == "any") {
      o.strict = false;
    } else {
      s.error("order", fmt::format("\"{}\" is not strict or any", *order));
    }
  }
  static const std::vector<std::string> kReserved = {"token",     "dns",         "connect", "tls",
                                                     "handshake", "first_event", "close",   "total",
                                                     "events",    kOtherEvent};
  if (auto events = s.get_section_list("events")) {
    for (auto& e : *events) {
      ExpectedEvent ev;
      if (auto type = e.get_string("type")) {
        if (type->empty() || type->size() > 64 ||
            !std::all_of(type->begin(), type->end(), [](char c) {
              return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' ||
                     c == '.';
            })) {
          e.error("type", "expected a name of letters, digits, _ - . (at most 64)");
        } else if (std::find(kReserved.begin(), kReserved.end(), *type) != kReserved.end()) {
          e.error("type", fmt::format("\"{}\" is reserved for a phase name", *type));
        } else {
          ev.type = *type;
        }
      } else if (!e.has("type")) {
        e.error("", "missing required key type");
      }
      if (auto req = e.get_string_list("required")) ev.required = *req;
      e.finish();
      if (!ev.type.empty()) o.events.push_back(std::move(ev));
    }
    if (events->empty()) s.error("events", "expected at least one event");
  } else if (!s.has("events")) {
    s.error("", "missing required key events");
  }
  if (auto t = s.get_duration("first_event_timeout")) o.first_event_timeout = *t;
  if (auto t = s.get_duration("idle_timeout")) o.idle_timeout = *t;
  if (sse && s.get_node("max_frame_bytes")) {
    s.error("max_frame_bytes", "only with transport: websocket (see sse.max_event_bytes)");
  } else if (auto m = s.get_int("max_frame_bytes", 1, 256ll * 1024 * 1024)) {
    o.endpoint->max_message_bytes = static_cast<size_t>(*m);
    o.endpoint->max_message_key = "max_frame_bytes";
  }
  if (auto n = s.get_int("sessions", 1, kMaxAgentSessions)) {
    if (sse && *n != 1)
      s.error("sessions", "transport: sse runs one conversation per run");
    else
      o.sessions = static_cast<int>(*n);
  }
  s.finish();
  if (s.context().errors->size() != errors_before) return std::nullopt;
  return o;
}

}  // namespace canaryd
