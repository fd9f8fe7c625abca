// Plain-text tables for people: `canaryd once` and `canaryd status`.
#pragma once

#include <string>
#include <vector>

namespace canaryd {

// Left-aligned columns separated by two spaces; the last column is not padded.
std::string render_table(const std::vector<std::string>& header,
                         const std::vector<std::vector<std::string>>& rows);

// "850ms", "2.40s", "1m05s", "3h12m", "2d4h": short enough for a table cell.
std::string format_seconds(double seconds);

// Text for a table cell: target_text() with line breaks as spaces, at most
// `max` bytes.
std::string one_line(std::string text, size_t max);

}  // namespace canaryd
