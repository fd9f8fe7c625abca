// The process-wide secret set across reloads: it holds what the running
// config and the running probes use, not everything ever loaded.
#include <catch2/catch.hpp>
#include <string>

#include "base/secrets.h"

using namespace canaryd;

namespace {

Secrets config_with(const std::string& stable, const std::string& rotating) {
  Secrets s;
  s.add(stable);
  s.add(rotating);
  return s;
}

}  // namespace

TEST_CASE("reloads replace the configured secrets instead of piling them up", "[secrets]") {
  Secrets global;
  const std::string stable = "stable-secret-value";
  for (int i = 0; i < 1000; ++i) {
    const std::string rotating = "rotated-token-" + std::to_string(i);
    global.replace_configured(config_with(stable, rotating));
    // What the running config uses is always redacted...
    CHECK(global.redact(stable) == kRedacted);
    CHECK(global.redact(rotating) == kRedacted);
    // ...and so, for a while, is the value it replaced: a message already
    // under way may quote it.
    if (i > 0) CHECK(global.redact("rotated-token-" + std::to_string(i - 1)) == kRedacted);
  }
  // A thousand reloads later the set is as big as one config plus a bounded
  // tail of retired values.
  CHECK(global.size() == 2);
  CHECK(global.transient_size() <= Secrets::kMaxTransient);
  // A probe that no longer exists: its secret ages out.
  CHECK(global.redact("rotated-token-0") == "rotated-token-0");
}

TEST_CASE("a run-time secret in use is never dropped, and released ones age out", "[secrets]") {
  Secrets global;
  const std::string token = "issued-token-in-use";
  auto pin = global.pin(token);
  for (size_t i = 0; i < 3 * Secrets::kMaxTransient; ++i)
    global.add_transient("one-run-token-" + std::to_string(i));
  CHECK(global.redact(token) == kRedacted);
  CHECK(global.transient_size() <= Secrets::kMaxTransient + 1);
  // Two users of one value: it stays until the last lets go.
  auto second = global.pin(token);
  pin.reset();
  for (size_t i = 0; i < 3 * Secrets::kMaxTransient; ++i)
    global.add_transient("later-token-" + std::to_string(i));
  CHECK(global.redact(token) == kRedacted);
  second.reset();
  CHECK(global.redact(token) == kRedacted);  // just released: still among the recent
  for (size_t i = 0; i < Secrets::kMaxTransient; ++i)
    global.add_transient("newer-token-" + std::to_string(i));
  CHECK(global.redact(token) == token);
  CHECK(global.transient_size() <= Secrets::kMaxTransient);
}
