// WebSocket probes on several probe loops (global.workers): each loop has its
// own lws context, and the daemon must do TLS on all of them and exit with
// nothing leaked (the ASan build's LeakSanitizer fails the exit code).
#include <fmt/format.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "tests/support/harness.h"

using namespace canaryd::test;
using namespace std::chrono_literals;
using nlohmann::json;

namespace {

TlsPlatform& platform() {
  static TlsPlatform p;
  return p;
}

std::string ws_probe(const std::string& name, const std::string& url, const std::string& tls = "") {
  return fmt::format(
      "  - name: {}\n    type: websocket\n    interval: 2s\n    timeout: 1800ms\n    websocket:\n"
      "      url: \"{}\"\n{}",
      name, url, tls.empty() ? "" : "      tls: " + tls + "\n");
}

}  // namespace

TEST_CASE(
    "websocket: wss and ws probes on two probe loops at once all work, and the daemon exits "
    "with no leak",
    "[websocket][daemon]") {
  auto& p = platform();
  // Six of each kind: hashed over two loops (daemon/worker.cc, worker_of),
  // these names put every kind on both loops.
  constexpr int kEach = 6;
  std::string probes;
  for (int i = 0; i < kEach; ++i) {
    probes += ws_probe(fmt::format("wss-ca-{}", i), p.tls_url("wss", "good", "/ws"),
                       "{ca_file: " + p.ca() + "}");
    probes += ws_probe(fmt::format("wss-insecure-{}", i), p.tls_url("wss", "wronghost", "/ws"),
                       "{insecure_skip_verify: true}");
    probes += ws_probe(fmt::format("wss-unknown-ca-{}", i), p.tls_url("wss", "good", "/ws"));
    probes += ws_probe(fmt::format("ws-{}", i), p.fp.url("/ws").replace(0, 4, "ws"));
  }
  Daemon d(
      "global:\n  listen: \"{{listen}}\"\n  workers: 2\n  labels: {env: test, location: ci}\n"
      "probes:\n" +
      probes);
  std::vector<std::string> names;
  for (const char* kind : {"wss-ca", "wss-insecure", "wss-unknown-ca", "ws"})
    for (int i = 0; i < kEach; ++i) names.push_back(fmt::format("{}-{}", kind, i));
  // A run's outcome by reason ("ok" for a success), over the state API's history.
  auto outcomes = [&](const std::string& n) {
    std::map<std::string, int> out;
    const json state = d.state(n);
    for (const auto& r : state["history"]) ++out[r.value("reason", "")];
    return out;
  };
  // The reason each kind must end with: the default trust store does not know
  // the fixture's CA.
  auto expected = [](const std::string& n) {
    return n.starts_with("wss-unknown-ca") ? "tls" : "ok";
  };
  // Two runs each, the second after both loops' contexts exist, and each has
  // ended as it must at least once: on a loaded machine (an ASan build on
  // two shared cores) a run may time out.
  REQUIRE(wait_until(
      [&] {
        for (const auto& n : names)
          if (!has_run(d, n, 2) || outcomes(n)[expected(n)] == 0) return false;
        return true;
      },
      60s));
  std::string m = d.metrics();
  CHECK(metric_value(m, "canary_loop_probes", {{"loop", "0"}}) > 0);
  CHECK(metric_value(m, "canary_loop_probes", {{"loop", "1"}}) > 0);
  // Nothing else: the bug failed handshakes (tls) and leaked.
  for (const auto& n : names) {
    INFO(n);
    for (const auto& [reason, count] : outcomes(n)) {
      INFO(reason);
      CHECK((reason == expected(n) || reason == "timeout"));
    }
  }
  CHECK(unexpected_failures(m, "wss-ca", "timeout") == std::vector<std::string>{});
  CHECK(unexpected_failures(m, "wss-insecure", "timeout") == std::vector<std::string>{});
  CHECK(metric_sum(m, "canary_probe_failures_total", "wss-unknown-ca", {{"reason", "tls"}}) > 0);
  CHECK(unexpected_failures(m, "ws-", "timeout") == std::vector<std::string>{});
  const int code = d.process().stop();
  // A leak report, if any, says what leaked.
  std::string err = d.process().stderr_text();
  size_t report = err.find("LeakSanitizer");
  INFO((report != std::string::npos ? err.substr(report, 3000)
                                    : err.substr(err.size() - std::min<size_t>(err.size(), 2000))));
  CHECK(code == 0);
}
