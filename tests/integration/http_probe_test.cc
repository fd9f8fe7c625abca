// The HTTP probe against the fake platform backend over real loopback HTTP and
// TLS, read the way a deploy pipeline reads it: `canaryd once --json`.
#include <fmt/format.h>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "tests/support/harness.h"

using namespace canaryd::test;
using nlohmann::json;

namespace {

struct Platform : TlsPlatform {
  std::string https(const std::string& name, const std::string& path) const {
    return tls_url("https", name, path);
  }
};

Platform& platform() {
  static Platform p;
  return p;
}

std::string probe(const std::string& name, const std::string& body,
                  const std::string& timeout = "5s") {
  return fmt::format(
      "  - name: {}\n    type: http\n    interval: 10s\n    timeout: {}\n    http:\n{}", name,
      timeout, body);
}

// The first five cells (PROBE TYPE RESULT REASON LATENCY) of the row of `once`'s table whose
// first cell is `name`; an empty vector when no row is. None of those cells holds a space.
std::vector<std::string> table_row(const std::string& out, const std::string& name) {
  std::istringstream lines(out);
  for (std::string line; std::getline(lines, line);) {
    std::istringstream cells(line);
    std::vector<std::string> row;
    for (std::string cell; row.size() < 5 && cells >> cell;) row.push_back(cell);
    if (!row.empty() && row[0] == name) return row;
  }
  return {};
}

}  // namespace

TEST_CASE("each HTTP failure mode is a distinct reason", "[http]") {
  auto& p = platform();
  std::string ca = p.certs + "/ca.pem";
  int refused_port = free_port();
  std::string config =
      "probes:\n" +
      probe("healthy", fmt::format("      url: {}\n      expect: {{status: [200], body_regex: "
                                   "'\"healthy\"', json: {{status: healthy}}}}\n",
                                   p.fp.url("/health"))) +
      probe("degraded", fmt::format("      url: {}\n      expect: {{json: {{status: healthy}}}}\n",
                                    p.fp.url("/health?mode=degraded"))) +
      probe("regex", fmt::format("      url: {}\n      expect: {{body_regex: 'version.: .9'}}\n",
                                 p.fp.url("/health"))) +
      probe("error500", fmt::format("      url: {}\n", p.fp.url("/health?mode=error"))) +
      probe("expect500", fmt::format("      url: {}\n      expect: {{status: [500, 503]}}\n",
                                     p.fp.url("/health?mode=error"))) +
      probe("hang", fmt::format("      url: {}\n", p.fp.url("/health?mode=hang")), "1s") +
      probe("refused", fmt::format("      url: http://127.0.0.1:{}/health\n", refused_port)) +
      probe("dns", "      url: http://canaryd-test-host.invalid/health\n") +
      probe("garbage", fmt::format("      url: {}\n", p.fp.url("/health?mode=garbage"))) +
      probe("huge", fmt::format("      url: {}\n", p.fp.url("/health?mode=huge&bytes=3000000"))) +
      probe("small-cap",
            fmt::format("      url: {}\n      max_body_bytes: 10\n", p.fp.url("/health"))) +
      probe("slow",
            fmt::format("      url: {}\n", p.fp.url("/health?mode=slow_body&delay_ms=300"))) +
      probe("tls-good", fmt::format("      url: {}\n      tls: {{ca_file: {}}}\n",
                                    p.https("good", "/health"), ca)) +
      probe("tls-wronghost", fmt::format("      url: {}\n      tls: {{ca_file: {}}}\n",
                                         p.https("wronghost", "/health"), ca)) +
      probe("tls-expired", fmt::format("      url: {}\n      tls: {{ca_file: {}}}\n",
                                       p.https("expired", "/health"), ca)) +
      probe("tls-unknown-ca", fmt::format("      url: {}\n", p.https("good", "/health"))) +
      probe("tls-skip-verify",
            fmt::format("      url: {}\n      tls: {{insecure_skip_verify: true}}\n",
                        p.https("wronghost", "/health"))) +
      probe("tls-server-name",
            fmt::format(
                "      url: {}\n      tls: {{ca_file: {}, server_name: wrong.example.test}}\n",
                p.https("wronghost", "/health"), ca)) +
      probe("post", fmt::format("      url: {}\n      method: POST\n      body: '{{\"ping\": 1}}'\n"
                                "      headers: {{Content-Type: application/json}}\n"
                                "      expect: {{status: [405]}}\n",
                                p.fp.url("/health")));
  int code = 0;
  json out = once_json(config, &code);
  CHECK(code == 1);
  CHECK(out["passed"] == false);

  auto reason = [&](const std::string& name) { return result_of(out, name)["reason"]; };
  auto healthy = result_of(out, "healthy");
  CHECK(healthy["success"] == true);
  CHECK(healthy["details"]["status_code"] == 200);
  for (const char* phase : {"dns", "connect", "first_byte", "total"}) {
    INFO(phase);
    CHECK(healthy["phases"].contains(phase));
  }
  CHECK_FALSE(healthy["phases"].contains("tls"));

  CHECK(reason("degraded") == "assertion");
  CHECK(result_of(out, "degraded")["message"] ==
        "JSON field status is \"degraded\", expected \"healthy\"");
  CHECK(reason("regex") == "assertion");
  CHECK(reason("error500") == "http_status");
  CHECK(result_of(out, "error500")["details"]["status_code"] == 500);
  CHECK(reason("expect500") == "ok");
  CHECK(reason("hang") == "timeout");
  CHECK(result_of(out, "hang")["details"]["timeout_phase"] == "first_byte");
  CHECK(reason("refused") == "connect_refused");
  CHECK(reason("dns") == "dns");
  CHECK(reason("garbage") == "protocol");
  CHECK(reason("huge") == "body_too_large");
  CHECK(reason("small-cap") == "body_too_large");
  auto slow = result_of(out, "slow");
  CHECK(slow["success"] == true);
  // Headers come at once and the body 300 ms later: first byte and total differ.
  CHECK(slow["phases"]["total"].get<double>() >= 0.3);
  CHECK(slow["phases"]["first_byte"].get<double>() < slow["phases"]["total"].get<double>());

  auto good = result_of(out, "tls-good");
  CHECK(good["success"] == true);
  CHECK(good["phases"].contains("tls"));
  CHECK(good["details"].contains("cert_expiry"));
  CHECK(reason("tls-wronghost") == "tls_hostname");
  CHECK(reason("tls-expired") == "tls_expired");
  CHECK(reason("tls-unknown-ca") == "tls");
  CHECK(reason("tls-skip-verify") == "ok");
  CHECK(reason("tls-server-name") == "ok");
  CHECK(reason("post") == "ok");
}

