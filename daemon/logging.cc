#include "daemon/logging.h"

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <memory>

#include "daemon/secrets.h"

namespace canaryd {

namespace {

// %* : the message, redacted; JSON-escaped when `json_` is set.
class RedactedMessageFlag : public spdlog::custom_flag_formatter {
 public:
  explicit RedactedMessageFlag(bool json) : json_(json) {}

  void format(const spdlog::details::log_msg& msg, const std::tm&,
              spdlog::memory_buf_t& dest) override {
    std::string text =
        global_secrets().redact(std::string_view(msg.payload.data(), msg.payload.size()));
    if (!json_) {
      dest.append(text.data(), text.data() + text.size());
      return;
    }
    std::string escaped;
    escaped.reserve(text.size() + 8);
    for (unsigned char c : text) {
      switch (c) {
        case '"':
          escaped += "\\\"";
          break;
        case '\\':
          escaped += "\\\\";
          break;
        case '\n':
          escaped += "\\n";
          break;
        case '\r':
          escaped += "\\r";
          break;
        case '\t':
          escaped += "\\t";
          break;
        default:
          if (c < 0x20) {
            char buf[8];
            std::snprintf(buf, sizeof buf, "\\u%04x", c);
            escaped += buf;
          } else {
            escaped += static_cast<char>(c);
          }
      }
    }
    dest.append(escaped.data(), escaped.data() + escaped.size());
  }

  std::unique_ptr<custom_flag_formatter> clone() const override {
    return std::make_unique<RedactedMessageFlag>(json_);
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
  formatter->add_flag<RedactedMessageFlag>('*', json);
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
