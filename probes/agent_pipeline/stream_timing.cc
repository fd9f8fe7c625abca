#include "probes/agent_pipeline/stream_timing.h"

#include <algorithm>

namespace canaryd {

std::vector<TypeMetric> stream_timing_metrics() {
  using Kind = TypeMetric::Kind;
  // basic keeps the bounds the alerts and a glance need: few buckets for a
  // handful of agent probes, and 10 s (both alerts' default) among them.
  return {
      {.name = "canary_agent_first_event_seconds",
       .help = "Seconds from sending the agent's message to the first event of its stream.",
       .kind = Kind::kHistogram,
       .field = kFirstEventSecondsField,
       .bounds = {0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120},
       .basic_bounds = {0.25, 1, 2.5, 5, 10, 30}},
      {.name = "canary_agent_event_gap_seconds",
       .help = "Seconds between consecutive events of agent streams.",
       .kind = Kind::kHistogram,
       .field = kEventGapsField,
       .bounds = {kGapBounds.begin(), kGapBounds.end()},
       .basic_bounds = {0.05, 0.25, 1, 2.5, 5, 10, 30}},
      {.name = "canary_agent_stream_events",
       .help = "Events the last run's stream delivered, of any type.",
       .kind = Kind::kGauge,
       .field = kEventCountField},
      {.name = "canary_agent_stream_events_per_second",
       .help = "Events per second of the last run's stream, from its first event to its last.",
       .kind = Kind::kGauge,
       .field = kEventsPerSecondField},
  };
}

void StreamTiming::on_event(double offset) {
  if (!first_) {
    first_ = offset;
  } else {
    // Offsets come from a monotonic clock, but never trust a caller with a
    // negative gap.
    double gap = std::max(0.0, offset - last_);
    max_gap_ = std::max(max_gap_, gap);
    auto bound = std::lower_bound(kGapBounds.begin(), kGapBounds.end(), gap);
    ++gap_counts_[static_cast<size_t>(bound - kGapBounds.begin())];
    gap_sum_ += gap;
    ++streamed_;
    streamed_seconds_ += gap;
  }
  last_ = std::max(last_, offset);
  ++events_;
}

void StreamTiming::merge(const StreamTiming& other) {
  events_ += other.events_;
  if (other.first_) first_ = std::max(first_.value_or(*other.first_), *other.first_);
  last_ = std::max(last_, other.last_);
  max_gap_ = std::max(max_gap_, other.max_gap_);
  streamed_ += other.streamed_;
  streamed_seconds_ += other.streamed_seconds_;
  for (size_t i = 0; i < gap_counts_.size(); ++i) gap_counts_[i] += other.gap_counts_[i];
  gap_sum_ += other.gap_sum_;
}

std::optional<double> StreamTiming::rate() const {
  if (streamed_ == 0 || streamed_seconds_ <= 0) return std::nullopt;
  return static_cast<double>(streamed_) / streamed_seconds_;
}

void StreamTiming::report(ProbeDetails& d) const {
  d.set(kEventCountField, events_);
  d.set(kFirstEventSecondsField, first_);
  if (events_ >= 2) {
    d.set(kMaxGapSecondsField, max_gap_);
  } else {
    d.fields.erase(kMaxGapSecondsField);
  }
  d.set(kEventsPerSecondField, rate());
  if (streamed_ > 0) {
    d.observed[kEventGapsField] = {{gap_counts_.begin(), gap_counts_.end()}, gap_sum_};
  } else {
    d.observed.erase(kEventGapsField);
  }
}

}  // namespace canaryd
