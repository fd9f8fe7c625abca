// Config loading through the public API: what a valid file yields, and the
// errors a bad one produces. (Every bad-config fixture in tests/config/bad is
// also checked end to end through `canaryd check-config`.)
#include "daemon/config.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <cstdlib>
#include <thread>

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

namespace {

std::string agent_probe_with_send(const std::string& send_json_block) {
  return R"(probes:
  - name: agent
    type: agent_pipeline
    agent_pipeline:
      websocket: {url: "ws://127.0.0.1:1/ws"}
      events: [{type: done}]
      send:
        json:
)" + send_json_block;
}

}  // namespace

TEST_CASE("odd YAML under send.json is an error with file, line and key, never an exception") {
  // Complex keys (block and flow form), a self-referencing alias, an alias
  // bomb, a duplicate key.
  CHECK(load_config_text(agent_probe_with_send("          ? [a, b]\n          : 1\n"), "c.yaml")
            .errors.str() ==
        "c.yaml:9: probes[0].agent_pipeline.send.json: keys must be plain names\n");
  CHECK(
      load_config_text(agent_probe_with_send("          {? {x: 1}: 2}\n"), "c.yaml").errors.str() ==
      "c.yaml:9: probes[0].agent_pipeline.send.json: keys must be plain names\n");
  CHECK(load_config_text(agent_probe_with_send("          a: &loop [*loop]\n"), "c.yaml")
            .errors.str() ==
        "c.yaml:9: probes[0].agent_pipeline.send.json: nested deeper than 64 "
        "levels (does an alias refer to itself?)\n");
  std::string bomb = "          a: &a [x, x, x, x, x, x, x, x, x, x]\n";
  for (char c = 'b'; c <= 'j'; ++c)
    bomb += fmt::format("          {0}: &{0} [*{1}, *{1}, *{1}, *{1}, *{1}, *{1}, *{1}, *{1}]\n", c,
                        static_cast<char>(c - 1));
  auto bombed = load_config_text(agent_probe_with_send(bomb), "c.yaml");
  CHECK_FALSE(bombed.config);
  CHECK(bombed.errors.str().find("more than 10000 values") != std::string::npos);
  CHECK(load_config_text(agent_probe_with_send("          a: 1\n          a: 2\n"), "c.yaml")
            .errors.str() == "c.yaml:10: probes[0].agent_pipeline.send.json.a: duplicate key\n");

  // Plain scalars keep their YAML type, quoted ones stay strings.
  auto ok = load_config_text(
      agent_probe_with_send("          {n: 12, f: 1.5, b: true, z: null, s: \"12\", l: [1, x]}\n"),
      "c.yaml");
  INFO(ok.errors.str());
  CHECK(ok.config);
}

TEST_CASE("a probe's fingerprint covers the defaults it inherits") {
  auto with_defaults = [](const std::string& interval) {
    return load_config_text("global:\n  defaults: {interval: " + interval +
                                ", timeout: 1s}\nprobes:\n  - name: p\n    type: http\n"
                                "    http: {url: \"http://127.0.0.1:1/\"}\n",
                            "d.yaml");
  };
  auto a = with_defaults("5s"), b = with_defaults("10s"), again = with_defaults("5s");
  REQUIRE(a.config);
  REQUIRE(b.config);
  REQUIRE(again.config);
  // Same YAML under probes:, different effective interval: a different probe.
  CHECK(a.config->probes[0].spec.fingerprint != b.config->probes[0].spec.fingerprint);
  CHECK(a.config->probes[0].spec.fingerprint == again.config->probes[0].spec.fingerprint);
}

TEST_CASE("secret files are read within a time bound, and a FIFO waits for its writer") {
  canaryd::test::TempDir dir;
  std::string fifo = dir.path() + "/fifo";
  REQUIRE(mkfifo(fifo.c_str(), 0600) == 0);

  // Nobody writes: the read ends with a timeout, not a hang and not "".
  canaryd::BoundedFileReader quick(300ms);
  std::string error;
  auto start = std::chrono::steady_clock::now();
  CHECK_FALSE(quick.read(fifo, error));
  CHECK(error.find("timed out after 300ms") != std::string::npos);
  CHECK(std::chrono::steady_clock::now() - start < 30s);
  // The same path again in the same load answers at once, the same way.
  std::string again;
  CHECK_FALSE(quick.read(fifo, again));
  CHECK(again == error);

  // A writer that comes later is waited for.
  std::thread writer([&] {
    std::this_thread::sleep_for(100ms);
    int fd = open(fifo.c_str(), O_WRONLY);
    if (fd >= 0) {
      (void)!write(fd, "fifo-secret\n", 12);
      close(fd);
    }
  });
  canaryd::BoundedFileReader patient(20s);
  std::string why;
  auto value = patient.read(fifo, why);
  writer.join();
  INFO(why);
  REQUIRE(value);
  CHECK(*value == "fifo-secret\n");

  // Regular files, missing files, directories and endless devices.
  std::string file = dir.write_file("plain", "abc");
  canaryd::BoundedFileReader files;
  CHECK(files.read(file, why) == std::optional<std::string>("abc"));
  CHECK_FALSE(files.read(dir.path() + "/missing", why));
  CHECK(why == "No such file or directory");
  CHECK_FALSE(files.read(dir.path(), why));
  CHECK(why == "Is a directory");
  CHECK_FALSE(files.read("/dev/zero", why));
  CHECK(why.find("larger than") != std::string::npos);
}

