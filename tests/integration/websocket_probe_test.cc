// The WebSocket probe against the fake platform's RFC 6455 endpoint (GET /ws)
// over real loopback TCP and TLS, read the way a deploy pipeline reads it
// (`canaryd once --json`) and the way an SRE reads it (/metrics and
// /api/v1/state of a running daemon).
#include <fmt/format.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <ctime>
#include <filesystem>
#include <initializer_list>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "tests/support/harness.h"
#include "tests/support/servers.h"

using namespace canaryd::test;
using namespace std::chrono_literals;
using nlohmann::json;

namespace {

// Every reason a WebSocket probe can report, each pre-created at 0.
const std::vector<std::string> kWsReasons = {"timeout",
                                             "dns",
                                             "connect_refused",
                                             "tls",
                                             "tls_hostname",
                                             "tls_expired",
                                             "ws_upgrade_rejected",
                                             "ws_no_subprotocol",
                                             "ws_wrong_subprotocol",
                                             "ws_abnormal_close",
                                             "assertion",
                                             "protocol"};

const std::vector<std::string> kWsPhases = {"dns",           "connect", "tls",  "handshake",
                                            "first_message", "close",   "total"};

// The fixture with its TLS listeners, shared by the tests of this file. Tests
// that read the fixture's /_ws_stats use a group name of their own (group()).
struct Platform {
  TempDir dir;
  std::string certs = make_certs(dir);
  FakePlatform fp{tls_platform_options(certs)};
  std::string ca() const { return certs + "/ca.pem"; }
  // query: "" or "?a=b&c=d".
  std::string ws(const std::string& query = "") const {
    return fmt::format("ws://127.0.0.1:{}/ws{}", fp.http_port(), query);
  }
  std::string wss(const std::string& listener, const std::string& query = "") const {
    return fmt::format("wss://127.0.0.1:{}/ws{}", fp.tls_port(listener), query);
  }
};

Platform& platform() {
  static Platform p;
  return p;
}

// A group name (for max_conns and /_ws_stats) no other probe in this process uses.
std::string group(const std::string& prefix) {
  static int n = 0;
  return fmt::format("{}-{}", prefix, ++n);
}

// One probe of type websocket; each line of `body` goes under `websocket:`.
std::string ws_probe(const std::string& name, std::initializer_list<std::string> body,
                     const std::string& timeout = "5s", const std::string& interval = "10s") {
  std::string out = fmt::format(
      "  - name: {}\n    type: websocket\n    interval: {}\n    timeout: {}\n    websocket:\n",
      name, interval, timeout);
  for (const auto& line : body) out += "      " + line + "\n";
  return out;
}

std::string url(const std::string& u) { return "url: \"" + u + "\""; }

// metrics.detail full: these tests read the per-phase histograms.
std::string base_config(const std::string& probes) {
  return "global:\n  listen: \"{{listen}}\"\n  labels: {env: test, location: ci}\n"
         "  defaults: {interval: 1s, timeout: 1s}\n  metrics: {detail: full}\nprobes:\n" +
         probes;
}

// The fixture's handshake records of one group.
json ws_stats(const FakePlatform& fp, const std::string& grp) {
  auto r = http_get(fp.url("/_ws_stats?group=" + grp));
  INFO(r.error << r.body);
  REQUIRE(r.status == 200);
  json j = json::parse(r.body, nullptr, false);
  REQUIRE_FALSE(j.is_discarded());
  return j;
}

}  // namespace

