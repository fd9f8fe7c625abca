#include "probes/probe.h"

#include <array>

#include "probes/common/curl_multi.h"
#include "probes/common/ws_client.h"

namespace canaryd {

namespace {
constexpr std::array<std::pair<Reason, std::string_view>, 21> kReasonNames = {{
    {Reason::kOk, "ok"},
    {Reason::kTimeout, "timeout"},
    {Reason::kDns, "dns"},
    {Reason::kConnectRefused, "connect_refused"},
    {Reason::kConnect, "connect"},
    {Reason::kTls, "tls"},
    {Reason::kTlsHostname, "tls_hostname"},
    {Reason::kTlsExpired, "tls_expired"},
    {Reason::kHttpStatus, "http_status"},
    {Reason::kAssertion, "assertion"},
    {Reason::kBodyTooLarge, "body_too_large"},
    {Reason::kAuth, "auth"},
    {Reason::kProtocol, "protocol"},
    {Reason::kWsUpgradeRejected, "ws_upgrade_rejected"},
    {Reason::kWsNoSubprotocol, "ws_no_subprotocol"},
    {Reason::kWsWrongSubprotocol, "ws_wrong_subprotocol"},
    {Reason::kWsAbnormalClose, "ws_abnormal_close"},
    {Reason::kMissingEvent, "missing_event"},
    {Reason::kSchema, "schema"},
    {Reason::kQuery, "query"},
    {Reason::kInternal, "internal"},
}};
}  // namespace

std::string_view reason_name(Reason reason) {
  for (const auto& [r, name] : kReasonNames) {
    if (r == reason) return name;
  }
  return "internal";
}

std::optional<Reason> reason_from_name(std::string_view name) {
  for (const auto& [r, n] : kReasonNames) {
    if (n == name) return r;
  }
  return std::nullopt;
}

ProbeResult ProbeResult::ok(Phases phases) {
  ProbeResult r;
  r.success = true;
  r.reason = Reason::kOk;
  r.message = "ok";
  r.phases = std::move(phases);
  return r;
}

ProbeResult ProbeResult::failure(Reason reason, std::string message, Phases phases) {
  ProbeResult r;
  r.success = false;
  r.reason = reason;
  r.message = std::move(message);
  r.phases = std::move(phases);
  return r;
}

ProbeResult ProbeResult::limit(std::string message) {
  ProbeResult r = failure(Reason::kInternal, std::move(message));
  r.canaryd_limit = true;
  return r;
}

LoopServices::LoopServices(uv_loop_t* loop, int loops) : loop_(loop), loops_(loops) {}

LoopServices::~LoopServices() = default;

CurlMulti& LoopServices::curl(size_t shard) {
  auto& multi = curl_[shard % kCurlShards];
  if (!multi) multi = std::make_unique<CurlMulti>(loop_);
  return *multi;
}

WsService& LoopServices::ws(size_t shard) {
  auto& service = ws_[shard % kWsContexts];
  if (!service) service = std::make_unique<WsService>(loop_, loops_, ws_live_);
  return *service;
}

WorkPool& LoopServices::pool(const WorkPool::Spec& spec) {
  auto& pool = pools_[spec.name];
  if (!pool) pool = std::make_unique<WorkPool>(loop_, spec);
  return *pool;
}

void LoopServices::shutdown() {
  for (auto& [name, pool] : pools_) pool->shutdown();
  for (auto& multi : curl_)
    if (multi) multi->shutdown();
  for (auto& service : ws_)
    if (service) service->shutdown();
}

}  // namespace canaryd