TEST_CASE("once is a deploy gate: exit 0 when all pass, 1 when any fails, 2 on bad config",
          "[http][cli]") {
  auto& p = platform();
  std::string config =
      "probes:\n" + probe("up", fmt::format("      url: {}\n", p.fp.url("/health"))) +
      probe("down", fmt::format("      url: {}\n", p.fp.url("/health?status=503")));
  TempDir dir;
  std::string path = dir.write_file("c.yaml", config);

  auto ok = run_command({canaryd_bin(), "once", "--config", path, "--probe", "up"});
  CHECK(ok.exit_code == 0);
  INFO(ok.out);
  const auto header = table_row(ok.out, "PROBE");
  CHECK(header == std::vector<std::string>{"PROBE", "TYPE", "RESULT", "REASON", "LATENCY"});
  const auto up = table_row(ok.out, "up");
  REQUIRE(up.size() == 5);
  CHECK(up[1] == "http");
  CHECK(up[2] == "PASS");
  CHECK(up[3] == "ok");
  CHECK(table_row(ok.out, "down").empty());  // --probe up runs only that one
  CHECK(ok.out.find("1 of 1 probes passed") != std::string::npos);

  auto bad = run_command({canaryd_bin(), "once", "--config", path});
  CHECK(bad.exit_code == 1);
  INFO(bad.out);
  CHECK(bad.out.find("FAIL") != std::string::npos);
  CHECK(bad.out.find("http_status") != std::string::npos);
  const auto down = table_row(bad.out, "down");
  REQUIRE(down.size() == 5);
  CHECK(down[2] == "FAIL");
  CHECK(down[3] == "http_status");
  const auto still_up = table_row(bad.out, "up");
  REQUIRE(still_up.size() == 5);
  CHECK(still_up[2] == "PASS");
  CHECK(bad.out.find("1 of 2 probes passed") != std::string::npos);

  auto unknown = run_command({canaryd_bin(), "once", "--config", path, "--probe", "nope"});
  CHECK(unknown.exit_code == 2);
  CHECK(unknown.err.find("no probe named \"nope\"") != std::string::npos);

  std::string broken = dir.write_file("broken.yaml", "probes:\n  - name: x\n    type: nope\n");
  auto invalid = run_command({canaryd_bin(), "once", "--config", broken});
  CHECK(invalid.exit_code == 2);
  CHECK(invalid.err.find("broken.yaml:3: probes[0].type: unknown probe type") != std::string::npos);
}

TEST_CASE("once with retries: a deploy gate passes a target whose failure a retry does not confirm",
          "[http][cli][retries]") {
  auto& p = platform();
  // fail_every=2 counts requests per URL: one request now makes the gate's
  // first attempt the second, which fails; its retry is the third, which passes.
  const std::string url = p.fp.url("/health?fail_every=2&probe=gate-retried");
  REQUIRE(http_get(url).status == 200);
  TempDir dir;
  std::string path =
      dir.write_file("c.yaml", "probes:\n" + probe("gate", fmt::format("      url: {}\n", url)) +
                                   "    retries: {attempts: 2, delay: 50ms}\n");
  auto connections = [&] {
    return json::parse(http_get(p.fp.url("/_stats")).body)["connections_total"].get<int>();
  };
  const int before = connections();
  auto gate = run_command({canaryd_bin(), "once", "--config", path, "--json"});
  INFO(gate.out);
  CHECK(gate.exit_code == 0);
  // Each attempt starts from nothing: the retry opened a connection of its own
  // (the "+ 1" is the /_stats request above itself).
  CHECK(connections() == before + 1 + 2);
  const auto out = nlohmann::json::parse(gate.out);
  REQUIRE(out["results"].size() == 1);
  CHECK(out["results"][0]["success"] == true);
  CHECK(out["results"][0]["retried"] == true);
  CHECK(out["results"][0]["attempts"] == 2);
}