TEST_CASE("websocket: healthy probes pass, and once exits 0", "[websocket]") {
  auto& p = platform();
  std::string hundred(100, 'x');
  std::string config =
      "probes:\n" +
      ws_probe("first", {url(p.ws("?subprotocol=first")), "subprotocols: [jwt-auth, other]",
                         "expect_subprotocol: jwt-auth"}) +
      ws_probe("any-offered", {url(p.ws("?subprotocol=last")), "subprotocols: [jwt-auth, other]"}) +
      ws_probe("any-offered-explicit",
               {url(p.ws("?subprotocol=last")), "subprotocols: [jwt-auth, other]",
                "expect_subprotocol: any_offered"}) +
      ws_probe("expect-second", {url(p.ws("?subprotocol=other")), "subprotocols: [jwt-auth, other]",
                                 "expect_subprotocol: other"}) +
      ws_probe("no-subprotocols", {url(p.ws())}) +
      ws_probe("echo-text",
               {url(p.ws()), "send: \"canary ping\"", "expect: {text: \"canary ping\"}"}) +
      ws_probe("echo-regex", {url(p.ws("?echo_delay_ms=200")), "send: \"canary ping\"",
                              "expect: {regex: \"^canary\"}"}) +
      ws_probe("greeting", {url(p.ws("?greeting=hello-canary")), "expect: {text: hello-canary}"}) +
      ws_probe("greeting-at-cap", {url(p.ws("?greeting=" + hundred)), "max_message_bytes: 100",
                                   "expect: {regex: \"^x+$\"}"}) +
      ws_probe("seven", {url(p.ws("?group=" + group("seven"))), "connections: 7", "hold: 500ms"}) +
      ws_probe("hold-quiet", {url(p.ws("?close_after_ms=5000&close_code=1011")), "hold: 300ms"}) +
      ws_probe("alias",
               {url(fmt::format("ws://127.0.0.1:{}/api/v1/websocket", p.fp.http_port()))}) +
      ws_probe("wss-good", {url(p.wss("good", "?subprotocol=first")), "subprotocols: [jwt-auth]",
                            "tls: {ca_file: " + p.ca() + "}", "send: \"canary ping\"",
                            "expect: {text: \"canary ping\"}"}) +
      ws_probe("wss-server-name",
               {url(p.wss("wronghost")),
                "tls: {ca_file: " + p.ca() + ", server_name: wrong.example.test}"}) +
      ws_probe("wss-skip-verify", {url(p.wss("wronghost")), "tls: {insecure_skip_verify: true}"});
  int code = 0;
  json out = once_json(config, &code);
  INFO(out.dump(2));
  CHECK(code == 0);
  CHECK(out["passed"] == true);
  for (const char* name :
       {"first", "any-offered", "any-offered-explicit", "expect-second", "no-subprotocols",
        "echo-text", "echo-regex", "greeting", "greeting-at-cap", "seven", "hold-quiet", "alias",
        "wss-good", "wss-server-name", "wss-skip-verify"}) {
    INFO(name);
    CHECK(once_reason(out, name) == "ok");
  }

  auto first = result_of(out, "first");
  CHECK(first["success"] == true);
  CHECK(detail(first, "subprotocol") == "jwt-auth");
  CHECK(detail(first, "close_code") == 1000);  // close: true by default
  CHECK(detail(first, "connections_ok") == 1);
  CHECK(detail(first, "connections_total") == 1);
  for (const char* phase : {"connect", "handshake", "close", "total"}) {
    INFO(phase);
    CHECK(first["phases"].contains(phase));
  }
  CHECK_FALSE(first["phases"].contains("tls"));
  CHECK(detail(result_of(out, "any-offered"), "subprotocol") == "other");
  CHECK(detail(result_of(out, "expect-second"), "subprotocol") == "other");
  CHECK(result_of(out, "echo-text")["phases"].contains("first_message"));
  auto echo_regex = result_of(out, "echo-regex");
  CHECK(echo_regex["phases"].contains("first_message"));
  // The echo came 200 ms after the message: the run includes that wait.
  CHECK(echo_regex["duration_seconds"].get<double>() >= 0.2);

  auto seven = result_of(out, "seven");
  CHECK(detail(seven, "connections_ok") == 7);
  CHECK(detail(seven, "connections_total") == 7);

  auto wss = result_of(out, "wss-good");
  CHECK(wss["phases"].contains("tls"));
  CHECK(detail(wss, "cert_expiry").is_string());
  CHECK(detail(wss, "subprotocol") == "jwt-auth");
}