TEST_CASE("loading ends a waiting secret read when cancelled") {
  canaryd::test::TempDir dir;
  std::string fifo = dir.path() + "/fifo";
  REQUIRE(mkfifo(fifo.c_str(), 0600) == 0);
  std::atomic<bool> cancel{true};
  auto load = load_config_text(
      "probes:\n  - name: p\n    type: http\n    http:\n"
      "      url: \"http://127.0.0.1:1/\"\n"
      "      headers: {Authorization: \"${file:" +
          fifo + "}\"}\n",
      "f.yaml", canaryd::ConfigParts::kAll, &cancel);
  CHECK(load.errors.str() ==
        "f.yaml:6: probes[0].http.headers.Authorization: cannot read secret "
        "file " +
            fifo + ": cancelled: shutting down\n");
}

TEST_CASE("retries: from the defaults or the probe, and they must fit in the timeout") {
  auto load = load_config_text(R"(global:
  defaults:
    interval: 30s
    timeout: 10s
    retries: {attempts: 3, delay: 1s}
probes:
  - name: inherits
    type: http
    http: {url: "http://127.0.0.1/"}
  - name: own
    type: http
    retries: {attempts: 2, delay: 500ms}
    http: {url: "http://127.0.0.1/"}
  - name: off
    type: http
    retries: {attempts: 1}
    http: {url: "http://127.0.0.1/"}
)",
                               "r.yaml");
  REQUIRE(load.config);
  REQUIRE(load.config->probes.size() == 3);
  CHECK(load.config->probes[0].spec.attempts == 3);
  CHECK(load.config->probes[0].spec.retry_delay == 1s);
  CHECK(load.config->probes[1].spec.attempts == 2);
  CHECK(load.config->probes[1].spec.retry_delay == 500ms);
  CHECK(load.config->probes[2].spec.attempts == 1);
  // A changed retry setting is a changed probe for a reload.
  CHECK(load.config->probes[0].spec.fingerprint != load.config->probes[1].spec.fingerprint);

  auto bad = load_config_text(R"(global: {}
probes:
  - name: tight
    type: http
    timeout: 2s
    retries: {attempts: 3, delay: 1s}
    http: {url: "http://127.0.0.1/"}
  - name: many
    type: http
    retries: {attempts: 9}
    http: {url: "http://127.0.0.1/"}
)",
                              "r.yaml");
  REQUIRE_FALSE(bad.config);
  CHECK(bad.errors.str() ==
        "r.yaml:6: probes[0].retries: 3 attempts 1s apart cannot fit in the timeout 2s: the "
        "timeout covers every attempt and the delays between them\n"
        "r.yaml:10: probes[1].retries.attempts: 9 is out of range [1, 5]\n");
}

TEST_CASE("metrics: detail and buckets from global.metrics or the probe, within the budget") {
  auto load = load_config_text(R"(global:
  metrics: {detail: basic}
probes:
  - name: inherits
    type: http
    http: {url: "http://127.0.0.1/"}
  - name: own
    type: http
    metrics: {detail: full, buckets: [0.1, 1, 10]}
    http: {url: "http://127.0.0.1/"}
)",
                               "m.yaml");
  REQUIRE(load.config);
  using Detail = canaryd::ProbeSpec::MetricsDetail;
  CHECK(load.config->probes[0].spec.detail == Detail::kBasic);
  CHECK(load.config->probes[0].spec.duration_buckets.empty());
  CHECK(load.config->probes[1].spec.detail == Detail::kFull);
  CHECK(load.config->probes[1].spec.duration_buckets == std::vector<double>{0.1, 1, 10});

  auto bad = load_config_text(R"(global: {}
probes:
  - name: a
    type: http
    metrics: {detail: verbose}
    http: {url: "http://127.0.0.1/"}
  - name: b
    type: http
    metrics: {buckets: [1, 0.5]}
    http: {url: "http://127.0.0.1/"}
  - name: c
    type: http
    metrics: {detail: basic, buckets: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]}
    http: {url: "http://127.0.0.1/"}
)",
                              "m.yaml");
  REQUIRE_FALSE(bad.config);
  CHECK(bad.errors.str() ==
        "m.yaml:5: probes[0].metrics.detail: \"verbose\" is not basic or full\n"
        "m.yaml:9: probes[1].metrics.buckets: expected a list of positive seconds in ascending "
        "order, e.g. [0.1, 1, 10]\n"
        "m.yaml:13: probes[2].metrics: 10 buckets; metrics.detail basic allows at most 9 (and "
        "+Inf)\n");
}

