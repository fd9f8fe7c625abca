// The probe contract: what every probe type implements and what one run returns.
//
// A probe is an asynchronous state machine on the daemon's single libuv loop.
// The scheduler (daemon/engine) owns the run cycle: it starts a run, arms the
// deadline, cancels on timeout and records the result. A probe only says what
// one run does.
#pragma once

#include <uv.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/guard.h"
#include "base/trace_context.h"
#include "base/work_pool.h"

namespace canaryd {

class CurlMulti;
class Secrets;
class WsService;

// Why a run failed. Each entry is a distinct signal an SRE acts on differently,
// so they are counted apart (canary_probe_failures_total{reason}).
enum class Reason {
  kOk,
  kTimeout,
  kDns,
  kConnectRefused,
  kConnect,
  kTls,
  kTlsHostname,
  kTlsExpired,
  kHttpStatus,
  kAssertion,
  kBodyTooLarge,
  kAuth,
  kProtocol,
  kWsUpgradeRejected,
  kWsNoSubprotocol,
  kWsWrongSubprotocol,
  kWsAbnormalClose,
  kMissingEvent,
  kSchema,
  kQuery,
  kInternal,
};

// The wire name used in metrics labels, the state API and the CLI.
std::string_view reason_name(Reason reason);
std::optional<Reason> reason_from_name(std::string_view name);

// Durations are measured on the monotonic clock; a run's phases are a list of
// (name, seconds) in the order they happened.
using Seconds = std::chrono::duration<double>;
using Phases = std::vector<std::pair<std::string, double>>;

// Seconds from one uv_hrtime() reading to a later one (0 if it is not later).
inline double seconds_between(uint64_t from_ns, uint64_t to_ns) {
  return to_ns > from_ns ? static_cast<double>(to_ns - from_ns) / 1e9 : 0.0;
}

// The phases of one run as they end. Each phase began when the one before
// it ended (the first when the run started); "total" is the whole run.
class PhaseTimer {
 public:
  void start(uint64_t now_ns = uv_hrtime()) {
    phases_.clear();
    run_start_ns_ = phase_start_ns_ = now_ns;
  }
  void end(std::string name, uint64_t now_ns = uv_hrtime()) {
    phases_.emplace_back(std::move(name), seconds_between(phase_start_ns_, now_ns));
    phase_start_ns_ = now_ns;
  }
  void end_run(uint64_t now_ns = uv_hrtime()) {
    phases_.emplace_back("total", seconds_between(run_start_ns_, now_ns));
  }
  const Phases& phases() const { return phases_; }
  Phases take() { return std::move(phases_); }

 private:
  Phases phases_;
  uint64_t run_start_ns_ = 0;
  uint64_t phase_start_ns_ = 0;
};

// Facts a run learned beyond pass/fail. Three every type may have; the rest
// belong to the type and are data: `fields` is shown as it is under `details`
// in the state API and `once --json`, and the type's metric families
// (ProbeType::metrics) are read from it. Central code never names a field of
// one type.
struct ProbeDetails {
  std::optional<int> status_code;
  std::optional<double> cert_expiry_unix;    // leaf certificate notAfter, seconds since epoch
  std::optional<std::string> timeout_phase;  // the phase a timed-out run was in
  nlohmann::ordered_json fields = nlohmann::ordered_json::object();
  // What a run feeds the type's histogram families (TypeMetric::Kind::kHistogram)
  // beyond one value a field can hold, by the family's field name: counts per
  // bucket of the family's `bounds` (the last is +Inf) and their sum. Counted
  // by the probe, so a stream of a million tokens costs a few words, and not
  // shown in the state API, which the values would swamp.
  struct Observed {
    std::vector<uint64_t> counts;
    double sum = 0;
  };
  std::map<std::string, Observed, std::less<>> observed;

  // Sets a field, or removes it for an empty optional, list or map: an
  // absent fact is not shown as null or [].
  template <class T>
  void set(const std::string& key, const T& value) {
    nlohmann::ordered_json v(value);
    if (v.is_null() || ((v.is_array() || v.is_object()) && v.empty())) {
      fields.erase(key);
    } else {
      fields[key] = std::move(v);
    }
  }
  template <class T>
  void set(const std::string& key, const std::optional<T>& value) {
    if (value) {
      set(key, *value);
    } else {
      fields.erase(key);
    }
  }
  // The field, or nullptr.
  const nlohmann::ordered_json* find(const std::string& key) const {
    auto it = fields.find(key);
    return it == fields.end() ? nullptr : &*it;
  }
  // Copies `key` from `other` as it is there, absent included.
  void take(const ProbeDetails& other, const std::string& key) {
    if (const auto* v = other.find(key)) {
      fields[key] = *v;
    } else {
      fields.erase(key);
    }
  }
};

// A run's outcome. A value: sinks copy it freely.
struct ProbeResult {
  bool success = false;
  Reason reason = Reason::kInternal;
  std::string message;
  Phases phases;
  ProbeDetails details;
  // canaryd could not make the run at all, at a limit of its own (its share
  // of descriptors): there is no verdict on the target. A scheduled run's
  // slot counts as skipped (cause "limit"); a one-shot run fails as internal.
  bool canaryd_limit = false;

