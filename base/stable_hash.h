// A string hash that is the same on every build, platform and version (FNV-1a,
// 64 bits), unlike std::hash: schedule offsets and shard owners computed on
// different machines and releases must agree.
#pragma once

#include <cstdint>
#include <string_view>

namespace canaryd {

inline uint64_t stable_hash(std::string_view text) {
  uint64_t h = 14695981039346656037ULL;
  for (unsigned char c : text) {
    h ^= c;
    h *= 1099511628211ULL;
  }
  return h;
}

}  // namespace canaryd