TEST_CASE("websocket: each failure mode is a distinct reason", "[websocket]") {
  auto& p = platform();
  std::string ca = "tls: {ca_file: " + p.ca() + "}";
  std::string offered = "subprotocols: [jwt-auth, other]";
  std::string max_group = group("max");
  std::string long_greeting(300, 'x');
  std::string config =
      "probes:\n" + ws_probe("none", {url(p.ws("?subprotocol=none")), offered}) +
      ws_probe("none-expect",
               {url(p.ws("?subprotocol=none")), offered, "expect_subprotocol: jwt-auth"}) +
      ws_probe("unoffered", {url(p.ws("?subprotocol=unoffered")), offered}) +
      ws_probe("unoffered-nothing-offered", {url(p.ws("?subprotocol=unoffered"))}) +
      ws_probe("expect-mismatch",
               {url(p.ws("?subprotocol=last")), offered, "expect_subprotocol: jwt-auth"}) +
      ws_probe("reject-400", {url(p.ws("?reject=400"))}) +
      ws_probe("reject-401", {url(p.ws("?reject=401"))}) +
      ws_probe("reject-403", {url(p.ws("?reject=403"))}) +
      ws_probe("reject-426", {url(p.ws("?reject=426"))}) +
      ws_probe("reject-503", {url(p.ws("?reject=503"))}) +
      ws_probe("wrong-path", {url(fmt::format("ws://127.0.0.1:{}/nope", p.fp.http_port()))}) +
      ws_probe("hang-handshake", {url(p.ws("?hang_handshake=1"))}, "1s") +
      ws_probe("close-1011", {url(p.ws("?close_after_ms=200&close_code=1011")), "hold: 2s"}) +
      ws_probe("close-1001", {url(p.ws("?close_after_ms=200&close_code=1001")), "hold: 2s"}) +
      ws_probe("drop-fin", {url(p.ws("?drop_after_ms=200")), "hold: 2s"}) +
      ws_probe("drop-rst", {url(p.ws("?drop_after_ms=200&drop_rst=1")), "hold: 2s"}) +
      ws_probe("echo-mismatch",
               {url(p.ws()), "send: \"canary ping\"", "expect: {text: \"canary pong\"}"}) +
      ws_probe("echo-regex-mismatch",
               {url(p.ws()), "send: \"canary ping\"", "expect: {regex: \"^pong\"}"}) +
      ws_probe("slow-echo",
               {url(p.ws("?echo_delay_ms=4000")), "send: \"canary ping\"",
                "expect: {text: \"canary ping\"}"},
               "1s") +
      ws_probe("no-echo",
               {url(p.ws("?echo=0")), "send: \"canary ping\"", "expect: {text: \"canary ping\"}"},
               "1s") +
      ws_probe("max-conns",
               {url(p.ws("?max_conns=3&group=" + max_group)), "connections: 5", "hold: 3s"},
               "10s") +
      ws_probe("wss-wronghost", {url(p.wss("wronghost")), ca}) +
      ws_probe("wss-expired", {url(p.wss("expired")), ca}) +
      ws_probe("wss-unknown-ca", {url(p.wss("good"))}) +
      ws_probe("wss-server-name-mismatch",
               {url(p.wss("good")), "tls: {ca_file: " + p.ca() + ", server_name: other.test}"}) +
      ws_probe("refused", {url(fmt::format("ws://127.0.0.1:{}/ws", free_port()))}) +
      ws_probe("dns", {url("ws://does-not-exist.invalid:1/ws")}) +
      ws_probe("oversized", {url(p.ws("?greeting=" + long_greeting)), "max_message_bytes: 100",
                             "expect: {regex: \"^x+$\"}"});
  int code = 0;
  json out = once_json(config, &code);
  INFO(out.dump(2));
  CHECK(code == 1);
  CHECK(out["passed"] == false);
  auto reason = [&](const std::string& name) { return result_of(out, name)["reason"]; };

  CHECK(reason("none") == "ws_no_subprotocol");
  CHECK(reason("none-expect") == "ws_no_subprotocol");
  CHECK(reason("unoffered") == "ws_wrong_subprotocol");
  CHECK(reason("unoffered-nothing-offered") == "ws_wrong_subprotocol");
  // Only a configured value is ever reported as the subprotocol.
  for (const char* name : {"unoffered", "unoffered-nothing-offered"}) {
    INFO(name);
    CHECK(detail(result_of(out, name), "subprotocol") != "not-offered-proto");
  }
  CHECK(reason("expect-mismatch") == "ws_wrong_subprotocol");
  CHECK(detail(result_of(out, "expect-mismatch"), "subprotocol") == "other");

  for (int status : {400, 401, 403, 426, 503}) {
    std::string name = fmt::format("reject-{}", status);
    INFO(name);
    CHECK(reason(name) == "ws_upgrade_rejected");
    CHECK(detail(result_of(out, name), "status_code") == status);
  }
  CHECK(reason("wrong-path") == "ws_upgrade_rejected");
  CHECK(detail(result_of(out, "wrong-path"), "status_code") == 404);

  CHECK(reason("hang-handshake") == "timeout");
  CHECK(detail(result_of(out, "hang-handshake"), "timeout_phase") == "handshake");

  CHECK(reason("close-1011") == "ws_abnormal_close");
  CHECK(detail(result_of(out, "close-1011"), "close_code") == 1011);
  CHECK(reason("close-1001") == "ws_abnormal_close");
  CHECK(detail(result_of(out, "close-1001"), "close_code") == 1001);
  for (const char* name : {"drop-fin", "drop-rst"}) {
    INFO(name);
    CHECK(reason(name) == "ws_abnormal_close");
    CHECK(detail(result_of(out, name), "close_code") == 1006);
  }

  CHECK(reason("echo-mismatch") == "assertion");
  CHECK(reason("echo-regex-mismatch") == "assertion");
  for (const char* name : {"slow-echo", "no-echo"}) {
    INFO(name);
    CHECK(reason(name) == "timeout");
    CHECK(detail(result_of(out, name), "timeout_phase") == "first_message");
  }

  auto max_conns = result_of(out, "max-conns");
  CHECK(max_conns["reason"] == "ws_upgrade_rejected");
  CHECK(detail(max_conns, "status_code") == 503);
  CHECK(detail(max_conns, "connections_ok") == 3);
  CHECK(detail(max_conns, "connections_total") == 5);
  // The fixture saw five attempts in the group: three upgrades, two refusals.
  REQUIRE(wait_until([&] { return ws_stats(p.fp, max_group)["recent"].size() == 5; }, 30s));
  int upgraded = 0, over_limit = 0;
  json max_recent = ws_stats(p.fp, max_group)["recent"];
  for (const auto& e : max_recent) {
    if (e["status"] == 101) ++upgraded;
    if (e["outcome"] == "over_limit") ++over_limit;
  }
  CHECK(upgraded == 3);
  CHECK(over_limit == 2);

  CHECK(reason("wss-wronghost") == "tls_hostname");
  CHECK(reason("wss-expired") == "tls_expired");
  CHECK(reason("wss-unknown-ca") == "tls");
  CHECK(reason("wss-server-name-mismatch") == "tls_hostname");
  CHECK(reason("refused") == "connect_refused");
  CHECK(reason("dns") == "dns");
  CHECK(reason("oversized") == "protocol");
}

