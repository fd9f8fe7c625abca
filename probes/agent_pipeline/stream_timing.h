// The timing of an agent's event stream, for both transports: how long the
// first event took after the message was sent (a chat completion's time to
// first token), the gaps between consecutive events, how many came and at
// what rate. Every event counts, configured or not (heartbeats, tokens, the
// end sentinel): it is the stream's cadence as a client sees it, and a stall
// is silence on the stream. Pure: the transports pass each event's offset
// from the send, so unit tests drive it with made-up offsets.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <vector>

#include "probes/probe.h"
#include "probes/registry.h"

namespace canaryd {

// Details fields (the state API's names; the metric families read them).
inline constexpr const char* kFirstEventSecondsField = "first_event_seconds";
inline constexpr const char* kMaxGapSecondsField = "max_gap_seconds";
inline constexpr const char* kEventCountField = "event_count";
inline constexpr const char* kEventsPerSecondField = "events_per_second";
// Only in ProbeDetails::observed: every gap, counted in kGapBounds.
inline constexpr const char* kEventGapsField = "event_gap_seconds";

// Token streams put tens of milliseconds between events, agent steps
// seconds; 10 s is the stall alert's default threshold, so a bound (a
// quantile compared with a bound is exact, one between bounds interpolated).
inline constexpr std::array<double, 12> kGapBounds = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                                      0.5,   1,    2.5,   5,    10,  30};

// The agent type's stream families (docs/metrics.md).
std::vector<TypeMetric> stream_timing_metrics();

class StreamTiming {
 public:
  // One event, `offset` seconds after the message was sent.
  void on_event(double offset);
  // Adds another session's stream: a WebSocket run may hold several.
  void merge(const StreamTiming& other);

  uint64_t events() const { return events_; }
  const std::optional<double>& first() const { return first_; }
  double max_gap() const { return max_gap_; }
  // Events after the first per second between the first and the last (an
  // LLM's tokens per second); none before two events.
  std::optional<double> rate() const;

  // The fields above into `d`, and the gaps into d.observed.
  void report(ProbeDetails& d) const;

 private:
  uint64_t events_ = 0;
  std::optional<double> first_;  // the slowest session's, after merge()
  double last_ = 0;
  double max_gap_ = 0;
  // Summed over sessions: events after each one's first, and the seconds
  // from its first event to its last.
  uint64_t streamed_ = 0;
  double streamed_seconds_ = 0;
  std::array<uint64_t, kGapBounds.size() + 1> gap_counts_{};
  double gap_sum_ = 0;
};

}  // namespace canaryd
