// global.state_file as an SRE meets it across restarts: "failing since" and
// the history survive one, a deleted probe's state goes, a damaged file is
// set aside, and SIGKILL in the middle of writes never leaves a file canaryd
// cannot read.
#include <fmt/format.h>
#include <signal.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>

#include "tests/support/harness.h"

using namespace canaryd::test;
using namespace std::chrono_literals;
using nlohmann::json;

namespace {

FakePlatform& platform() {
  static FakePlatform fp;
  return fp;
}

std::string config(const std::string& state_file, const std::string& probes) {
  return fmt::format(
      "global:\n  listen: \"{{{{listen}}}}\"\n  state_file: {}\n"
      "  defaults: {{interval: 1s, timeout: 1s}}\nprobes:\n{}",
      state_file, probes);
}

std::string http_probe(const std::string& name, const std::string& url) {
  return fmt::format("  - name: {}\n    type: http\n    http:\n      url: \"{}\"\n", name, url);
}

// The files beside the state file that canaryd set aside.
int set_aside_files(const TempDir& dir) {
  int n = 0;
  for (const auto& f : std::filesystem::directory_iterator(dir.path()))
    if (f.path().filename().string().find(".bad-") != std::string::npos) ++n;
  return n;
}

}  // namespace

TEST_CASE("state file: failing since and the history survive a restart, a deleted probe's goes",
          "[daemon][state_file]") {
  auto& fp = platform();
  TempDir keep;
  const std::string path = keep.file("state.db");
  const std::string down = http_probe("down", fp.url("/health?status=500"));
  const std::string gone = http_probe("gone", fp.url("/health?status=503"));
  std::string failing_since;
  size_t history = 0;
  {
    Daemon d(config(path, down + gone));
    REQUIRE(wait_until([&] { return has_run(d, "down", 3) && has_run(d, "gone", 2); }));
    json s = d.state("down");
    failing_since = s["failing_since"].get<std::string>();
    history = s["history"].size();
    CHECK(d.process().stop() == 0);  // SIGTERM: the last write happens on the way out
  }
  {
    // "gone" is no longer configured: its saved state is dropped.
    Daemon d(config(path, down));
    json s = d.state("down");
    CHECK(s["status"] == "failing");
    CHECK(s["failing_since"] == failing_since);
    CHECK(s["history"].size() >= history);
    CHECK(s["last"]["reason"] == "http_status");
    // A write a second or so after start has removed the row.
    std::this_thread::sleep_for(2500ms);
    CHECK(d.process().stop() == 0);
  }
  {
    // Configured again, "gone" starts from nothing: its row was deleted.
    Daemon d(config(path, down + gone));
    json s = d.state("gone");
    CHECK(s["history"].size() <= 1);
    if (s["status"] == "failing") {
      CHECK(s["failing_for_seconds"].get<double>() < 30);
    } else {
      CHECK(s["status"] == "pending");
    }
  }
  CHECK(set_aside_files(keep) == 0);
}

TEST_CASE("state file: a probe whose settings changed starts fresh", "[daemon][state_file]") {
  auto& fp = platform();
  TempDir keep;
  const std::string path = keep.file("state.db");
  {
    Daemon d(config(path, http_probe("p", fp.url("/health?status=500"))));
    REQUIRE(wait_until([&] { return has_run(d, "p", 2); }));
  }
  // Another URL is another probe under the same name: its old verdict would mislead.
  Daemon d(config(path, http_probe("p", fp.url("/health?status=500&v=2"))));
  json s = d.state("p");
  CHECK(s["history"].size() <= 1);
}

TEST_CASE("state file: a damaged or foreign file is set aside with a warning, never a crash",
          "[daemon][state_file]") {
  auto& fp = platform();
  for (const std::string& content :
       {std::string("this is not a database, it is a text file\n"),
        std::string("SQLite format 3") + std::string(1, '\0') + std::string(4000, 'x')}) {
    TempDir keep;
    const std::string path = keep.write_file("state.db", content);
    Daemon d(config(path, http_probe("up", fp.url("/health"))));
    REQUIRE(wait_until([&] { return has_run(d, "up", 2); }));
    CHECK(d.state("up")["status"] == "passing");
    CHECK(d.process().stderr_text().find("set aside as " + path + ".bad-") != std::string::npos);
    CHECK(set_aside_files(keep) >= 1);
  }
}

TEST_CASE(
    "state file: SIGKILL during heavy writes leaves the old state or the new, never a bad file",
    "[daemon][state_file][slow]") {
  auto& fp = platform();
  TempDir keep;
  const std::string path = keep.file("state.db");
  // Every probe changes every second, so every write rewrites every row.
  std::string probes;
  for (int i = 0; i < 200; ++i)
    probes +=
        http_probe(fmt::format("p{:03d}", i), fp.url(fmt::format("/health?fail_every=2&n={}", i)));
  for (int round = 0; round < 4; ++round) {
    Daemon d(config(path, probes));
    REQUIRE(wait_until([&] { return has_run(d, "p199", 2); }));
    // Kill at a different point of the one-second write cycle each round.
    std::this_thread::sleep_for(std::chrono::milliseconds(1100 + 230 * round));
    d.process().signal(SIGKILL);
    d.process().wait_exit(10s);
  }
  Daemon d(config(path, probes));
  const std::string log = d.process().stderr_text();
  INFO(log);
  CHECK(log.find("set aside") == std::string::npos);
  CHECK(log.find("200 saved probe states") != std::string::npos);
  CHECK(set_aside_files(keep) == 0);
  // Restored: read at once, every probe shows the two runs or more it had
  // before the kill (a fresh start could not have two within its first second).
  json all = d.state();
  int restored = 0;
  for (const auto& p : all["probes"]) restored += p["history"].size() >= 2;
  CHECK(restored == 200);
}
