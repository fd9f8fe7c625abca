// The command line's contract: verbs, exit codes and the shipped configs.
#include <catch2/catch.hpp>
#include <fstream>
#include <sstream>

#include "tests/support/harness.h"

using namespace canaryd::test;

TEST_CASE("version and help flags", "[cli]") {
  auto v = run_command({canaryd_bin(), "--version"});
  CHECK(v.exit_code == 0);
  CHECK(v.out == "canaryd 0.1.0\n");
  auto h = run_command({canaryd_bin(), "--help"});
  CHECK(h.exit_code == 0);
  for (const char* verb : {"run", "check-config", "once", "status"}) {
    INFO(verb);
    CHECK(h.out.find(verb) != std::string::npos);
  }
  auto bad = run_command({canaryd_bin(), "frobnicate"});
  CHECK(bad.exit_code == 2);
}

TEST_CASE("check-config: exit 0 for the shipped configs, 1 with file:line: key for a bad one",
          "[cli]") {
  TempDir dir;
  // The demo config points at certificates the demo script generates; give it
  // some so the check can read them.
  std::string certs = make_certs(dir);
  std::ifstream in(source_dir() + "/config/demo.yaml");
  std::stringstream ss;
  ss << in.rdbuf();
  std::string demo = ss.str();
  for (size_t pos; (pos = demo.find("/tmp/canaryd-demo/certs")) != std::string::npos;)
    demo.replace(pos, std::string("/tmp/canaryd-demo/certs").size(), certs);
  std::string demo_path = dir.write_file("demo.yaml", demo);
  auto ok = run_command({canaryd_bin(), "check-config", demo_path});
  INFO(ok.err);
  CHECK(ok.exit_code == 0);
  CHECK(ok.out.find("OK") != std::string::npos);

  auto example = run_command({canaryd_bin(), "check-config", source_dir() + "/config/example.yaml"},
                             std::chrono::seconds(30),
                             {"REDIS_PASSWORD=example", "CANARYD_API_TOKEN=example-token"});
  INFO(example.err);
  CHECK(example.exit_code == 0);

  std::string bad = dir.write_file("bad.yaml",
                                   "probes:\n  - name: a\n    type: http\n    http:\n      url: "
                                   "http://127.0.0.1/\n      methd: GET\n");
  auto r = run_command({canaryd_bin(), "check-config", bad});
  CHECK(r.exit_code == 1);
  CHECK(r.err == bad + ":6: probes[0].http.methd: unknown key\n");

  auto missing = run_command({canaryd_bin(), "check-config", dir.file("nope.yaml")});
  CHECK(missing.exit_code == 1);
  CHECK(missing.err.find("cannot read config") != std::string::npos);
}
