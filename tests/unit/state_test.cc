// The state store: what /api/v1/state and `canaryd status` report.
#include <catch2/catch.hpp>

#include "daemon/state_store.h"

using namespace std::chrono_literals;
using canaryd::ProbeResult;
using canaryd::Reason;

namespace {
struct Fixture {
  canaryd::ConfigLoad load = canaryd::load_config_text(R"(
probes:
  - name: p
    type: http
    category: infrastructure
    critical: true
    http: {url: "http://127.0.0.1:1/health"}
)",
                                                       "t.yaml");
  canaryd::ProbeBook book;
  canaryd::StateStore store;
  canaryd::WallTime t0 = canaryd::WallTime(std::chrono::seconds(1'800'000'000));
  std::string target = "GET http://127.0.0.1:1/health";

  Fixture() {
    REQUIRE(load.config);
    store.set_books({&book});
    book.install({&load.config->probes[0]}, {}, 3);
  }
  void record(const ProbeResult& r, canaryd::WallTime at) {
    canaryd::RunRecord rec{load.config->probes[0].spec, target, r, "run", 0.25, at};
    book.record(rec);
  }
};
}  // namespace

TEST_CASE("a probe is pending until its first result") {
  Fixture f;
  auto j = f.store.probe("p", f.t0);
  REQUIRE(j);
  CHECK((*j)["status"] == "pending");
  CHECK((*j)["last"].is_null());
  CHECK(nlohmann::json::parse(f.store.all_text(f.t0))["summary"]["pending"] == 1);
  CHECK_FALSE(f.store.probe("nope", f.t0));
}

TEST_CASE("the state knows since when a probe fails and for how long") {
  Fixture f;
  f.record(ProbeResult::ok(), f.t0);
  auto fail = ProbeResult::failure(Reason::kHttpStatus, "HTTP status 503 (expected 2xx)");
  fail.details.status_code = 503;
  f.record(fail, f.t0 + 30s);
  f.record(fail, f.t0 + 60s);
  auto j = *f.store.probe("p", f.t0 + 90s);
  CHECK(j["status"] == "failing");
  CHECK(j["last"]["reason"] == "http_status");
  CHECK(j["last"]["message"] == "HTTP status 503 (expected 2xx)");
  CHECK(j["last"]["details"]["status_code"] == 503);
  CHECK(j["failing_since"] == "2027-01-15T08:00:30.000Z");
  CHECK(j["failing_for_seconds"] == Approx(60.0));
  CHECK(j["passing_since"].is_null());
  CHECK(j["consecutive_failures"] == 2);
  CHECK(j["last_success"] == "2027-01-15T08:00:00.000Z");

  f.record(ProbeResult::ok(), f.t0 + 120s);
  j = *f.store.probe("p", f.t0 + 150s);
  CHECK(j["status"] == "passing");
  CHECK(j["failing_since"].is_null());
  CHECK(j["passing_for_seconds"] == Approx(30.0));
  CHECK(j["consecutive_failures"] == 0);
  CHECK(j["runs_total"] == 4);
  CHECK(j["failures_total"] == 2);
}

TEST_CASE("history is a bounded ring, newest first") {
  Fixture f;
  for (int i = 0; i < 10; ++i) f.record(ProbeResult::ok(), f.t0 + std::chrono::seconds(i));
  auto j = *f.store.probe("p", f.t0 + 20s);
  REQUIRE(j["history"].size() == 3);
  CHECK(j["history"][0]["time"] == "2027-01-15T08:00:09.000Z");
  CHECK(j["history"][2]["time"] == "2027-01-15T08:00:07.000Z");
}

TEST_CASE("results carry phases in order and typed details") {
  auto r = ProbeResult::failure(Reason::kTimeout, "timed out after 5s during connect",
                                {{"dns", 0.001}, {"connect", 4.999}});
  r.details.timeout_phase = "connect";
  auto j = canaryd::result_json(r, 5.0, 1);
  CHECK(j["reason"] == "timeout");
  CHECK(j["attempts"] == 1);
  CHECK(j["retried"] == false);
  CHECK(canaryd::result_json(ProbeResult::ok({}), 0.1, 2)["retried"] == true);
  CHECK(j["phases"].begin().key() == "dns");
  CHECK(j["details"]["timeout_phase"] == "connect");
  CHECK(j["duration_seconds"] == 5.0);
}

TEST_CASE(
    "the whole state is the JSON text one document dump gives, though built a probe at a time") {
  Fixture f;
  f.record(ProbeResult::ok({{"dns", 0.001}, {"total", 0.25}}), f.t0);
  f.record(ProbeResult::failure(Reason::kTimeout, "timed out after 1s during \"connect\"\n"),
           f.t0 + 30s);
  f.store.set_config_status("t.yaml", false, "t.yaml:3: bad key");
  std::string text = f.store.all_text(f.t0 + 40s);
  auto doc = nlohmann::ordered_json::parse(text);
  // A dump of the parsed document reproduces the text byte for byte: the
  // pieces are laid out exactly as one dump(2) of the whole would be.
  CHECK(doc.dump(2) + "\n" == text);
  CHECK(doc["summary"]["probes"] == 1);
  CHECK(doc["summary"]["failing"] == 1);
  CHECK(doc["probes"][0]["name"] == "p");
  CHECK(doc["probes"][0]["history"].size() == 2);
  CHECK(doc["config"]["last_reload_error"] == "t.yaml:3: bad key");

  canaryd::ProbeBook no_probes;
  canaryd::StateStore empty;
  empty.set_books({&no_probes});
  std::string none = empty.all_text(f.t0);
  CHECK(nlohmann::ordered_json::parse(none).dump(2) + "\n" == none);
  CHECK(nlohmann::json::parse(none)["probes"].empty());
}
