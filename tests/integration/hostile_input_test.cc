// Targets that misbehave on purpose: JSON nested to blow a recursive stack,
// HTTP that breaks the protocol in ways libcurl reports misleadingly, TLS that
// stalls, and TLS sessions that must not carry over between runs. Each case is
// read the way a user reads it: `once --json` (reason, phase, exit code) and a
// running daemon's /metrics and state.
#include <arpa/inet.h>
#include <fmt/format.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "tests/support/harness.h"
#include "tests/support/servers.h"

using namespace canaryd::test;
using namespace std::chrono_literals;
using nlohmann::json;

namespace {

struct Platform : TlsPlatform {
  std::string https(const std::string& path) const { return tls_url("https", "good", path); }
};

Platform& platform() {
  static Platform p;
  return p;
}

std::string probe(const std::string& name, const std::string& body,
                  const std::string& timeout = "5s", const std::string& interval = "10s") {
  return fmt::format(
      "  - name: {}\n    type: http\n    interval: {}\n    timeout: {}\n    http:\n{}", name,
      interval, timeout, body);
}

std::string url_line(const std::string& url) { return fmt::format("      url: \"{}\"\n", url); }

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// Connections that fill a RawListener::kNeverAccepts backlog (the kernel still
// completes one or two handshakes), so the probe's own connect stays in SYN-SENT.
struct BacklogFiller {
  std::vector<int> fds;
  explicit BacklogFiller(int port) {
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
    for (int i = 0; i < 3; ++i) {
      int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
      if (fd < 0) continue;
      [[maybe_unused]] int rc = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
      fds.push_back(fd);
    }
  }
  ~BacklogFiller() {
    for (int fd : fds) close(fd);
  }
};

std::string daemon_config(const std::string& probes) {
  return "global:\n  listen: \"{{listen}}\"\nprobes:\n" + probes;
}

}  // namespace

TEST_CASE("hostile: JSON nested 300,000 deep is refused, not recursed over", "[http][hostile]") {
  auto& p = platform();
  std::string config = "probes:\n" +
                       probe("deep", url_line(p.fp.url("/hostile?mode=deep_json")) +
                                         "      expect: {json: {status: healthy}}\n") +
                       // Within the bound the same shape is an ordinary document.
                       probe("shallow", url_line(p.fp.url("/hostile?mode=deep_json&depth=100")) +
                                            "      expect: {json: {status.0.0: x}}\n");
  int code = 0;
  json out = once_json(config, &code);
  CHECK(code == 1);
  auto deep = result_of(out, "deep");
  CHECK(deep["reason"] == "assertion");
  CHECK(result_message(deep) == "body is nested deeper than 128 levels");
  CHECK(deep["details"]["status_code"] == 200);
  // The bound is on depth, not on JSON: a 100-deep document is compared as usual
  // (and, being an array, does not equal the scalar expectation).
  auto shallow = result_of(out, "shallow");
  CHECK(shallow["reason"] == "assertion");
  CHECK(contains(result_message(shallow), "JSON field status.0.0 is [[[[["));
  CHECK(contains(result_message(shallow), "(array, expected string)"));
}

TEST_CASE("hostile: a daemon survives deep JSON in HTTP bodies and agent events",
          "[http][agent][hostile][daemon]") {
  auto& p = platform();
  std::string probes =
      probe("deep-http",
            url_line(p.fp.url("/hostile?mode=deep_json")) +
                "      expect: {json: {status: healthy}}\n",
            "1s", "1s") +
      fmt::format(
          "  - name: deep-agent\n    type: agent_pipeline\n    interval: 1s\n    timeout: 1s\n"
          "    agent_pipeline:\n"
          "      websocket: {{url: \"ws://127.0.0.1:{}/ws?agent=deep_correlation&"
          "event_delay_ms=10\"}}\n"
          "      send: {{json: {{type: user_message, payload: {{thread_id: "
          "\"{{{{run_id}}}}\"}}}}}}\n"
          "      correlation_field: thread_id\n"
          "      events: [{{type: agent_started}}]\n",
          p.fp.http_port());
  Daemon d(daemon_config(probes));
  REQUIRE(
      wait_until([&] { return has_run(d, "deep-http", 3) && has_run(d, "deep-agent", 3); }, 60s));
  CHECK(d.process().running());
  std::string m = d.metrics();
  CHECK(metric_value(m, "canary_probe_failures_total",
                     {{"probe", "deep-http"}, {"reason", "assertion"}}) >= 3.0);
  INFO(m);
  CHECK(metric_value(m, "canary_probe_failures_total",
                     {{"probe", "deep-agent"}, {"reason", "protocol"}}) >= 1.0);
  auto agent = d.state("deep-agent")["last"];
  CHECK(contains(agent.value("message", std::string()), "nested deeper than 128 levels"));
  CHECK(d.state("deep-http")["last"]["message"] == "body is nested deeper than 128 levels");
}

