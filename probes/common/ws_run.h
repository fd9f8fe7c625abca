// Pieces the two WebSocket-based probe types (websocket, agent_pipeline)
// share for a run of several connections: a timer each, dropping a
// connection, the negotiated subprotocol, the slowest connection's phases,
// and the least advanced connection's phase at a timeout.
#pragma once

#include <uv.h>

#include <cstdint>
#include <functional>
#include <initializer_list>
#include <optional>
#include <string>
#include <vector>

#include "probes/common/ws_client.h"
#include "probes/probe.h"
#include "probes/registry.h"

namespace canaryd {

// A one-shot timer whose handle lives on the heap: libuv frees a handle only
// in its close callback, and a probe must be able to drop the timer (and
// itself) at any moment.
//
// Thread-safety: loop thread only.
class OneShotTimer {
 public:
  OneShotTimer() = default;
  ~OneShotTimer() { stop(); }
  OneShotTimer(OneShotTimer&& other) noexcept : h_(other.h_) { other.h_ = nullptr; }
  OneShotTimer& operator=(OneShotTimer&& other) noexcept;
  OneShotTimer(const OneShotTimer&) = delete;
  OneShotTimer& operator=(const OneShotTimer&) = delete;

  // (Re)arms the timer; `cb` runs once, on the loop, unless stopped first.
  // An exception from it goes to `fail` (the run).
  void start(uv_loop_t* loop, uint64_t ms, RunFault fail, std::function<void()> cb);
  void start(uv_loop_t* loop, uint64_t ms, std::function<void()> cb) {
    start(loop, ms, {}, std::move(cb));
  }
  void stop();

 private:
  struct Handle;
  Handle* h_ = nullptr;
};

// Ends one connection of a run now: stops its timer and aborts the connection,
// if there is one, and forgets it (a WsConnection frees itself).
inline void drop_connection(OneShotTimer& timer, WsConnection*& ws) {
  timer.stop();
  if (ws != nullptr) {
    ws->abort();
    ws = nullptr;
  }
}

// What a run of several WebSocket connections learned, as ProbeDetails fields
// (the state API's names) and the metric families read from them.
inline constexpr const char* kWsSubprotocolField = "subprotocol";
inline constexpr const char* kWsCloseCodeField = "close_code";
inline constexpr const char* kWsConnectionsOkField = "connections_ok";
inline constexpr const char* kWsConnectionsField = "connections_total";
const std::vector<TypeMetric>& ws_metrics();
// The reasons any run of WebSocket connections can end with; a type adds its own.
std::vector<Reason> ws_connection_reasons();

// Which offered subprotocol the servers of a run selected.
struct NegotiationSeen {
  std::optional<size_t> selected;
  bool none = false;
  void note(const WsConnection& c);
  // The label for details.subprotocol: a configured entry (secrets redacted) or "none".
  std::optional<std::string> label(const WsEndpoint& ep) const;
};

// Appends, for each of `names` in order, the largest value any of `each` has
// for it: with several connections a phase is its slowest connection's.
void append_slowest(Phases& out, const std::vector<const Phases*>& each,
                    std::initializer_list<std::string_view> names);

// At a timeout, the least advanced connection names the phase the run was in.
struct LeastAdvanced {
  int rank = 1 << 30;
  std::string phase;
  // Ranks the connection phases of a connection still opening.
  void offer_opening(const WsConnection* c);
  // Ranks a later phase (waiting for a message, holding, closing) by `rank`,
  // which must be above every opening phase.
  void offer(int r, std::string p);
  static constexpr int kAfterOpen = 10;
};

}  // namespace canaryd
