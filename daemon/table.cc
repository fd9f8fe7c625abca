#include "daemon/table.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "base/secrets.h"

namespace canaryd {

std::string render_table(const std::vector<std::string>& header,
                         const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> width(header.size(), 0);
  auto widen = [&](const std::vector<std::string>& row) {
    for (size_t i = 0; i < row.size() && i < width.size(); ++i)
      width[i] = std::max(width[i], row[i].size());
  };
  widen(header);
  for (const auto& r : rows) widen(r);
  std::string out;
  auto emit = [&](const std::vector<std::string>& row) {
    std::string line;
    for (size_t i = 0; i < row.size(); ++i) {
      line += row[i];
      if (i + 1 < row.size()) line += std::string(width[i] - row[i].size() + 2, ' ');
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    out += line + "\n";
  };
  emit(header);
  for (const auto& r : rows) emit(r);
  return out;
}

std::string format_seconds(double s) {
  if (!std::isfinite(s) || s < 0) return "-";
  if (s < 1) return fmt::format("{:.0f}ms", s * 1000);
  if (s < 60) return fmt::format("{:.2f}s", s);
  // Past this (300 million years) the cast below would overflow.
  if (s >= 1e16) return fmt::format("{:.0f}d", s / 86400);
  auto total = static_cast<int64_t>(s);
  if (total < 3600) return fmt::format("{}m{:02d}s", total / 60, static_cast<int>(total % 60));
  if (total < 86400)
    return fmt::format("{}h{:02d}m", total / 3600, static_cast<int>(total % 3600 / 60));
  return fmt::format("{}d{}h", total / 86400, static_cast<int>(total % 86400 / 3600));
}

std::string one_line(std::string text, size_t max) {
  return target_text(text, max, LineBreaks::kSpace);
}

}  // namespace canaryd
