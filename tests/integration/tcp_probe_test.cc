// The tcp probe against real servers on loopback (redis-server, the fake
// platform's HTTP and TLS listeners, misbehaving raw listeners), read the way
// a deploy pipeline reads it: `canaryd once --json`, and /metrics.
#include <fmt/format.h>

#include <catch2/catch.hpp>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "tests/support/harness.h"
#include "tests/support/servers.h"

using namespace canaryd::test;
using namespace std::chrono_literals;
using nlohmann::json;

namespace {

std::string tcp_probe(const std::string& name, const std::string& body,
                      const std::string& timeout = "5s") {
  return fmt::format(
      "  - name: {}\n    type: tcp\n    interval: 10s\n    timeout: {}\n    tcp:\n{}", name,
      timeout, body);
}

std::string address(int port) { return fmt::format("      address: \"127.0.0.1:{}\"\n", port); }

// An HTTP/1.1 request for `path_and_query` as a YAML double-quoted `send`.
std::string send_http_get(const std::string& path_and_query) {
  return fmt::format(
      "      send: \"GET {} HTTP/1.1\\r\\nHost: localhost\\r\\nConnection: close\\r\\n\\r\\n\"\n",
      path_and_query);
}

}  // namespace

TEST_CASE("tcp: send and expect against redis, refused, garbage and read_limit", "[tcp]") {
  RedisServer redis;
  RawListener garbage(RawListener::Mode::kGarbage);
  FakePlatform fp;
  std::string redis_addr = address(redis.port());
  std::string config =
      "probes:\n" +
      tcp_probe("ping",
                redis_addr + "      send: \"PING\\r\\n\"\n      expect: {text: \"+PONG\"}\n") +
      tcp_probe(
          "ping-regex",
          redis_addr + "      send: \"PING\\r\\n\"\n      expect: {regex: '^\\+PONG\\r\\n$'}\n") +
      tcp_probe("connect-only", redis_addr) + tcp_probe("refused", address(free_port())) +
      tcp_probe("garbage", address(garbage.port()) +
                               "      send: \"PING\\r\\n\"\n      expect: {text: \"+PONG\"}\n") +
      tcp_probe("read-limit", address(fp.http_port()) +
                                  send_http_get("/health?mode=garbage&bytes=100000") +
                                  "      expect: {text: never-sent}\n      read_limit: 64\n");
  int code = 0;
  json out = once_json(config, &code);
  CHECK(code == 1);
  CHECK(once_reason(out, "ping") == "ok");
  CHECK(once_reason(out, "ping-regex") == "ok");
  CHECK(once_reason(out, "connect-only") == "ok");
  CHECK(once_reason(out, "refused") == "connect_refused");
  CHECK(once_reason(out, "garbage") == "assertion");
  CHECK(once_reason(out, "read-limit") == "assertion");

  json ping = result_of(out, "ping");
  CHECK(ping["phases"].contains("connect"));
  CHECK(ping["phases"].contains("expect"));
  CHECK(ping["phases"].contains("total"));
  CHECK_FALSE(ping["phases"].contains("tls"));
  CHECK_FALSE(result_of(out, "connect-only")["phases"].contains("expect"));

  // The peer's bytes are quoted escaped, on one line.
  std::string garbage_message = result_of(out, "garbage")["message"];
  CHECK(garbage_message.find("closed") != std::string::npos);
  CHECK(garbage_message.find("not RESP") != std::string::npos);
  CHECK(garbage_message.find("\\x01") != std::string::npos);
  std::string limit_message = result_of(out, "read-limit")["message"];
  CHECK(limit_message.find("read_limit (64 bytes)") != std::string::npos);

  // Every connection the probes opened is closed again.
  CHECK(wait_until([&] { return redis.connected_clients() == 0; }));
}

TEST_CASE("tcp: a silent peer times out in the phase it was in", "[tcp]") {
  RawListener silent(RawListener::Mode::kSilent);
  std::string config =
      "probes:\n" +
      tcp_probe("silent",
                address(silent.port()) + "      send: \"hello\\n\"\n      expect: {text: hi}\n",
                "1s") +
      tcp_probe("silent-tls", address(silent.port()) + "      tls: {insecure_skip_verify: true}\n",
                "1s");
  int code = 0;
  json out = once_json(config, &code);
  CHECK(code == 1);
  CHECK(once_reason(out, "silent") == "timeout");
  CHECK(detail(result_of(out, "silent"), "timeout_phase") == "expect");
  CHECK(result_of(out, "silent")["phases"].contains("connect"));
  CHECK(once_reason(out, "silent-tls") == "timeout");
  CHECK(detail(result_of(out, "silent-tls"), "timeout_phase") == "tls");
  // The abandoned connections are reset, not left open.
  CHECK(wait_until([&] { return silent.open_connections() == 0; }));
}

