#include "probes/agent_pipeline/sse_parser.h"

#include <algorithm>

namespace canaryd {

namespace {

constexpr std::string_view kBom = "\xEF\xBB\xBF";
// A reconnection time past this is as good as never; capping keeps the sum exact.
constexpr uint64_t kMaxRetryMs = 1'000'000'000'000ULL;

}  // namespace

std::string_view sse_error_text(SseParser::Error error) {
  switch (error) {
    case SseParser::Error::kLineTooLong:
      return "a line is longer than max_line_bytes";
    case SseParser::Error::kEventTooLarge:
      return "an event is larger than max_event_bytes";
    case SseParser::Error::kNone:
      break;
  }
  return "";
}

bool SseParser::stop(Error error) {
  stopped_ = true;
  error_ = error;
  // The event under way is void, however much of it had arrived: nothing is
  // pending after an error, whether the stream came whole or in pieces.
  line_.clear();
  type_.clear();
  data_.clear();
  return false;
}

bool SseParser::feed(std::string_view bytes, const OnEvent& on_event) {
  if (stopped_) return false;
  if (!bom_checked_) {
    // The BOM may arrive split over pieces: hold the start until it is
    // either the whole BOM or cannot be one.
    size_t take = std::min(bytes.size(), kBom.size() - bom_prefix_.size());
    bom_prefix_.append(bytes.substr(0, take));
    bytes.remove_prefix(take);
    if (bom_prefix_.size() < kBom.size() && kBom.substr(0, bom_prefix_.size()) == bom_prefix_)
      return true;
    bom_checked_ = true;
    std::string head = std::move(bom_prefix_);
    bom_prefix_.clear();
    if (head != kBom && !scan(head, on_event)) return false;
  }
  return scan(bytes, on_event);
}

bool SseParser::scan(std::string_view bytes, const OnEvent& on_event) {
  size_t i = 0;
  while (i < bytes.size()) {
    if (stopped_) return false;
    if (after_cr_) {
      after_cr_ = false;
      if (bytes[i] == '\n') {
        ++i;
        continue;
      }
    }
    size_t end = bytes.find_first_of("\r\n", i);
    if (end == std::string_view::npos) {
      if (line_.size() + (bytes.size() - i) > limits_.max_line_bytes)
        return stop(Error::kLineTooLong);
      line_.append(bytes.substr(i));
      return true;
    }
    std::string_view piece = bytes.substr(i, end - i);
    if (line_.size() + piece.size() > limits_.max_line_bytes) return stop(Error::kLineTooLong);
    after_cr_ = bytes[end] == '\r';
    i = end + 1;
    bool go_on;
    if (line_.empty()) {
      go_on = on_line(piece, on_event);
    } else {
      line_.append(piece);
      std::string line = std::move(line_);
      line_.clear();
      go_on = on_line(line, on_event);
    }
    if (!go_on) return false;
  }
  return !stopped_;
}

bool SseParser::on_line(std::string_view line, const OnEvent& on_event) {
  if (line.empty()) {
    if (data_.empty()) {
      type_.clear();
      return true;
    }
    data_.pop_back();  // the "\n" after the last data line
    SseEvent event{type_.empty() ? std::string("message") : std::move(type_), std::move(data_),
                   last_id_};
    type_.clear();
    data_.clear();
    if (!on_event(std::move(event))) {
      stopped_ = true;
      return false;
    }
    return true;
  }
  if (line.front() == ':') {
    ++comments_;
    return true;
  }
  size_t colon = line.find(':');
  std::string_view field = line.substr(0, colon);
  std::string_view value;
  if (colon != std::string_view::npos) {
    value = line.substr(colon + 1);
    if (!value.empty() && value.front() == ' ') value.remove_prefix(1);
  }
  if (field == "event") {
    if (data_.size() + value.size() > limits_.max_event_bytes) return stop(Error::kEventTooLarge);
    type_.assign(value);
  } else if (field == "data") {
    if (type_.size() + data_.size() + value.size() + 1 > limits_.max_event_bytes)
      return stop(Error::kEventTooLarge);
    data_.append(value);
    data_.push_back('\n');
  } else if (field == "id") {
    if (value.find('\0') == std::string_view::npos) last_id_.assign(value);
  } else if (field == "retry") {
    if (!value.empty() &&
        std::all_of(value.begin(), value.end(), [](char c) { return c >= '0' && c <= '9'; })) {
      uint64_t ms = 0;
      for (char c : value) ms = std::min(kMaxRetryMs, ms * 10 + static_cast<uint64_t>(c - '0'));
      retry_ms_ = ms;
    }
  }
  // Any other field is ignored, as the standard says.
  return true;
}

}  // namespace canaryd