TEST_CASE("hostile: broken HTTP framing is protocol, never internal or connect",
          "[http][hostile]") {
  auto& p = platform();
  auto hostile = [&](const std::string& mode) { return p.fp.url("/hostile?mode=" + mode); };
  std::string config =
      "probes:\n" + probe("long-header", url_line(hostile("long_header"))) +
      probe("many-headers", url_line(hostile("many_headers&count=200"))) +
      probe("bad-chunk", url_line(hostile("bad_chunk"))) +
      probe("long-trailer", url_line(hostile("long_trailer"))) +
      probe("bad-location", url_line(hostile("bad_location")) + "      follow_redirects: true\n") +
      probe("cut-headers", url_line(hostile("cut_headers"))) +
      probe("gzip-junk",
            url_line(hostile("gzip_trailing_junk")) + "      expect: {body_regex: x}\n") +
      probe("gzip-bomb", url_line(hostile("gzip_bomb")) +
                             "      max_body_bytes: 65536\n      expect: {body_regex: x}\n") +
      // What is the connection's fault stays so: a reset before and during the body.
      probe("reset", url_line(p.fp.url("/health?mode=reset"))) +
      probe("reset-body", url_line(hostile("reset_body"))) +
      // Headers that fit are fine.
      probe("some-headers", url_line(hostile("many_headers&count=20")));
  int code = 0;
  json out = once_json(config, &code);
  INFO(out.dump(2));
  CHECK(code == 1);
  auto reason = [&](const std::string& name) { return result_of(out, name)["reason"]; };

  CHECK(reason("long-header") == "protocol");
  CHECK(result_message(result_of(out, "long-header")) ==
        "invalid HTTP response: response headers exceed 65536 bytes");
  CHECK(reason("many-headers") == "protocol");
  CHECK(result_message(result_of(out, "many-headers")) ==
        "invalid HTTP response: response headers exceed 65536 bytes");
  CHECK(reason("bad-chunk") == "protocol");
  CHECK(contains(result_message(result_of(out, "bad-chunk")), "chunked-encoding"));
  CHECK(reason("long-trailer") == "protocol");
  CHECK(reason("bad-location") == "protocol");
  CHECK(contains(result_message(result_of(out, "bad-location")), "redirect"));
  CHECK(reason("cut-headers") == "protocol");
  CHECK(result_message(result_of(out, "cut-headers")) ==
        "invalid HTTP response: the connection closed before the response headers ended");
  CHECK(reason("gzip-junk") == "protocol");
  CHECK(contains(result_message(result_of(out, "gzip-junk")), "cannot be decoded"));
  CHECK(reason("gzip-bomb") == "body_too_large");
  CHECK(reason("reset") == "connect");
  CHECK(reason("reset-body") == "connect");
  CHECK(reason("some-headers") == "ok");
}

TEST_CASE("hostile: a stalled TLS handshake times out in the tls phase", "[http][hostile]") {
  // Accepts TCP and never answers the ClientHello.
  RawListener silent(RawListener::Mode::kSilent);
  // Never completes the TCP handshake.
  RawListener never(RawListener::Mode::kNeverAccepts);
  BacklogFiller filler(never.port());
  std::string config =
      "probes:\n" +
      probe("tls-stall", url_line(fmt::format("https://127.0.0.1:{}/health", silent.port())),
            "1s") +
      probe("syn-stall", url_line(fmt::format("https://127.0.0.1:{}/health", never.port())), "1s") +
      probe("http-stall", url_line(fmt::format("http://127.0.0.1:{}/health", silent.port())), "1s");
  int code = 0;
  json out = once_json(config, &code);
  INFO(out.dump(2));
  CHECK(code == 1);
  auto tls = result_of(out, "tls-stall");
  CHECK(tls["reason"] == "timeout");
  CHECK(detail(tls, "timeout_phase") == "tls");
  auto syn = result_of(out, "syn-stall");
  CHECK(syn["reason"] == "timeout");
  CHECK(detail(syn, "timeout_phase") == "connect");
  auto http = result_of(out, "http-stall");
  CHECK(http["reason"] == "timeout");
  CHECK(detail(http, "timeout_phase") == "first_byte");
}