TEST_CASE("tcp: TLS verification, hostnames, expiry and a plain-text peer", "[tcp][tls]") {
  TlsPlatform p;
  RawListener garbage(RawListener::Mode::kGarbage);
  std::string ca = p.certs + "/ca.pem";
  auto tls_port = [&](const std::string& name) { return address(p.fp.tls_port(name)); };
  std::string health = send_http_get("/health") + "      expect: {text: '\"healthy\"'}\n";
  std::string with_ca = fmt::format("      tls: {{ca_file: {}}}\n", ca);
  std::string config =
      "probes:\n" + tcp_probe("good", tls_port("good") + with_ca + health) +
      tcp_probe("good-by-name",
                fmt::format("      address: \"localhost:{}\"\n", p.fp.tls_port("good")) + with_ca +
                    health) +
      tcp_probe("wronghost", tls_port("wronghost") + with_ca + health) +
      tcp_probe("expired", tls_port("expired") + with_ca + health) +
      tcp_probe("unknown-ca", tls_port("good") + "      tls: {}\n" + health) +
      tcp_probe("skip-verify",
                tls_port("expired") + "      tls: {insecure_skip_verify: true}\n" + health) +
      tcp_probe(
          "server-name",
          tls_port("wronghost") +
              fmt::format("      tls: {{ca_file: {}, server_name: wrong.example.test}}\n", ca) +
              health) +
      tcp_probe("plain-peer", address(garbage.port()) + with_ca);
  int code = 0;
  json out = once_json(config, &code);
  CHECK(code == 1);
  CHECK(once_reason(out, "good") == "ok");
  CHECK(once_reason(out, "good-by-name") == "ok");
  CHECK(once_reason(out, "wronghost") == "tls_hostname");
  CHECK(once_reason(out, "expired") == "tls_expired");
  CHECK(once_reason(out, "unknown-ca") == "tls");
  CHECK(once_reason(out, "skip-verify") == "ok");
  CHECK(once_reason(out, "server-name") == "ok");
  CHECK(once_reason(out, "plain-peer") == "tls");

  json good = result_of(out, "good");
  CHECK(good["phases"].contains("connect"));
  CHECK(good["phases"].contains("tls"));
  CHECK(good["phases"].contains("expect"));
  CHECK(detail(good, "cert_expiry").is_string());
  // The expired certificate's date is reported even though the handshake failed.
  json expired_at = detail(result_of(out, "expired"), "cert_expiry");
  REQUIRE(expired_at.is_string());
  CHECK(expired_at.get<std::string>().rfind("2020-", 0) == 0);
}

TEST_CASE("tcp: the leaf certificate's expiry reaches /metrics", "[tcp][tls][daemon]") {
  TlsPlatform p;
  std::string config =
      "global:\n  listen: \"{{listen}}\"\nprobes:\n" +
      tcp_probe("tls-port",
                address(p.fp.tls_port("good")) +
                    fmt::format("      tls: {{ca_file: {}}}\n", p.certs + "/ca.pem"),
                "2s");
  Daemon d(config);
  REQUIRE(wait_until(
      [&] {
        return metric_value(d.metrics(), "canary_probe_success", {{"probe", "tls-port"}}) == 1.0;
      },
      30s));
  std::string m = d.metrics();
  auto expiry =
      metric_value(m, "canary_tls_cert_expiry_timestamp_seconds", {{"probe", "tls-port"}});
  REQUIRE(expiry);
  // make_certs.sh issues the good certificate for 30 days from now.
  auto now = static_cast<double>(std::time(nullptr));
  CHECK(*expiry > now + 20 * 86400);
  CHECK(*expiry < now + 40 * 86400);
  for (const char* reason : {"connect_refused", "connect", "tls", "tls_hostname", "tls_expired",
                             "assertion", "timeout"}) {
    INFO(reason);
    CHECK(metric_value(m, "canary_probe_failures_total",
                       {{"probe", "tls-port"}, {"reason", reason}}) == 0.0);
  }
}

TEST_CASE("tcp: hostile TLS peers are tls, connect or assertion, never internal",
          "[tcp][tls][hostile]") {
  TempDir dir;
  std::string ready = dir.file("peer.json");
  // Behaviours of the fault matrix's hostile peer that do not depend on HTTP.
  std::map<std::string, std::string> expected = {
      {"tls_ok", "ok"},
      {"tls_garbage_serverhello", "tls"},
      {"tls_http_on_tls_port", "tls"},
      {"tls_alert", "tls"},
      {"tls_truncated_record", "tls"},
      {"tls_self_signed", "tls"},
      {"tls_handshake_then_close", "assertion"},
  };
  std::vector<std::string> argv = {python3(),      source_dir() + "/tests/fixtures/hostile_peer.py",
                                   "--ready-file", ready,
                                   "--certs",      dir.file("certs"),
                                   "--only"};
  for (const auto& [name, reason] : expected) argv.push_back(name);
  argv.push_back("tls_handshake_then_reset");
  Process peer(argv);
  REQUIRE(wait_until([&] { return std::ifstream(ready).good(); }, 30s));
  std::ifstream in(ready);
  json info = json::parse(in);
  std::string config = "probes:\n";
  for (const auto& item : info["cases"].items()) {
    const std::string& name = item.key();
    int port = item.value().get<int>();
    config += tcp_probe(
        name, address(port) +
                  fmt::format("      tls: {{ca_file: {}}}\n", info["ca"].get<std::string>()) +
                  send_http_get("/health") + "      expect: {text: healthy}\n");
  }
  int code = 0;
  json out = once_json(config, &code);
  CHECK(code == 1);
  for (const auto& [name, reason] : expected) {
    INFO(name << ": " << result_of(out, name)["message"]);
    CHECK(once_reason(out, name) == reason);
  }
  // A reset right after the request reaches the probe as a reset (connect)
  // or, depending on timing on loopback, as a plain close (assertion):
  // either way the peer's doing, never internal.
  std::string reset_reason = once_reason(out, "tls_handshake_then_reset");
  INFO(result_of(out, "tls_handshake_then_reset")["message"]);
  CHECK((reset_reason == "connect" || reset_reason == "assertion"));
}
