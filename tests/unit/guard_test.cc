// Exceptions that reach a C library's callback: each becomes its run's
// `internal` result, the run ends exactly once, and the loop goes on. The
// probes here are written for the test, but the callbacks they throw from
// are the real shared plumbing (TCP client, name lookups, libcurl's multi
// handle, the work pools) on a real libuv loop.
#include <catch2/catch.hpp>
#include <map>
#include <stdexcept>

#include "daemon/engine.h"
#include "probes/common/curl_multi.h"
#include "probes/common/resolve.h"
#include "probes/common/tcp_client.h"
#include "tests/support/servers.h"

using namespace std::chrono_literals;
using namespace canaryd;

namespace {

// Where each probe's bug is.
enum class Bug { kTcpConnect, kResolve, kCurlCompletion, kPoolWork, kPoolDone, kThrowThenOk };

class BuggyProbe : public Probe, private TcpClient::Handler {
 public:
  BuggyProbe(Bug bug, int port) : bug_(bug), port_(port) {}
  ~BuggyProbe() override {
    cancel();
    if (easy_ != nullptr) curl_easy_cleanup(easy_);
  }

  void start(RunContext& ctx, Done done) override {
    done_ = std::move(done);
    services_ = ctx.services;
    switch (bug_) {
      case Bug::kTcpConnect: {
        conn_ =
            TcpClient::connect(ctx.loop, {*numeric_address("127.0.0.1", port_)}, this, ctx.fail);
        break;
      }
      case Bug::kResolve:
        resolve_.start(ctx, "localhost", port_, [](ResolvedAddresses, std::string) {
          throw std::runtime_error("bug after a lookup");
        });
        break;
      case Bug::kCurlCompletion:
        // A closed port: the transfer completes (refused) at once.
        if (easy_ == nullptr) easy_ = curl_easy_init();
        curl_easy_setopt(easy_, CURLOPT_URL, ("http://127.0.0.1:" + std::to_string(port_)).c_str());
        in_curl_ = true;
        ctx.services->curl().add(easy_, ctx.fail, [this](CURLcode) {
          in_curl_ = false;
          throw std::runtime_error("bug in an HTTP completion");
        });
        break;
      case Bug::kPoolWork:
        ctx.services->pool(kPool).submit([] { throw std::runtime_error("bug on a pool thread"); },
                                         [] {}, ctx.fail);
        break;
      case Bug::kPoolDone:
        ctx.services->pool(kPool).submit(
            [] {}, [] { throw std::runtime_error("bug after pool work"); }, ctx.fail);
        break;
      case Bug::kThrowThenOk:
        // The exception and then a result, in one library callback: the run
        // still ends once, as internal.
        ctx.services->pool(kPool).submit([] {},
                                         [this, fail = ctx.fail] {
                                           guarded(fail, "a test callback",
                                                   [] { throw std::runtime_error("half-done"); });
                                           call_done(done_, ProbeResult::ok());
                                         },
                                         ctx.fail);
        break;
    }
  }
  CancelInfo cancel() override {
    ++cancels;
    if (conn_ != nullptr) conn_->close(TcpClient::Close::kReset);
    conn_ = nullptr;
    resolve_.cancel();
    if (in_curl_) services_->curl().remove(easy_);
    in_curl_ = false;
    done_ = nullptr;
    return {};
  }
  std::string target() const override { return "bug"; }
  int cancels = 0;

 private:
  void on_connect(int) override { throw std::runtime_error("bug in on_connect"); }
  void on_data(std::string_view) override {}
  void on_closed(int) override {}

  inline static const WorkPool::Spec kPool{"test work", 1, 16};
  Bug bug_;
  int port_;
  Done done_;
  LoopServices* services_ = nullptr;
  TcpClient* conn_ = nullptr;
  AsyncResolve resolve_;
  CURL* easy_ = nullptr;
  bool in_curl_ = false;
};

ConfiguredProbe configured(std::string name, ProbePtr p) {
  static const ProbeType* http = find_probe_type("http");
  ConfiguredProbe c;
  c.spec.name = std::move(name);
  c.spec.type = "http";
  c.spec.category = "default";
  c.spec.interval = 10s;
  c.spec.timeout = 5s;
  c.spec.fingerprint = "v1";
  c.type = http;
  c.probe = std::move(p);
  c.target = std::string("t");  // (assigning the literal sets off g++ 12's false -Wrestrict)
  return c;
}

}  // namespace

TEST_CASE("an exception in a library callback ends its run as internal, once, and the loop goes on",
          "[guard]") {
  // Connects succeed here and nothing is ever answered.
  test::RawListener listener(test::RawListener::Mode::kSilent);
  int closed_port = 0;
  {
    test::RawListener gone(test::RawListener::Mode::kSilent);
    closed_port = gone.port();
  }
  uv_loop_t loop;
  uv_loop_init(&loop);
  MonotonicClock clock;
  auto services = std::make_unique<LoopServices>(&loop);
  std::map<std::string, std::vector<ProbeResult>> results;
  {
    Engine engine(&loop, *services, clock);
    engine.on_result([&](const RunRecord& r) { results[r.spec.name].push_back(r.result); });
    std::vector<ConfiguredProbe> probes;
    const std::vector<std::pair<std::string, Bug>> bugs = {
        {"tcp", Bug::kTcpConnect},      {"resolve", Bug::kResolve},
        {"curl", Bug::kCurlCompletion}, {"pool-work", Bug::kPoolWork},
        {"pool-done", Bug::kPoolDone},  {"twice", Bug::kThrowThenOk}};
    std::vector<std::string> names;
    for (const auto& [name, bug] : bugs) {
      int port = bug == Bug::kCurlCompletion ? closed_port : listener.port();
      probes.push_back(configured(name, std::make_unique<BuggyProbe>(bug, port)));
      names.push_back(name);
    }
    engine.apply(std::move(probes), false);
    // Twice: after the first round of exceptions the engine and the loop
    // still run every probe.
    engine.run_now(names, [&] { engine.run_now(names, [&] { engine.stop(); }); });
    uv_run(&loop, UV_RUN_DEFAULT);
  }
  services->shutdown();
  uv_run(&loop, UV_RUN_DEFAULT);
  services.reset();
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(uv_loop_close(&loop) == 0);

  const std::map<std::string, std::string> expected = {
      {"tcp", "internal error in a TCP connect callback: bug in on_connect"},
      {"resolve", "internal error in name lookups: bug after a lookup"},
      {"curl", "internal error in an HTTP completion: bug in an HTTP completion"},
      {"pool-work", "internal error in test work: bug on a pool thread"},
      {"pool-done", "internal error in test work: bug after pool work"},
      {"twice", "internal error in a test callback: half-done"}};
  for (const auto& [name, message] : expected) {
    INFO(name);
    REQUIRE(results[name].size() == 2);  // one result per run, no more
    for (const auto& r : results[name]) {
      CHECK_FALSE(r.success);
      CHECK(r.reason == Reason::kInternal);
      CHECK(r.message == message);
    }
  }
}