TEST_CASE("hostile: JSON expectations compare as the YAML spells them", "[http][hostile]") {
  auto& p = platform();
  std::string body =
      R"({"code":"5","count":5,"ok":"true","flag":true,"none":null,"hex":31,"ratio":0.5,)"
      R"("big":18446744073709551615,"neg":-7,"text":"null"})";
  std::string escaped;
  for (unsigned char c : body) escaped += fmt::format("%{:02X}", c);
  std::string url = p.fp.url("/hostile?mode=json&body=" + escaped);
  auto json_probe = [&](const std::string& name, const std::string& expect) {
    return probe(name, url_line(url) + "      expect: {json: {" + expect + "}}\n");
  };
  std::string config =
      "probes:\n" +
      json_probe("typed",
                 "code: \"5\", count: 5, ok: 'true', flag: true, none: null, "
                 "hex: 0x1F, ratio: 0.50, big: 18446744073709551615, neg: -7, "
                 "text: \"null\"") +
      json_probe("int-vs-float", "count: 5.0") + json_probe("number-vs-string", "code: 5") +
      json_probe("string-vs-number", "count: \"5\"") + json_probe("bool-vs-string", "ok: true") +
      json_probe("string-vs-bool", "flag: 'true'") + json_probe("null-vs-string", "text: null") +
      json_probe("string-vs-null", "none: 'null'") + json_probe("tilde", "none: ~");
  int code = 0;
  json out = once_json(config, &code);
  INFO(out.dump(2));
  CHECK(code == 1);
  CHECK(result_of(out, "typed")["reason"] == "ok");
  CHECK(result_of(out, "tilde")["reason"] == "ok");
  CHECK(result_of(out, "int-vs-float")["reason"] == "ok");
  for (const char* name : {"number-vs-string", "string-vs-number", "bool-vs-string",
                           "string-vs-bool", "null-vs-string", "string-vs-null"}) {
    INFO(name);
    CHECK(result_of(out, name)["reason"] == "assertion");
  }
  CHECK(result_message(result_of(out, "number-vs-string")) ==
        "JSON field code is \"5\", expected 5 (string, expected number)");
  CHECK(result_message(result_of(out, "string-vs-number")) ==
        "JSON field count is 5, expected \"5\" (number, expected string)");
}

TEST_CASE("hostile: every HTTPS run does a full TLS handshake", "[http][agent][hostile][daemon]") {
  // The fixture's TLS listeners issue session tickets; a client that kept the
  // last run's session would resume from the second run on. The HTTP probe
  // checks it in the body; the agent's token step gets a 409 if it resumed, or
  // if it kept the connection from the run before.
  auto& p = platform();
  std::string probes =
      probe("fresh-tls",
            url_line(p.https("/tls_session")) +
                fmt::format("      tls: {{ca_file: {}}}\n", p.ca()) +
                "      expect: {json: {tls: true, session_reused: false}}\n",
            "1s", "1s") +
      fmt::format(
          "  - name: fresh-token-tls\n    type: agent_pipeline\n    interval: 1s\n"
          "    timeout: 1s\n    agent_pipeline:\n"
          "      token: {{url: \"{}\", json_path: data.token, tls: {{ca_file: {}}}}}\n"
          "      websocket: {{url: \"ws://127.0.0.1:{}/ws?agent=happy&event_delay_ms=10\"}}\n"
          "      send: {{json: {{type: user_message}}}}\n"
          "      events: [{{type: agent_started}}]\n",
          p.https("/tls_session?require_fresh=1"), p.ca(), p.fp.http_port());
  Daemon d(daemon_config(probes));
  REQUIRE(wait_until([&] { return has_run(d, "fresh-tls", 4) && has_run(d, "fresh-token-tls", 4); },
                     60s));
  std::string m = d.metrics();
  INFO(m);
  CHECK(metric_value(m, "canary_probe_failures_total",
                     {{"probe", "fresh-tls"}, {"reason", "assertion"}}) == 0.0);
  CHECK(metric_value(m, "canary_probe_failures_total",
                     {{"probe", "fresh-token-tls"}, {"reason", "auth"}}) == 0.0);
  auto last = d.state("fresh-tls")["last"];
  INFO(last.dump(2));
  CHECK(last["success"] == true);
  CHECK(last["details"].contains("cert_expiry"));
  CHECK(last["phases"].contains("tls"));
}

TEST_CASE("hostile: the agent's token step says what was wrong with a hostile response",
          "[agent][auth][hostile]") {
  auto& p = platform();
  auto agent = [&](const std::string& name, const std::string& mode) {
    return fmt::format(
        "  - name: {}\n    type: agent_pipeline\n    interval: 10s\n    timeout: 5s\n"
        "    agent_pipeline:\n"
        "      token: {{url: \"{}\", method: GET, json_path: data.token}}\n"
        "      websocket: {{url: \"ws://127.0.0.1:{}/ws?agent=happy\"}}\n"
        "      send: {{json: {{type: user_message}}}}\n"
        "      events: [{{type: agent_started}}]\n",
        name, p.fp.url("/hostile?mode=" + mode), p.fp.http_port());
  };
  std::string config = "probes:\n" + agent("token-cut", "cut_headers") +
                       agent("token-long-header", "long_header") +
                       agent("token-deep", "deep_json&depth=20000");
  int code = 0;
  json out = once_json(config, &code);
  INFO(out.dump(2));
  CHECK(code == 1);
  for (const char* name : {"token-cut", "token-long-header", "token-deep"}) {
    INFO(name);
    CHECK(result_of(out, name)["reason"] == "auth");
  }
  CHECK(result_message(result_of(out, "token-cut")) ==
        "token step: request failed: the connection closed before the response headers ended");
  CHECK(result_message(result_of(out, "token-long-header")) ==
        "token step: request failed: response headers exceed 65536 bytes");
  CHECK(result_message(result_of(out, "token-deep")) ==
        "token step: the response is nested deeper than 128 levels");
}
