#include "probes/agent_pipeline/event_matcher.h"

#include <fmt/format.h>

#include <algorithm>

#include "base/json_path.h"

namespace canaryd {

std::string format_offset(double seconds) {
  if (seconds < 1) return fmt::format("{:.0f}ms", seconds * 1000);
  return fmt::format("{:.1f}s", seconds);
}

EventMatcher::EventMatcher(const EventMatchOptions* opts, std::string run_id)
    : opts_(opts), run_id_(std::move(run_id)), first_at_(opts->events.size()) {}

EventMatcher::Step EventMatcher::fail(ProbeResult result) {
  failure_ = std::move(result);
  return Step::kFailed;
}

EventMatcher::Step EventMatcher::on_frame(const nlohmann::json& doc, double offset) {
  std::string type;
  if (const nlohmann::json* t = json_at_path(doc, opts_->type_field); t && t->is_string())
    type = t->get<std::string>();
  return on_event(type, doc, offset);
}

EventMatcher::Step EventMatcher::on_event(const std::string& type, const nlohmann::json& doc,
                                          double offset) {
  const auto& events = opts_->events;
  auto it = std::find_if(events.begin(), events.end(),
                         [&](const ExpectedEvent& e) { return e.type == type; });
  if (it == events.end()) {
    // Heartbeats, progress and whatever else the platform streams.
    ++received_[kOtherEvent];
    if (timeline_.size() < kMaxTimeline) timeline_.push_back({kOtherEvent, offset});
    return Step::kOther;
  }
  ++received_[type];
  if (timeline_.size() < kMaxTimeline) timeline_.push_back({type, offset});
  if (!opts_->correlation_field.empty()) {
    const nlohmann::json* id = json_at_path(doc, opts_->correlation_field);
    // A structure never equals the run id, and is not printed whole to find out.
    std::string got = id == nullptr || id->is_structured()
                          ? ""
                          : (id->is_string() ? id->get<std::string>() : id->dump());
    if (got != run_id_) {
      return fail(ProbeResult::failure(
          Reason::kSchema,
          fmt::format("{}.{} is {}, expected the run id \"{}\"", type, opts_->correlation_field,
                      id == nullptr ? "missing" : json_brief(*id, 40), run_id_)));
    }
  }
  for (const auto& path : it->required) {
    const nlohmann::json* v = json_at_path(doc, path);
    if (v == nullptr || v->is_null()) {
      auto r = ProbeResult::failure(
          Reason::kSchema, fmt::format("{} at {} lacks {}", type, format_offset(offset), path));
      r.details.set(kMissingFieldField, nlohmann::ordered_json{{"event", type}, {"field", path}});
      return fail(std::move(r));
    }
  }
  // Every occurrence of a repeatable type counts; the phase is its first.
  size_t index = static_cast<size_t>(it - events.begin());
  if (opts_->strict) {
    // A type may appear several times in the list; take the next unseen one.
    std::optional<size_t> pos;
    for (size_t i = next_; i < events.size() && !pos; ++i)
      if (events[i].type == type) pos = i;
    if (pos && *pos > next_) {
      std::vector<std::string> skipped;
      for (size_t i = next_; i < *pos; ++i)
        if (std::find(skipped.begin(), skipped.end(), events[i].type) == skipped.end())
          skipped.push_back(events[i].type);
      auto r =
          ProbeResult::failure(Reason::kMissingEvent,
                               fmt::format("{} ({} arrived before it, at {}; {})", skipped.front(),
                                           type, format_offset(offset), after_text()));
      r.details.set(kMissingEventsField, skipped);
      return fail(std::move(r));
    }
    if (pos) {
      index = *pos;
      next_ = *pos + 1;
    }
  }
  if (!first_at_[index]) first_at_[index] = offset;
  for (size_t i = 0; i < events.size(); ++i)
    if (events[i].type == type && !first_at_[i] && !opts_->strict) first_at_[i] = offset;
  last_event_ = std::make_pair(type, offset);
  bool done = opts_->strict ? next_ >= events.size()
                            : std::all_of(first_at_.begin(), first_at_.end(),
                                          [](const auto& t) { return t.has_value(); });
  return done ? Step::kDone : Step::kProgress;
}

std::string EventMatcher::awaited() const {
  if (opts_ == nullptr) return "";
  const auto& events = opts_->events;
  if (opts_->strict) return next_ < events.size() ? events[next_].type : "";
  for (size_t i = 0; i < events.size(); ++i)
    if (!first_at_[i]) return events[i].type;
  return "";
}

std::vector<std::string> EventMatcher::missing() const {
  std::vector<std::string> out;
  if (opts_ == nullptr) return out;
  const auto& events = opts_->events;
  for (size_t i = 0; i < events.size(); ++i) {
    const std::string& type = events[i].type;
    bool seen = false;
    for (size_t j = 0; j < events.size(); ++j)
      if (events[j].type == type && first_at_[j]) seen = true;
    if (!seen && std::find(out.begin(), out.end(), type) == out.end()) out.push_back(type);
  }
  return out;
}

std::string EventMatcher::after_text() const {
  if (!last_event_) return "before any event";
  return fmt::format("after {} at {}", last_event_->first, format_offset(last_event_->second));
}

}  // namespace canaryd
