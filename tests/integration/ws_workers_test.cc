// WebSocket probes on several probe loops (global.workers): each loop has its
// own lws context, and the daemon must do TLS on all of them and exit with
// nothing leaked (the ASan build's LeakSanitizer fails the exit code).
#include <fmt/format.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "tests/support/harness.h"

using namespace canaryd::test;
using namespace std::chrono_literals;

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
  // Two runs each: the second after both loops' contexts exist.
  REQUIRE(wait_until(
      [&] {
        for (const auto& n : names)
          if (!has_run(d, n, 2)) return false;
        return true;
      },
      60s));
  std::string m = d.metrics();
  CHECK(metric_value(m, "canary_loop_probes", {{"loop", "0"}}) > 0);
  CHECK(metric_value(m, "canary_loop_probes", {{"loop", "1"}}) > 0);
  for (const auto& n : names) {
    INFO(n);
    if (n.starts_with("wss-unknown-ca")) {
      // The default trust store does not know the fixture's CA: a TLS failure, nothing else.
      CHECK(metric_value(m, "canary_probe_success", {{"probe", n}}) == 0.0);
      CHECK(d.state(n)["last"]["reason"] == "tls");
    } else {
      CHECK(metric_value(m, "canary_probe_success", {{"probe", n}}) == 1.0);
    }
  }
  CHECK(unexpected_failures(m, "wss-ca") == std::vector<std::string>{});
  CHECK(unexpected_failures(m, "wss-insecure") == std::vector<std::string>{});
  CHECK(unexpected_failures(m, "wss-unknown-ca", "tls") == std::vector<std::string>{});
  CHECK(unexpected_failures(m, "ws-") == std::vector<std::string>{});
  const int code = d.process().stop();
  // A leak report, if any, says what leaked.
  std::string err = d.process().stderr_text();
  size_t report = err.find("LeakSanitizer");
  INFO((report != std::string::npos ? err.substr(report, 3000)
                                    : err.substr(err.size() - std::min<size_t>(err.size(), 2000))));
  CHECK(code == 0);
}