TEST_CASE("websocket: the server sees the configured handshake and a clean close", "[websocket]") {
  auto& p = platform();
  std::string g_close = group("close"), g_noclose = group("noclose"), g_seven = group("seven");
  std::string config =
      "probes:\n" +
      ws_probe("handshake",
               {url(p.ws("?group=" + g_close)), "subprotocols: [jwt-auth, other]",
                "origin: http://127.0.0.1", "headers: {Authorization: \"Bearer abc\"}"}) +
      ws_probe("no-close", {url(p.ws("?group=" + g_noclose)), "close: false"}) +
      ws_probe("seven", {url(p.ws("?group=" + g_seven)), "connections: 7", "hold: 500ms"});
  int code = 0;
  json out = once_json(config, &code);
  INFO(out.dump(2));
  CHECK(code == 0);
  CHECK(once_reason(out, "handshake") == "ok");
  CHECK(once_reason(out, "no-close") == "ok");
  CHECK(once_reason(out, "seven") == "ok");

  // Each session has ended on the fixture's side once `end` is set.
  auto ended = [&](const std::string& grp, size_t n) {
    json recent = ws_stats(p.fp, grp)["recent"];
    if (recent.size() != n) return false;
    for (const auto& e : recent)
      if (e["end"].is_null()) return false;
    return true;
  };
  REQUIRE(wait_until([&] { return ended(g_close, 1); }, 30s));
  json e = ws_stats(p.fp, g_close)["recent"][0];
  INFO(e.dump());
  CHECK(e["offered"] == json::array({"jwt-auth", "other"}));
  CHECK(e["selected"] == "jwt-auth");
  CHECK(e["origin"] == "http://127.0.0.1");
  CHECK(e["authorization"] == true);
  CHECK(e["status"] == 101);
  CHECK(e["end"] == "client_close");
  CHECK(e["client_close_code"] == 1000);

  REQUIRE(wait_until([&] { return ended(g_noclose, 1); }, 30s));
  json n = ws_stats(p.fp, g_noclose)["recent"][0];
  INFO(n.dump());
  CHECK(n["status"] == 101);
  CHECK(n["client_close_code"].is_null());  // close: false sends no close frame

  REQUIRE(wait_until([&] { return ended(g_seven, 7); }, 30s));
  json seven_recent = ws_stats(p.fp, g_seven)["recent"];
  for (const auto& s : seven_recent) {
    INFO(s.dump());
    CHECK(s["status"] == 101);
    CHECK(s["end"] == "client_close");
    CHECK(s["client_close_code"] == 1000);
  }
  // No connection of these probes is left open.
  json all = ws_stats(p.fp, g_seven);
  CHECK_FALSE(all["open"].contains(g_seven));
  CHECK_FALSE(all["open"].contains(g_close));
  CHECK_FALSE(all["open"].contains(g_noclose));
}

