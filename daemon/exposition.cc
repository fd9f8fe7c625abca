#include "daemon/exposition.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <iterator>

namespace canaryd {

namespace {
// Label values escape backslash, double quote and newline; help texts only
// backslash and newline.
void append_escaped(std::string& out, std::string_view text, bool quote) {
  for (char c : text) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '"' && quote) {
      out += "\\\"";
    } else {
      out += c;
    }
  }
}
}  // namespace

void append_label(std::string& out, std::string_view name, std::string_view value) {
  if (!out.empty() && out.back() != '{') out += ',';
  out.append(name);
  out += "=\"";
  append_escaped(out, value, true);
  out += '"';
}

std::string label_text(std::vector<std::pair<std::string, std::string>> labels) {
  std::sort(labels.begin(), labels.end());
  std::string out;
  for (const auto& [name, value] : labels) append_label(out, name, value);
  return out;
}

void append_family_header(std::string& out, std::string_view name, std::string_view help,
                          std::string_view type) {
  out += "# HELP ";
  out.append(name);
  out += ' ';
  append_escaped(out, help, false);
  out += "\n# TYPE ";
  out.append(name);
  out += ' ';
  out.append(type);
  out += '\n';
}

void append_value(std::string& out, double value) {
  if (std::isnan(value)) {
    out += "NaN";
  } else if (std::isinf(value)) {
    out += value > 0 ? "+Inf" : "-Inf";
  } else {
    fmt::format_to(std::back_inserter(out), "{}", value);
  }
}

void append_sample(std::string& out, std::string_view name, std::string_view labels, double value) {
  out.append(name);
  if (!labels.empty()) {
    out += '{';
    out.append(labels);
    out += '}';
  }
  out += ' ';
  append_value(out, value);
  out += '\n';
}

}  // namespace canaryd
