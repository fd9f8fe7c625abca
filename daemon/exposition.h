// Pieces of the Prometheus text format (0.0.4), written directly: the probe
// series are rendered from canaryd's own compact values, never built as
// objects first.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace canaryd {

// `name="value"` pairs, comma-separated, sorted by name, values escaped.
std::string label_text(std::vector<std::pair<std::string, std::string>> labels);
// Appends `,name="value"` (or without the comma to an empty set).
void append_label(std::string& out, std::string_view name, std::string_view value);
// "# HELP" and "# TYPE" lines; `type` is counter, gauge or histogram.
void append_family_header(std::string& out, std::string_view name, std::string_view help,
                          std::string_view type);
// `name{labels} value`, one line.
void append_sample(std::string& out, std::string_view name, std::string_view labels, double value);
// A number as the format has it: shortest exact form, NaN, +Inf, -Inf.
void append_value(std::string& out, double value);

}  // namespace canaryd