TEST_CASE("websocket: metrics and state of a running daemon", "[websocket][daemon]") {
  auto& p = platform();
  std::string max_group = group("daemon-max");
  std::string timing = "3s";
  Daemon d(base_config(
      ws_probe("ws-ok",
               {url(p.ws("?subprotocol=first")), "subprotocols: [jwt-auth, other]",
                "expect_subprotocol: jwt-auth", "send: \"canary ping\"",
                "expect: {text: \"canary ping\"}"},
               timing, timing) +
      ws_probe("ws-none", {url(p.ws("?subprotocol=none")), "subprotocols: [jwt-auth, other]"},
               timing, timing) +
      ws_probe("ws-unoffered",
               {url(p.ws("?subprotocol=unoffered")), "subprotocols: [jwt-auth, other]"}, timing,
               timing) +
      ws_probe("ws-1011", {url(p.ws("?close_after_ms=200&close_code=1011")), "hold: 2s"}, timing,
               timing) +
      ws_probe("ws-401", {url(p.ws("?reject=401"))}, timing, timing) +
      ws_probe("ws-tls", {url(p.wss("good")), "tls: {ca_file: " + p.ca() + "}"}, timing, timing) +
      // A long interval: the next run starts well after this one's connections closed.
      ws_probe("ws-max",
               {url(p.ws("?max_conns=2&group=" + max_group)), "connections: 4", "hold: 1s"}, "5s",
               "10s")));
  const std::vector<std::string> probes = {"ws-ok",  "ws-none", "ws-unoffered", "ws-1011",
                                           "ws-401", "ws-tls",  "ws-max"};
  REQUIRE(wait_until(
      [&] {
        for (const auto& name : probes)
          if (!has_run(d, name)) return false;
        return true;
      },
      60s));

  std::string m = d.metrics();
  INFO(m);
  CHECK(metric_value(m, "canary_probes_configured", {{"type", "websocket"}}) == 7.0);
  CHECK(metric_value(m, "canary_probe_success",
                     {{"probe", "ws-ok"}, {"type", "websocket"}, {"env", "test"}}) == 1.0);
  CHECK(metric_value(m, "canary_probe_success", {{"probe", "ws-tls"}}) == 1.0);
  for (const auto& reason : kWsReasons) {
    INFO(reason);
    CHECK(metric_value(m, "canary_probe_failures_total",
                       {{"probe", "ws-ok"}, {"reason", reason}}) == 0.0);
  }
  for (const auto& phase : kWsPhases) {
    INFO(phase);
    CHECK(metric_value(m, "canary_probe_phase_duration_seconds_count",
                       {{"probe", "ws-ok"}, {"phase", phase}})
              .has_value());
  }
  for (const char* phase : {"connect", "handshake", "first_message", "close", "total"}) {
    INFO(phase);
    CHECK(*metric_value(m, "canary_probe_phase_duration_seconds_count",
                        {{"probe", "ws-ok"}, {"phase", phase}}) >= 1.0);
  }
  CHECK(*metric_value(m, "canary_probe_phase_duration_seconds_count",
                      {{"probe", "ws-tls"}, {"phase", "tls"}}) >= 1.0);

  auto failures = [&](const std::string& probe, const std::string& reason) {
    auto v = metric_value(m, "canary_probe_failures_total", {{"probe", probe}, {"reason", reason}});
    return v ? *v : -1;
  };
  CHECK(failures("ws-none", "ws_no_subprotocol") >= 1.0);
  CHECK(failures("ws-unoffered", "ws_wrong_subprotocol") >= 1.0);
  CHECK(failures("ws-1011", "ws_abnormal_close") >= 1.0);
  CHECK(failures("ws-401", "ws_upgrade_rejected") >= 1.0);
  CHECK(failures("ws-max", "ws_upgrade_rejected") >= 1.0);
  CHECK(metric_value(m, "canary_probe_success", {{"probe", "ws-401"}}) == 0.0);

  // The last negotiated subprotocol, as an info series: one per probe at 1.
  auto info_ones = [&](const std::string& probe) {
    std::vector<std::string> out;
    for (const auto& s : parse_exposition(m))
      if (s.name == "canary_ws_subprotocol_info" && s.labels.count("probe") &&
          s.labels.at("probe") == probe && s.value == 1.0)
        out.push_back(s.labels.count("subprotocol") ? s.labels.at("subprotocol") : "(no label)");
    return out;
  };
  CHECK(info_ones("ws-ok") == std::vector<std::string>{"jwt-auth"});
  CHECK(info_ones("ws-none") == std::vector<std::string>{"none"});
  CHECK(metric_value(m, "canary_ws_subprotocol_info",
                     {{"probe", "ws-ok"}, {"type", "websocket"}, {"location", "ci"}}) == 1.0);
  CHECK(metric_value(m, "canary_ws_close_code", {{"probe", "ws-ok"}}) == 1000.0);
  CHECK(metric_value(m, "canary_ws_close_code", {{"probe", "ws-1011"}}) == 1011.0);
  CHECK(metric_value(m, "canary_ws_connections_ok", {{"probe", "ws-ok"}}) == 1.0);
  CHECK(metric_value(m, "canary_ws_connections_configured", {{"probe", "ws-ok"}}) == 1.0);
  CHECK(metric_value(m, "canary_ws_connections_ok", {{"probe", "ws-max"}}) == 2.0);
  CHECK(metric_value(m, "canary_ws_connections_configured", {{"probe", "ws-max"}}) == 4.0);
  CHECK(metric_value(m, "canary_tls_cert_expiry_timestamp_seconds", {{"probe", "ws-tls"}}) >
        static_cast<double>(std::time(nullptr)));
  for (const auto& s : parse_exposition(m)) {
    for (const auto& [name, label_value] : s.labels) {
      INFO(s.name << "{" << name << "=" << label_value << "}");
      CHECK(label_value.find("not-offered-proto") == std::string::npos);
      CHECK(label_value.find("127.0.0.1") == std::string::npos);
    }
  }

  json ok = d.state("ws-ok");
  INFO(ok.dump(2));
  CHECK(ok["type"] == "websocket");
  CHECK(ok["status"] == "passing");
  CHECK(ok["last"]["details"]["subprotocol"] == "jwt-auth");
  CHECK(ok["last"]["phases"].contains("handshake"));
  json closed = d.state("ws-1011");
  INFO(closed.dump(2));
  CHECK(closed["status"] == "failing");
  CHECK(closed["last"]["reason"] == "ws_abnormal_close");
  CHECK(closed["last"]["details"]["close_code"] == 1011);
  json rejected = d.state("ws-401");
  CHECK(rejected["last"]["reason"] == "ws_upgrade_rejected");
  CHECK(rejected["last"]["details"]["status_code"] == 401);
  json max = d.state("ws-max");
  INFO(max.dump(2));
  CHECK(max["last"]["reason"] == "ws_upgrade_rejected");
  CHECK(max["last"]["details"]["connections_ok"] == 2);
  CHECK(max["last"]["details"]["connections_total"] == 4);
  CHECK(d.state("ws-none")["last"]["reason"] == "ws_no_subprotocol");
  json unoffered = d.state("ws-unoffered");
  CHECK(unoffered["last"]["reason"] == "ws_wrong_subprotocol");
  CHECK(unoffered["last"]["details"].value("subprotocol", "") != "not-offered-proto");
}