  static ProbeResult ok(Phases phases = {});
  static ProbeResult failure(Reason reason, std::string message, Phases phases = {});
  static ProbeResult limit(std::string message);
};

// What a probe gives back when the scheduler cancels it at the deadline: the
// phase it was in and whatever phases it had finished.
struct CancelInfo {
  std::string phase;
  Phases phases;
  ProbeDetails details;  // what the run had learned, e.g. connections_ok so far
  std::string note;      // added to the timeout message, e.g. "3 of 7 connections open"
};

// Loop-wide services shared by every probe on one loop (e.g. one libcurl multi
// handle), so probes don't each build their own.
class LoopServices {
 public:
  // `loops`: how many loops of this process each have their services; they
  // share its descriptors.
  explicit LoopServices(uv_loop_t* loop, int loops = 1);
  ~LoopServices();
  LoopServices(const LoopServices&) = delete;
  LoopServices& operator=(const LoopServices&) = delete;

  uv_loop_t* loop() const { return loop_; }
  // libcurl keeps the connections of a multi handle to one host in a list it
  // scans linearly on every close; thousands of in-flight probes to one
  // target would make each run cost O(n). Probes are spread over a few
  // multi handles instead, by `shard` (any stable number per probe).
  CurlMulti& curl(size_t shard = 0);
  // A libwebsockets context, made on first use. lws 4.1.6 keeps a context's
  // timeouts in one sorted list and inserts by walking it: with thousands of
  // handshakes in flight on one context that walk was most of the loop's
  // time. Probes are spread over a few contexts by `shard`, as over curl
  // multis, so each list stays a fraction as long; they share the loop's
  // connection cap.
  WsService& ws(size_t shard = 0);
  // The thread pool of one kind of blocking work, made on first use with
  // `spec` (looked up by its name). Each kind has its own bounded pool, so
  // one kind that hangs cannot starve another (see work_pool.h).
  WorkPool& pool(const WorkPool::Spec& spec);
  // Closes every shared handle; the loop must run afterwards to finish closing.
  void shutdown();

 private:
  // libcurl 7.88 finds a finished connection in its per-host list by walking
  // it: with 10,000 transfers to one host in one multi handle that walk was
  // the top user-space cost. 256 multis keep each list a few dozen long.
  static constexpr size_t kCurlShards = 256;
  uv_loop_t* loop_;
  int loops_;
  std::unique_ptr<CurlMulti> curl_[kCurlShards];
  static constexpr size_t kWsContexts = 8;
  std::unique_ptr<WsService> ws_[kWsContexts];
  std::shared_ptr<size_t> ws_live_ = std::make_shared<size_t>(0);  // across ws_
  std::map<std::string, std::unique_ptr<WorkPool>> pools_;
};

// Everything one run may use. Time comes from the loop, never the wall clock.
struct RunContext {
  LoopServices* services = nullptr;
  uv_loop_t* loop = nullptr;
  std::string run_id;        // unique per run, for correlation with the target's logs and traces
  uint64_t deadline_ns = 0;  // uv_hrtime() value at which the scheduler cancels
  // Ends this run as `internal`: what a guard at a C callback calls when an
  // exception reached it (base/guard.h). The engine cancels the
  // probe once the library callback has returned, and a result the probe
  // reports meanwhile is replaced, so the run still ends exactly once.
  RunFault fail;
  // Where a secret learned during the run (an issued token) is registered,
  // so that every text leaving the daemon redacts it while it is in use.
  Secrets* secrets = nullptr;
  // global.tracing.sampled: asks the platform to record this run's traces.
  bool trace_sampled = true;

  // The traceparent for one request of this run: the run id is the trace id
  // (the engine makes it one, base/trace_context.h), and each request is a
  // span of its own, so a token request and the upgrade after it are told
  // apart in the platform's traces.
  std::string new_traceparent() const { return traceparent(run_id, new_span_id(), trace_sampled); }
};

using Done = std::function<void(ProbeResult)>;

// Hands `result` to `done` once and leaves `done` empty. `done` is moved out
// before the call because the call may start the next run or destroy the
// probe that holds it.
inline void call_done(Done& done, ProbeResult result) {
  Done d = std::move(done);
  done = nullptr;
  if (d) d(std::move(result));
}

// One configured probe. Runs of the same probe never overlap, so a probe may
// keep the state of its in-flight run in members.
//
// Thread-safety: built on any thread at config load; afterwards used only on
// the loop thread.
class Probe {
 public:
  virtual ~Probe() = default;

  // Starts one run. Must call `done` exactly once, as its last action, unless
  // cancel() is called first. Network failures are results, never exceptions.
  virtual void start(RunContext& ctx, Done done) = 0;

  // Called by the scheduler at the deadline (or on reload/shutdown) while a run
  // is in flight. Releases every handle synchronously or hands them to their own
  // close callbacks; `done` must not be called afterwards.
  virtual CancelInfo cancel() = 0;

  // A short description of what is probed, safe to show (no secrets, no
  // credentials), e.g. "GET http://127.0.0.1:8080/health".
  virtual std::string target() const = 0;

  // Series to pre-create at 0 beyond the type's own: phases named after the
  // probe's configuration (an agent probe's event types), and the label values
  // each counter of the type counts (TypeMetric). A counter counts only these,
  // so what a target sends never makes a new series.
  struct Series {
    std::vector<std::string> phases;
    std::vector<std::pair<std::string_view, std::vector<std::string>>> counted;  // (metric, labels)
  };
  virtual Series series() const { return {}; }
};

using ProbePtr = std::unique_ptr<Probe>;

}  // namespace canaryd
