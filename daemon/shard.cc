#include "daemon/shard.h"

#include <fmt/format.h>

#include <charconv>

namespace canaryd {

int32_t jump_consistent_hash(uint64_t key, int32_t buckets) {
  // Each step jumps forward to the next bucket at which this key would move,
  // drawn from a linear congruential sequence seeded by the key.
  int64_t b = -1;
  int64_t j = 0;
  while (j < buckets) {
    b = j;
    key = key * 2862933555777941757ULL + 1;
    j = static_cast<int64_t>(static_cast<double>(b + 1) * (static_cast<double>(1LL << 31) /
                                                           static_cast<double>((key >> 33) + 1)));
  }
  return static_cast<int32_t>(b);
}

std::optional<int> ordinal_from_pod_name(std::string_view pod_name) {
  size_t dash = pod_name.rfind('-');
  if (dash == std::string_view::npos || dash + 1 >= pod_name.size()) return std::nullopt;
  std::string_view digits = pod_name.substr(dash + 1);
  int value = 0;
  auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), value);
  if (ec != std::errc() || end != digits.data() + digits.size() || value < 0) return std::nullopt;
  return value;
}

std::optional<std::string> shard_error(int index, int total) {
  if (total < 1) return fmt::format("--total-shards must be at least 1, not {}", total);
  if (index < 0 || index >= total)
    return fmt::format("--shard {} is not below --total-shards {} (shards count from 0)", index,
                       total);
  return std::nullopt;
}

}  // namespace canaryd
