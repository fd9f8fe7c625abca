#include "daemon/status_html.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <limits>

#include "base/json_path.h"
#include "daemon/table.h"

namespace canaryd {

std::string html_escape(std::string_view text) {
  std::string out;
  out.reserve(text.size() + text.size() / 8);
  for (char c : text) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::string percent_encode(std::string_view text) {
  std::string out;
  for (unsigned char c : text) {
    if (std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += fmt::format("%{:02X}", c);
    }
  }
  return out;
}

std::string probe_href(std::string_view name) { return "/status/probe/" + percent_encode(name); }

std::string sparkline_points(const std::vector<double>& values, double width, double height,
                             double pad) {
  std::vector<double> v;
  for (double x : values)
    if (std::isfinite(x)) v.push_back(x);
  if (v.empty()) return "";
  const double left = pad, right = width - pad, top = pad, bottom = height - pad;
  const double middle = (top + bottom) / 2;
  if (v.size() == 1) return fmt::format("{:.1f},{:.1f} {:.1f},{:.1f}", left, middle, right, middle);
  const auto [lo, hi] = std::minmax_element(v.begin(), v.end());
  // Subtracting two finite doubles can still overflow (1e308 - -1e308).
  const double span = *hi - *lo;
  const bool flat = !(span > 0) || !std::isfinite(span);
  std::string out;
  const double step = (right - left) / static_cast<double>(v.size() - 1);
  for (size_t i = 0; i < v.size(); ++i) {
    const double y = flat ? middle : bottom - (v[i] - *lo) / span * (bottom - top);
    if (!out.empty()) out += ' ';
    out += fmt::format("{:.1f},{:.1f}", left + step * static_cast<double>(i), y);
  }
  return out;
}

const nlohmann::ordered_json& member(const nlohmann::ordered_json& j, const char* key) {
  return json_member(j, key);
}

std::string string_member(const nlohmann::ordered_json& j, const char* key) {
  const auto& v = member(j, key);
  return v.is_string() ? v.get<std::string>() : std::string();
}

double number_member(const nlohmann::ordered_json& j, const char* key) {
  const auto& v = member(j, key);
  return v.is_number() ? v.get<double>() : std::numeric_limits<double>::quiet_NaN();
}

std::string value_text(const nlohmann::ordered_json& v) {
  if (v.is_string()) return v.get<std::string>();
  return v.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

namespace {
// The newest `most` entries of a newest-first history, oldest first.
template <class F>
void oldest_to_newest(const nlohmann::ordered_json& history, size_t most, F&& f) {
  const size_t n = std::min(history.size(), most);
  for (size_t i = n; i-- > 0;) f(history[i]);
}
}  // namespace

std::string history_strip(const nlohmann::ordered_json& history, size_t most) {
  if (!history.is_array() || history.empty() || most == 0)
    return "<span class=\"strip empty\">no results yet</span>";
  size_t passed = 0, failed = 0;
  std::string cells;
  oldest_to_newest(history, most, [&](const nlohmann::ordered_json& h) {
    const bool ok = member(h, "success") == true;
    ++(ok ? passed : failed);
    std::string title = fmt::format("{} {} {}", string_member(h, "time"), ok ? "PASS" : "FAIL",
                                    format_seconds(number_member(h, "duration_seconds")));
    if (!ok) {
      // Appended piecewise: g++ 12 -O2 warns (-Wrestrict, a false positive)
      // on " " + std::string here.
      title += ' ';
      title += string_member(h, "reason");
      const std::string message = string_member(h, "message");
      if (!message.empty()) {
        title += ": ";
        title += message;
      }
    }
    cells += fmt::format("<span class=\"cell {}\" title=\"{}\"></span>", ok ? "ok" : "bad",
                         html_escape(title));
  });
  return fmt::format(
      "<span class=\"strip\" role=\"img\" aria-label=\"last {} results: {} passed, {} "
      "failed\">{}</span>",
      passed + failed, passed, failed, cells);
}

std::string latency_sparkline(const nlohmann::ordered_json& history, size_t most, int width,
                              int height) {
  if (!history.is_array()) return "";
  std::vector<double> latencies;
  oldest_to_newest(history, most, [&](const nlohmann::ordered_json& h) {
    const double d = number_member(h, "duration_seconds");
    if (std::isfinite(d)) latencies.push_back(d);
  });
  const std::string points = sparkline_points(latencies, width, height, 3);
  if (points.empty()) return "";
  const auto [lo, hi] = std::minmax_element(latencies.begin(), latencies.end());
  // The newest point is the polyline's last pair.
  const std::string last = points.substr(points.rfind(' ') + 1);
  const size_t comma = last.find(',');
  return fmt::format(
      "<svg class=\"spark\" width=\"{0}\" height=\"{1}\" viewBox=\"0 0 {0} {1}\" role=\"img\" "
      "aria-label=\"{2}\"><title>{2}</title><polyline points=\"{3}\" fill=\"none\" "
      "stroke=\"currentColor\" stroke-width=\"1.5\" stroke-linejoin=\"round\"/>"
      "<circle cx=\"{4}\" cy=\"{5}\" r=\"2.5\" fill=\"currentColor\"/></svg>",
      width, height,
      html_escape(fmt::format("latency of the last {} runs: {} to {}, newest {}", latencies.size(),
                              format_seconds(*lo), format_seconds(*hi),
                              format_seconds(latencies.back()))),
      points, last.substr(0, comma), last.substr(comma + 1));
}

}  // namespace canaryd
