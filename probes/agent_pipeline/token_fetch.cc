#include "probes/agent_pipeline/token_fetch.h"

#include <fmt/format.h>
#include <uv.h>

#include "base/json_path.h"
#include "probes/common/curl_multi.h"

namespace canaryd {

TokenFetch::TokenFetch(const std::optional<TokenStep>& step) : step_(step) {
  if (step_) call_ = std::make_unique<HttpCall>(step_->http);
}

void TokenFetch::cancel() {
  if (call_) call_->cancel();
  ready_ = nullptr;
  failed_ = nullptr;
}

Phases TokenFetch::phase() const {
  Phases out;
  if (seconds_) out.emplace_back("token", *seconds_);
  return out;
}

void TokenFetch::refused() {
  if (from_cache_) cached_.reset();
}

void TokenFetch::start(RunContext& ctx, size_t shard, uint64_t run_start_ns, Ready ready,
                       Failed failed) {
  cancel();
  seconds_.reset();
  token_.clear();
  from_cache_ = false;
  if (!step_) return ready();
  if (cached_ && run_start_ns < cached_until_ns_) {
    token_ = *cached_;
    from_cache_ = true;
    return ready();
  }
  cached_.reset();
  ready_ = std::move(ready);
  failed_ = std::move(failed);
  Secrets* secrets = ctx.secrets;
  call_->set_traceparent(ctx.new_traceparent());  // a span of the run's trace
  call_->start(
      ctx.services->curl(shard), ctx.fail, [this, run_start_ns, secrets](HttpCall::Response r) {
        seconds_ = seconds_between(run_start_ns, uv_hrtime());
        Ready ready = std::move(ready_);
        Failed failed = std::move(failed_);
        ready_ = nullptr;
        failed_ = nullptr;
        auto auth_failure = [&](std::string message, std::optional<int> status) {
          auto result = ProbeResult::failure(Reason::kAuth, "token step: " + message, phase());
          result.details.status_code = status;
          failed(std::move(result));
        };
        if (r.rc != CURLE_OK) return auth_failure("request failed: " + r.error, {});
        if (r.status < 200 || r.status >= 300)
          return auth_failure(fmt::format("HTTP {}", r.status), static_cast<int>(r.status));
        auto doc = parse_target_json(r.body);
        if (!doc.ok())
          return auth_failure("the response is " + doc.error, static_cast<int>(r.status));
        const nlohmann::json* v = json_at_path(doc.value, step_->json_path);
        if (v == nullptr || !v->is_string() || v->get<std::string>().empty())
          return auth_failure(fmt::format("the response has no string at {}", step_->json_path),
                              static_cast<int>(r.status));
        token_ = v->get<std::string>();
        pin_ = secrets->pin(token_);
        if (step_->cache_for.count() > 0) {
          cached_ = token_;
          cached_until_ns_ = uv_hrtime() + static_cast<uint64_t>(
                                               std::chrono::nanoseconds(step_->cache_for).count());
        }
        ready();
      });
}

}  // namespace canaryd
