// The agent probe's optional token step, shared by both transports: one HTTP
// request to an auth service for a token, cached for `cache_for`, pinned in
// the run's secrets so that no output shows it. Whatever goes wrong here is
// the auth service's failure (reason auth), never the agent endpoint's.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "base/secrets.h"
#include "probes/agent_pipeline/agent_options.h"
#include "probes/common/http_call.h"
#include "probes/probe.h"

namespace canaryd {

// Thread-safety: the loop thread of the probe that owns it.
class TokenFetch {
 public:
  using Ready = std::function<void()>;
  using Failed = std::function<void(ProbeResult)>;

  // `step` (nullopt: no token step) must outlive this.
  explicit TokenFetch(const std::optional<TokenStep>& step);

  // Gets the run's token, then calls `ready` (at once without a step or with
  // a cached token), or `failed` with an auth result.
  void start(RunContext& ctx, size_t shard, uint64_t run_start_ns, Ready ready, Failed failed);
  void cancel();
  bool in_flight() const { return call_ && call_->in_flight(); }

  // The run's token ("" without a step).
  const std::string& token() const { return token_; }
  // {"token", seconds} when the request ran in this run.
  Phases phase() const;
  // The endpoint refused the credentials: a cached token may be why, so the
  // next run asks again.
  void refused();

 private:
  const std::optional<TokenStep>& step_;
  std::unique_ptr<HttpCall> call_;
  std::string token_;
  Secrets::Pin pin_;  // keeps token_ (and the cached copy) redacted while in use
  std::optional<std::string> cached_;
  uint64_t cached_until_ns_ = 0;
  bool from_cache_ = false;
  std::optional<double> seconds_;
  Ready ready_;
  Failed failed_;
};

}  // namespace canaryd
