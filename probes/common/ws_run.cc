#include "probes/common/ws_run.h"

#include <algorithm>
#include <utility>

namespace canaryd {

std::vector<Reason> ws_connection_reasons() {
  return {Reason::kTimeout,
          Reason::kDns,
          Reason::kConnectRefused,
          Reason::kConnect,
          Reason::kTls,
          Reason::kTlsHostname,
          Reason::kTlsExpired,
          Reason::kWsUpgradeRejected,
          Reason::kWsNoSubprotocol,
          Reason::kWsWrongSubprotocol,
          Reason::kWsAbnormalClose,
          Reason::kProtocol,
          Reason::kInternal};
}

const std::vector<TypeMetric>& ws_metrics() {
  using Kind = TypeMetric::Kind;
  static const std::vector<TypeMetric> all = {
      {"canary_ws_subprotocol_info",
       "The subprotocol the server last selected (a configured value, secrets redacted; "
       "\"none\" if it selected none); always 1.",
       Kind::kInfo,
       kWsSubprotocolField,
       {"subprotocol"}},
      {"canary_ws_close_code",
       "The last WebSocket close code seen (1000 normal, 1006 dropped without a close frame, "
       "1011 server error, ...).",
       Kind::kGauge, kWsCloseCodeField},
      {"canary_ws_connections_ok", "Connections of the last run that succeeded.", Kind::kGauge,
       kWsConnectionsOkField},
      {"canary_ws_connections_configured", "Connections each run opens at once.", Kind::kGauge,
       kWsConnectionsField},
  };
  return all;
}

struct OneShotTimer::Handle {
  uv_timer_t timer{};
  std::function<void()> cb;
  RunFault fail;
};

OneShotTimer& OneShotTimer::operator=(OneShotTimer&& other) noexcept {
  if (this != &other) {
    stop();
    h_ = other.h_;
    other.h_ = nullptr;
  }
  return *this;
}

void OneShotTimer::start(uv_loop_t* loop, uint64_t ms, RunFault fail, std::function<void()> cb) {
  if (h_ == nullptr) {
    h_ = new Handle;
    uv_timer_init(loop, &h_->timer);
    h_->timer.data = h_;
  }
  h_->cb = std::move(cb);
  h_->fail = std::move(fail);
  uv_timer_start(
      &h_->timer,
      [](uv_timer_t* t) {
        auto* h = static_cast<Handle*>(t->data);
        // The callback may stop or destroy the timer: run copies.
        auto cb = h->cb;
        auto fail = h->fail;
        if (cb) guarded(fail, "a WebSocket timer", cb);
      },
      ms, 0);
}

void OneShotTimer::stop() {
  if (h_ == nullptr) return;
  h_->cb = nullptr;
  uv_close(reinterpret_cast<uv_handle_t*>(&h_->timer),
           [](uv_handle_t* t) { delete static_cast<Handle*>(t->data); });
  h_ = nullptr;
}

void NegotiationSeen::note(const WsConnection& c) {
  if (c.selected()) {
    selected = c.selected();
  } else if (c.negotiated()) {
    none = true;
  }
}

std::optional<std::string> NegotiationSeen::label(const WsEndpoint& ep) const {
  if (selected && *selected < ep.subprotocol_labels.size()) return ep.subprotocol_labels[*selected];
  if (none) return "none";
  return std::nullopt;
}

void append_slowest(Phases& out, const std::vector<const Phases*>& each,
                    std::initializer_list<std::string_view> names) {
  for (std::string_view name : names) {
    std::optional<double> worst;
    for (const Phases* phases : each)
      for (const auto& [phase, seconds] : *phases)
        if (phase == name) worst = std::max(worst.value_or(0.0), seconds);
    if (worst) out.emplace_back(std::string(name), *worst);
  }
}

void LeastAdvanced::offer_opening(const WsConnection* c) {
  auto p = c != nullptr ? c->phase() : WsConnection::Phase::kConnect;
  offer(static_cast<int>(p), WsConnection::phase_name(p));
}

void LeastAdvanced::offer(int r, std::string p) {
  if (r < rank) {
    rank = r;
    phase = std::move(p);
  }
}

}  // namespace canaryd