TEST_CASE("websocket: secrets in subprotocols and headers never leak", "[websocket][secrets]") {
  // A fixture of its own, so /_ws_stats shows only these probes.
  FakePlatform fp;
  const std::string token = "wsENV" + random_token(24);
  const std::string token2 = "wsHDR" + random_token(24);
  const std::string file_token = "wsFILE" + random_token(24);
  TempDir secrets;
  const std::string token_file = secrets.write_file("jwt", file_token + "\n");
  const std::string g_first = group("sec-first"), g_selected = group("sec-selected"),
                    g_file = group("sec-file");
  auto ws = [&](const std::string& query) {
    return fmt::format("ws://127.0.0.1:{}/ws{}", fp.http_port(), query);
  };
  const std::string header = "headers: {Authorization: \"Bearer ${env:WS_TOKEN2}\"}";
  std::string probes =
      // The server selects the first offered entry, the plain one.
      ws_probe("sec-first",
               {url(ws("?subprotocol=first&group=" + g_first)),
                "subprotocols: [jwt-auth, \"jwt.${env:WS_TOKEN}\"]", "expect_subprotocol: jwt-auth",
                header},
               "2s", "2s") +
      // The server selects exactly the secret-bearing entry.
      ws_probe("sec-selected",
               {url(ws("?subprotocol=jwt.${env:WS_TOKEN}&group=" + g_selected)),
                "subprotocols: [jwt-auth, \"jwt.${env:WS_TOKEN}\"]", header},
               "2s", "2s") +
      ws_probe("sec-file",
               {url(ws("?subprotocol=first&group=" + g_file)),
                "subprotocols: [\"jwt.${file:" + token_file + "}\", jwt-auth]", header},
               "2s", "2s") +
      // Failures whose messages could well quote the subprotocol or the URL.
      ws_probe("sec-mismatch",
               {url(ws("?subprotocol=last")), "subprotocols: [jwt-auth, \"jwt.${env:WS_TOKEN}\"]",
                "expect_subprotocol: jwt-auth", header},
               "2s", "2s") +
      ws_probe("sec-rejected",
               {url(ws("?reject=401")), "subprotocols: [\"jwt.${env:WS_TOKEN}\"]", header}, "2s",
               "2s");
  std::vector<std::string> env = {"WS_TOKEN=" + token, "WS_TOKEN2=" + token2};
  Daemon d(base_config(probes), env);
  auto leaks = [&](const std::string& text) {
    return text.find(token) != std::string::npos || text.find(token2) != std::string::npos ||
           text.find(file_token) != std::string::npos;
  };
  REQUIRE(wait_until(
      [&] {
        for (const char* name :
             {"sec-first", "sec-selected", "sec-file", "sec-mismatch", "sec-rejected"})
          if (!has_run(d, name, 2)) return false;
        return true;
      },
      60s));

  std::string m = d.metrics();
  CHECK_FALSE(leaks(m));
  CHECK(metric_value(m, "canary_probe_success", {{"probe", "sec-first"}}) == 1.0);
  CHECK(metric_value(m, "canary_probe_success", {{"probe", "sec-selected"}}) == 1.0);
  CHECK(metric_value(m, "canary_ws_subprotocol_info", {{"probe", "sec-first"}}) == 1.0);
  CHECK(metric_value(m, "canary_ws_subprotocol_info",
                     {{"probe", "sec-first"}, {"subprotocol", "jwt-auth"}}) == 1.0);
  CHECK(metric_value(m, "canary_ws_subprotocol_info", {{"probe", "sec-selected"}}) == 1.0);
  std::string state = d.state().dump();
  CHECK_FALSE(leaks(state));
  CHECK(state.find("<redacted>") != std::string::npos);

  json selected = d.state("sec-selected");
  INFO(selected.dump(2));
  CHECK(selected["last"]["reason"] == "ok");
  json shown = selected["last"]["details"]["subprotocol"];
  REQUIRE(shown.is_string());
  CHECK(shown.get<std::string>().find("<redacted>") != std::string::npos);
  json mismatch = d.state("sec-mismatch");
  CHECK(mismatch["last"]["reason"] == "ws_wrong_subprotocol");
  CHECK_FALSE(leaks(mismatch.dump()));
  CHECK(d.state("sec-rejected")["last"]["details"]["status_code"] == 401);

  // The server really received the secret-bearing subprotocol (it selected that
  // exact value) and the Authorization header.
  json sel = ws_stats(fp, g_selected)["recent"];
  REQUIRE(sel.size() >= 1);
  CHECK(sel[0]["selected"] == "jwt.<redacted>");
  CHECK(sel[0]["offered"] == json::array({"jwt-auth", "jwt.<redacted>"}));
  CHECK(sel[0]["authorization"] == true);
  json first = ws_stats(fp, g_first)["recent"];
  REQUIRE(first.size() >= 1);
  CHECK(first[0]["selected"] == "jwt-auth");
  CHECK(first[0]["authorization"] == true);
  json file = ws_stats(fp, g_file)["recent"];
  REQUIRE(file.size() >= 1);
  CHECK(file.back()["selected"] == "jwt.<redacted>");

  auto once = run_command(
      {canaryd_bin(), "once", "--log-level", "debug", "--config", d.config_path(), "--json"}, 60s,
      env);
  INFO(once.out << once.err);
  CHECK(once.exit_code == 1);
  CHECK_FALSE(leaks(once.out));
  CHECK_FALSE(leaks(once.err));
  json once_out = json::parse(once.out, nullptr, false);
  REQUIRE_FALSE(once_out.is_discarded());
  CHECK(once_reason(once_out, "sec-selected") == "ok");
  CHECK(once_reason(once_out, "sec-file") == "ok");
  CHECK(once_reason(once_out, "sec-mismatch") == "ws_wrong_subprotocol");

  d.process().stop();
  CHECK_FALSE(leaks(d.process().stdout_text()));
  CHECK_FALSE(leaks(d.process().stderr_text()));
}

