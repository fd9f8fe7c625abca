// The agent probe's event matching: JSON frames in; which configured events
// arrived, in what order and when, which are still missing, and the frame that
// broke the schema out. No socket and no clock (offsets are passed in), so
// unit tests and fuzz/agent_events_fuzz.cc drive it with synthetic frames.
#pragma once

#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "probes/probe.h"

namespace canaryd {

// Frames whose type is not configured (heartbeats, progress) count under this name.
inline constexpr const char* kOtherEvent = "other";

// The conversation's facts, as ProbeDetails fields (the state API's names; the
// agent's metric families read the last three).
inline constexpr const char* kAwaitedEventField = "awaited_event";
inline constexpr const char* kTimelineField = "events";                 // [{type, offset_ms}]
inline constexpr const char* kMissingEventsField = "missing_events";    // [type]
inline constexpr const char* kMissingFieldField = "missing_field";      // {event, field}
inline constexpr const char* kEventsReceivedField = "events_received";  // {type: count}

// One event as it arrived: its type (a configured type, or "other") and its
// time since the message was sent.
struct EventSeen {
  std::string type;
  double offset_seconds = 0;
};

struct ExpectedEvent {
  std::string type;
  std::vector<std::string> required;  // dotted paths
};

struct EventMatchOptions {
  std::string type_field = "type";
  std::string correlation_field;  // empty: not checked
  bool strict = true;             // events must come in the configured order
  std::vector<ExpectedEvent> events;
};

// "350ms", "2.5s": an offset from sending the message, for messages.
std::string format_offset(double seconds);

// One session's progress through the expected events.
class EventMatcher {
 public:
  enum class Step {
    kOther,     // not a configured event: nothing changed but the counts
    kProgress,  // a configured event, more expected
    kDone,      // every expected event has arrived
    kFailed,    // the frame broke the schema or the order: failure() says how
  };

  EventMatcher() = default;
  // `opts` must outlive the matcher; `run_id` is what correlation_field must hold.
  EventMatcher(const EventMatchOptions* opts, std::string run_id);

  // One frame, parsed, `offset` seconds after the message was sent; its type
  // is at type_field.
  Step on_frame(const nlohmann::json& doc, double offset);
  // The same for an event whose type the transport carries outside the JSON
  // (an SSE `event:` field); required fields and correlation are still read
  // from `doc`.
  Step on_event(const std::string& type, const nlohmann::json& doc, double offset);
  const std::optional<ProbeResult>& failure() const { return failure_; }

  // The event waited for next ("" when none is).
  std::string awaited() const;
  // Configured types not seen yet, each once, in configured order.
  std::vector<std::string> missing() const;
  // "after tool_executing at 1.2s" or "before any event".
  std::string after_text() const;

  const std::vector<std::optional<double>>& first_at() const { return first_at_; }
  const std::optional<std::pair<std::string, double>>& last_event() const { return last_event_; }
  const std::vector<EventSeen>& timeline() const { return timeline_; }
  const std::map<std::string, int>& received() const { return received_; }

  // The timeline in the state API is for people; heartbeats must not grow it.
  static constexpr size_t kMaxTimeline = 100;

 private:
  Step fail(ProbeResult result);

  const EventMatchOptions* opts_ = nullptr;
  std::string run_id_;
  size_t next_ = 0;                              // strict order: the next expected event
  std::vector<std::optional<double>> first_at_;  // per expected event, seconds after sending
  std::optional<std::pair<std::string, double>> last_event_;  // configured type and offset
  std::vector<EventSeen> timeline_;
  std::map<std::string, int> received_;
  std::optional<ProbeResult> failure_;
};

}  // namespace canaryd
