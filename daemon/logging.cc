#include "daemon/logging.h"

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <memory>

#include "base/secrets.h"

namespace canaryd {

namespace {

// %* : the message made safe by target_text() (redacted, one line, valid
// UTF-8, control characters escaped visibly), so neither a target's text nor
// anything else can forge a line, reach the terminal raw or break a JSON line.
// In JSON only the quote and the backslash are left to escape.
class SafeMessageFlag : public spdlog::custom_flag_formatter {
 public:
  explicit SafeMessageFlag(bool json) : json_(json) {}

  void format(const spdlog::details::log_msg& msg, const std::tm&,
              spdlog::memory_buf_t& dest) override {
    std::string text =
        target_text(std::string_view(msg.payload.data(), msg.payload.size()), kLogLineBytes);
    if (!json_) {
      dest.append(text.data(), text.data() + text.size());
      return;
    }
    for (char c : text) {
      if (c == '"' || c == '\\') dest.push_back('\\');
      dest.push_back(c);
    }
  }

  std::unique_ptr<custom_flag_formatter> clone() const override {
    return std::make_unique<SafeMessageFlag>(json_);
  }

 private:
  bool json_;
};

}  // namespace

std::string setup_logging(const std::string& level, const std::string& format) {
  auto lvl = spdlog::level::from_str(level);
  if (lvl == spdlog::level::off && level != "off")
    return "unknown log level \"" + level + "\" (use debug, info, warn, error)";
  if (format != "text" && format != "json")
    return "unknown log format \"" + format + "\" (use text or json)";
  bool json = format == "json";
  auto formatter = std::make_unique<spdlog::pattern_formatter>(spdlog::pattern_time_type::utc);
  formatter->add_flag<SafeMessageFlag>('*', json);
  formatter->set_pattern(json ? R"({"time":"%Y-%m-%dT%H:%M:%S.%eZ","level":"%l","msg":"%*"})"
                              : "%Y-%m-%dT%H:%M:%S.%eZ %-5l %*");
  auto logger = std::make_shared<spdlog::logger>("canaryd",
                                                 std::make_shared<spdlog::sinks::stderr_sink_mt>());
  logger->set_formatter(std::move(formatter));
  logger->set_level(lvl);
  logger->flush_on(spdlog::level::trace);
  spdlog::set_default_logger(logger);
  return "";
}

}  // namespace canaryd