TEST_CASE("websocket: 200 hung handshakes do not delay other probes",
          "[websocket][daemon][scale]") {
  FakePlatform fp;
  std::string probes;
  for (int i = 0; i < 200; ++i)
    probes += ws_probe(fmt::format("hung-{:03d}", i),
                       {url(fmt::format("ws://127.0.0.1:{}/ws?hang_handshake=1", fp.http_port()))},
                       "1s", "1s");
  // The healthy probe's timeout is generous: what is tested is that it keeps succeeding
  // while the hung handshakes are in flight, not how fast a loaded CI machine answers.
  probes += fmt::format(
      "  - name: healthy\n    type: http\n    interval: 3s\n    timeout: 3s\n    http:\n"
      "      url: \"{}\"\n",
      fp.url("/health"));
  Daemon d(base_config(probes));
  REQUIRE(wait_until([&] { return has_run(d, "hung-000", 2); }, 30s));
  auto hung_timeouts = [](const std::string& m) {
    return metric_sum(m, "canary_probe_failures_total", "hung-", {{"reason", "timeout"}});
  };
  const double hung_timeouts_before = hung_timeouts(d.metrics());
  int start = static_cast<int>(daemon_metric(d, "canary_probe_runs_total", {{"probe", "healthy"}}));
  REQUIRE(wait_until([&] { return has_run(d, "healthy", start + 5); }, 60s));
  // The hung handshakes overlapped the healthy runs: while the healthy probe ran five more
  // times, every hung probe timed out once more on average.
  CHECK(hung_timeouts(d.metrics()) - hung_timeouts_before >= 200.0);
  // Every hung probe has counted a timeout by now.
  auto all_timed_out = [&](const std::string& m) {
    std::set<std::string> timed_out;
    for (const auto& s : parse_exposition(m)) {
      if (s.name == "canary_probe_failures_total" && s.labels.at("reason") == "timeout" &&
          s.labels.at("probe").rfind("hung-", 0) == 0 && s.value >= 1.0)
        timed_out.insert(s.labels.at("probe"));
    }
    return timed_out.size() == 200;
  };
  REQUIRE(wait_until([&] { return all_timed_out(d.metrics()); }, 30s, 500ms));

  std::string m = d.metrics();
  // The healthy probe succeeded every time: no failure of any reason.
  CHECK(metric_value(m, "canary_probe_success", {{"probe", "healthy"}}) == 1.0);
  CHECK(unexpected_failures(m, "healthy") == std::vector<std::string>{});
  CHECK(metric_value(m, "canary_probe_failures_total",
                     {{"probe", "hung-000"}, {"reason", "timeout"}}) >= 2.0);
  // Timeouts counted, nothing else ever, for every hung probe.
  CHECK(unexpected_failures(m, "hung-", "timeout") == std::vector<std::string>{});
  CHECK_FALSE(
      metric_value(m, "canary_probe_last_success_timestamp_seconds", {{"probe", "hung-000"}}));
  for (const char* name : {"hung-000", "hung-199"}) {
    json st = d.state(name);
    INFO(st.dump(2));
    CHECK(st["last"]["reason"] == "timeout");
    CHECK(st["last"]["details"]["timeout_phase"] == "handshake");
  }

  // Timed-out runs release their connections: at most one run per probe is in
  // flight, so the fixture never holds many more than 200 hung handshakes
  // (leaking them would add 200 per second).
  auto hanging = [&] {
    auto r = http_get(fp.url("/_ws_stats"));
    json j = json::parse(r.body, nullptr, false);
    return j.is_object() ? j.value("hanging", -1) : -1;
  };
  int h = hanging();
  CHECK(h >= 0);
  CHECK(h < 400);
  d.process().stop();
  CHECK(wait_until([&] { return hanging() == 0; }, 30s));
}

