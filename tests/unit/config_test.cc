// Config loading through the public API: what a valid file yields, and the
// errors a bad one produces. (Every bad-config fixture in tests/config/bad is
// also checked end to end through `canaryd check-config`.)
#include "daemon/config.h"

#include <catch2/catch.hpp>
#include <cstdlib>

#include "tests/support/harness.h"

using namespace std::chrono_literals;
using canaryd::load_config_text;
using canaryd::parse_duration;

TEST_CASE("durations are written as 500ms, 30s, 2h") {
  CHECK(parse_duration("500ms") == 500ms);
  CHECK(parse_duration("30s") == 30s);
  CHECK(parse_duration("2h") == 2h);
  CHECK(parse_duration("1m30s") == 90s);
  CHECK(parse_duration("1.5s") == 1500ms);
  CHECK(parse_duration("1d") == 24h);
  CHECK_FALSE(parse_duration(""));
  CHECK_FALSE(parse_duration("30"));
  CHECK_FALSE(parse_duration("s"));
  CHECK_FALSE(parse_duration("10 parsecs"));
  CHECK_FALSE(parse_duration("1.2.3s"));
  CHECK_FALSE(parse_duration("-5s"));
  CHECK_FALSE(parse_duration("99999999999999999999h"));
  CHECK(canaryd::format_duration(90s) == "1m30s");
  CHECK(canaryd::format_duration(500ms) == "500ms");
  CHECK(canaryd::format_duration(2h) == "2h");
}

TEST_CASE("a valid config: globals, defaults, category, critical and labels") {
  auto load = load_config_text(R"(
global:
  listen: 127.0.0.1:19000
  labels: {env: staging, location: local}
  defaults: {interval: 20s, timeout: 4s}
  state_history: 50
probes:
  - name: backend-health
    type: http
    category: infrastructure
    critical: true
    interval: 15s
    timeout: 5s
    labels: {team: platform}
    http:
      url: https://api.example.test/health
      method: GET
      headers: {Accept: application/json}
      expect: {status: [200, 204], body_regex: "healthy", json: {status: healthy, checks.db: ok}}
      tls: {insecure_skip_verify: false, server_name: api.example.test}
  - name: frontend
    type: http
    http: {url: "http://127.0.0.1:3000/"}
alerting: {}
)",
                               "test.yaml");
  INFO(load.errors.str());
  REQUIRE(load.config);
  const auto& c = *load.config;
  CHECK(c.global.listen.str() == "127.0.0.1:19000");
  CHECK(c.global.labels.size() == 2);
  CHECK(c.global.state_history == 50);
  REQUIRE(c.probes.size() == 2);
  const auto& p = c.probes[0].spec;
  CHECK(p.name == "backend-health");
  CHECK(p.category == "infrastructure");
  CHECK(p.critical);
  CHECK(p.interval == 15s);
  CHECK(p.timeout == 5s);
  CHECK(p.labels == std::vector<std::pair<std::string, std::string>>{{"team", "platform"}});
  CHECK(c.probes[0].target == "GET https://api.example.test/health");
  // The second probe takes every default.
  const auto& f = c.probes[1].spec;
  CHECK(f.category == "default");
  CHECK_FALSE(f.critical);
  CHECK(f.interval == 20s);
  CHECK(f.timeout == 4s);
}

TEST_CASE("secrets come from ${env:NAME} and ${file:PATH} and are registered for redaction") {
  canaryd::test::TempDir dir;
  std::string token_file = dir.write_file("token", "file-secret-value-123\n");
  setenv("CANARYD_UNIT_SECRET", "env-secret-value-456", 1);
  auto yaml = std::string(R"(
probes:
  - name: p
    type: http
    http:
      url: http://127.0.0.1:1/health?key=${env:CANARYD_UNIT_SECRET}
      headers:
        Authorization: "Bearer ${file:)") +
              token_file + R"(}"
)";
  auto load = load_config_text(yaml, "s.yaml");
  INFO(load.errors.str());
  REQUIRE(load.config);
  const auto& secrets = load.config->secrets;
  // The trailing newline of the file is not part of the secret.
  CHECK(secrets.redact("Bearer file-secret-value-123") == "Bearer <redacted>");
  CHECK(secrets.redact("x env-secret-value-456 y") == "x <redacted> y");
  // The displayed target never shows the secret.
  CHECK(load.config->probes[0].target.find("env-secret-value-456") == std::string::npos);
  CHECK(load.config->probes[0].target.find("<redacted>") != std::string::npos);

  // Rotating the secret file changes the probe's fingerprint, so a reload
  // picks up the new token; the YAML itself did not change.
  std::string before = load.config->probes[0].spec.fingerprint;
  dir.write_file("token", "rotated-secret-value-789\n");
  auto again = load_config_text(yaml, "s.yaml");
  REQUIRE(again.config);
  CHECK(again.config->probes[0].spec.fingerprint != before);
  CHECK(again.config->probes[0].spec.fingerprint.find("rotated") == std::string::npos);
  unsetenv("CANARYD_UNIT_SECRET");
}

TEST_CASE("an error never quotes a secret's value") {
  setenv("CANARYD_UNIT_SECRET2", "not-a-url-but-a-secret", 1);
  auto load = load_config_text(R"(
probes:
  - name: p
    type: http
    http: {url: "${env:CANARYD_UNIT_SECRET2}"}
)",
                               "s.yaml");
  REQUIRE_FALSE(load.config);
  CHECK(load.errors.str() == "s.yaml:5: probes[0].http.url: not a valid URL\n");
  unsetenv("CANARYD_UNIT_SECRET2");
}

TEST_CASE("errors name file, line and key, and all of them are reported") {
  auto load = load_config_text(R"(global:
  listen: 127.0.0.1:9464
probes:
  - name: a
    type: http
    intervl: 5s
    http: {url: "http://127.0.0.1/"}
  - name: b
    type: http
    interval: 1s
    timeout: 2s
    http: {url: "http://127.0.0.1/"}
)",
                               "f.yaml");
  REQUIRE_FALSE(load.config);
  CHECK(load.errors.str() ==
        "f.yaml:6: probes[0].intervl: unknown key\n"
        "f.yaml:11: probes[1].timeout: timeout 2s is longer than interval 1s\n");
}

TEST_CASE("an empty or non-mapping file is an error, not a crash") {
  CHECK(load_config_text("", "e.yaml").errors.str() ==
        "e.yaml: the config must be a mapping with global: and probes:\n");
  CHECK(load_config_text("- 1\n- 2\n", "e.yaml").errors.str() ==
        "e.yaml:1: the config must be a mapping with global: and probes:\n");
  CHECK(load_config_text("global: {}\n", "e.yaml").errors.str() ==
        "e.yaml:1: missing required key probes\n");
}

TEST_CASE("listen addresses: IPv4, IPv6 in brackets, localhost") {
  CHECK(canaryd::parse_listen_address("127.0.0.1:9464")->str() == "127.0.0.1:9464");
  CHECK(canaryd::parse_listen_address("[::1]:9464")->str() == "[::1]:9464");
  CHECK(canaryd::parse_listen_address("localhost:80")->host == "127.0.0.1");
  CHECK(canaryd::parse_listen_address(":9464")->host == "0.0.0.0");
  CHECK_FALSE(canaryd::parse_listen_address("localhost"));
  CHECK_FALSE(canaryd::parse_listen_address("127.0.0.1:99999"));
  CHECK_FALSE(canaryd::parse_listen_address("example.test:80"));
}