TEST_CASE("a p95 threshold between two bucket bounds is a warning and a bound is not") {
  auto config_with = [](const std::string& threshold) {
    return load_config_text(R"(global: {}
probes:
  - name: api
    type: http
    http: {url: "http://127.0.0.1/"}
  - name: api-own-buckets
    type: http
    metrics: {buckets: [0.5, 1.5, 3]}
    http: {url: "http://127.0.0.1/"}
  - name: chat
    type: websocket
    websocket: {url: "ws://127.0.0.1/ws"}
alerting:
  rules:
    latency_p95_high: {threshold: )" +
                                threshold + R"(}
)",
                            "w.yaml");
  };
  // 1.5 s lies between the basic bounds 1 and 2: the p95 of runs that all
  // took 1.2 s reads as about 2 s there, so the alert would page.
  auto between = config_with("1500ms");
  REQUIRE(between.config);
  REQUIRE(between.config->warnings.size() == 1);
  CHECK(between.config->warnings[0].str() ==
        "w.yaml: alerting.rules.latency_p95_high.threshold: 1.5s is not a bound of the duration "
        "buckets of api (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 30): their quantile is "
        "interpolated between two bounds and can exceed 1.5s when nothing did, a false page; add "
        "it to metrics.buckets or choose one of the bounds");
  // The default (2 s) is a bound of both modes' buckets; the probe with its
  // own buckets is then the one off a bound.
  auto fine = config_with("2s");
  REQUIRE(fine.config);
  REQUIRE(fine.config->warnings.size() == 1);
  CHECK(fine.config->warnings[0].message.find("buckets of api-own-buckets (0.5, 1.5, 3)") !=
        std::string::npos);
  auto none = config_with("500ms");
  REQUIRE(none.config);
  CHECK(none.config->warnings.empty());
}

TEST_CASE("tracing.sampled: on by default, off for every probe, and a bad value is an error") {
  auto with_tracing = [](const std::string& tracing) {
    return load_config_text((tracing.empty() ? "" : "global:\n" + tracing) +
                                "probes:\n  - name: p\n    type: http\n"
                                "    http: {url: \"http://127.0.0.1:1/\"}\n",
                            "t.yaml");
  };
  auto by_default = with_tracing(""), on = with_tracing("  tracing: {sampled: true}\n"),
       off = with_tracing("  tracing:\n    sampled: false\n");
  REQUIRE(by_default.config);
  REQUIRE(on.config);
  REQUIRE(off.config);
  CHECK(by_default.config->probes[0].spec.trace_sampled);
  CHECK_FALSE(off.config->probes[0].spec.trace_sampled);
  // What the probes send changes: a reload replaces them. The default adds
  // nothing, so a state file saved before tracing existed still matches.
  CHECK(by_default.config->probes[0].spec.fingerprint == on.config->probes[0].spec.fingerprint);
  CHECK(off.config->probes[0].spec.fingerprint != on.config->probes[0].spec.fingerprint);

  auto bad = with_tracing("  tracing:\n    sampled: sometimes\n");
  REQUIRE_FALSE(bad.config);
  CHECK(bad.errors.str() ==
        "t.yaml:3: global.tracing.sampled: expected true or false, got \"sometimes\"\n");
  auto unknown = with_tracing("  tracing: {sample: true}\n");
  REQUIRE_FALSE(unknown.config);
  CHECK(unknown.errors.str() == "t.yaml:2: global.tracing.sample: unknown key\n");
}

TEST_CASE("an agent stall threshold between two gap bucket bounds is a warning") {
  auto config_with = [](const std::string& rule) {
    return load_config_text(R"(global: {}
probes:
  - name: agent
    type: agent_pipeline
    agent_pipeline:
      websocket: {url: "ws://127.0.0.1/ws"}
      send: {json: {type: ping}}
      events: [{type: pong}]
)" + rule,
                            "a.yaml");
  };
  auto between = config_with("alerting:\n  rules:\n    agent_stream_stalled: {threshold: 7s}\n");
  REQUIRE(between.config);
  REQUIRE(between.config->warnings.size() == 1);
  CHECK(between.config->warnings[0].key == "alerting.rules.agent_stream_stalled.threshold");
  CHECK(between.config->warnings[0].message.find(
            "7s is not a bound of the canary_agent_event_gap_seconds buckets of agent (") == 0);
  // The default threshold is a bound in both metrics modes.
  auto fine = config_with("");
  REQUIRE(fine.config);
  CHECK(fine.config->warnings.empty());
}