TEST_CASE("websocket: runs cancelled during the TCP connect release their sockets",
          "[websocket][daemon]") {
  // A listener whose backlog is full: connects stay in SYN-SENT until the
  // deadline cancels the run. Each cancelled run must close its socket, or
  // canaryd runs out of descriptors.
  RawListener never(RawListener::Mode::kNeverAccepts);
  std::string probes;
  for (int i = 0; i < 20; ++i)
    probes += ws_probe(fmt::format("syn-{:02d}", i),
                       {url(fmt::format("ws://127.0.0.1:{}/ws", never.port()))}, "500ms", "1s");
  Daemon d(base_config(probes));
  auto open_fds = [&] {
    int n = 0;
    for ([[maybe_unused]] const auto& e :
         std::filesystem::directory_iterator(fmt::format("/proc/{}/fd", d.process().pid())))
      ++n;
    return n;
  };
  REQUIRE(wait_until([&] { return has_run(d, "syn-00", 2); }, 30s));
  int before = open_fds();
  REQUIRE(wait_until([&] { return has_run(d, "syn-00", 8); }, 60s));
  int after = open_fds();
  INFO("open descriptors: " << before << " then " << after);
  // 20 probes hold at most 20 connects at a time; six more rounds of leaked
  // sockets would add 120.
  CHECK(after < before + 40);
  std::string m = d.metrics();
  CHECK(metric_value(m, "canary_probe_failures_total",
                     {{"probe", "syn-00"}, {"reason", "timeout"}}) >= 8.0);
  CHECK(d.state("syn-00")["last"]["details"]["timeout_phase"] == "connect");
}

namespace {

// 40 probes of 7 held connections: 280 at once if their holds overlap, past
// the 150 that 200 descriptors allow.
std::string over_the_descriptor_budget(const std::string& hold, const std::string& timeout,
                                       const std::string& interval) {
  auto& p = platform();
  std::string probes;
  for (int i = 0; i < 40; ++i)
    probes += ws_probe(fmt::format("many-{:02d}", i),
                       {url(p.ws("?subprotocol=first")), "subprotocols: [jwt-auth]",
                        "connections: 7", "hold: " + hold},
                       timeout, interval);
  return probes;
}

}  // namespace

TEST_CASE(
    "websocket: past its descriptor budget a one-shot run fails at once as canaryd's own "
    "limit, and the rest still work",
    "[websocket]") {
  // With 200 descriptors canaryd keeps at most 150 WebSocket connections. The
  // excess runs end at once naming the limit, instead of starving everything
  // of descriptors; a deploy gate must not pass what it never checked, and
  // the target did nothing wrong, so they are `internal`.
  TempDir dir;
  std::string path = dir.write_file("c.yaml", "global:\n  listen: 127.0.0.1:9\nprobes:\n" +
                                                  over_the_descriptor_budget("2s", "4s", "10s"));
  auto r = run_command(
      {"prlimit", "--nofile=200:200", canaryd_bin(), "once", "--config", path, "--json"}, 60s);
  INFO(r.err);
  json out = json::parse(r.out, nullptr, false);
  REQUIRE_FALSE(out.is_discarded());
  int limited = 0, passed = 0;
  for (const auto& res : out["results"]) {
    if (res["success"].get<bool>()) ++passed;
    if (res["reason"] == "internal" &&
        res["message"].get<std::string>().find("limit of 150 WebSocket connections") !=
            std::string::npos)
      ++limited;
    CHECK(res["reason"] != "connect");
  }
  CHECK(limited > 0);
  CHECK(passed > 0);  // the connections within the budget still work
  CHECK(r.exit_code == 1);
}

TEST_CASE(
    "websocket: past its descriptor budget the daemon counts skipped runs of cause limit and "
    "blames no target",
    "[websocket][daemon]") {
  TempDir dir;
  const std::string wrapper = dir.write_file(
      "canaryd-200-fds", "#!/bin/sh\nexec prlimit --nofile=200:200 " + canaryd_bin() + " \"$@\"\n");
  std::filesystem::permissions(wrapper, std::filesystem::perms::owner_exec,
                               std::filesystem::perm_options::add);
  // Spread over their interval, the probes hold about 40 x 7 x 2.5/3, 233
  // connections at once.
  Daemon d("global:\n  listen: \"{{listen}}\"\n  workers: 1\nprobes:\n" +
               over_the_descriptor_budget("2500ms", "3s", "3s"),
           {}, wrapper);
  REQUIRE(wait_until(
      [&] {
        return daemon_metric(d, "canary_scheduler_skipped_runs_total", {{"cause", "limit"}}) >= 10;
      },
      60s));
  // Which probes find the cap full depends on where their slots fall; some
  // runs are made.
  REQUIRE(wait_until(
      [&] { return metric_sum(d.metrics(), "canary_probe_runs_total", "many-") >= 10; }, 60s));
  std::string m = d.metrics();
  // Runs within the budget pass; none is blamed on the target or on a bug.
  CHECK(metric_sum(m, "canary_probe_runs_total", "many-") >
        metric_sum(m, "canary_probe_failures_total", "many-"));
  CHECK(metric_sum(m, "canary_probe_failures_total", "many-", {{"reason", "connect"}}) == 0);
  CHECK(metric_sum(m, "canary_probe_failures_total", "many-", {{"reason", "internal"}}) == 0);
  CHECK(d.process().stop() == 0);
  // Said at most once a minute, not once per run: the waits above take two
  // minutes at most, and at least 10 runs were skipped.
  const std::string log = d.process().stdout_text() + d.process().stderr_text();
  int lines = 0;
  for (size_t at = log.find("limit of 150 WebSocket connections"); at != std::string::npos;
       at = log.find("limit of 150 WebSocket connections", at + 1))
    ++lines;
  CHECK(lines >= 1);
  CHECK(lines <= 3);
}
