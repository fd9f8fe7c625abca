// Splitting one config's probes over several canaryd processes, as
// kube-state-metrics shards its objects: every shard loads the same config
// and runs the probes whose jump-consistent hash of the name falls on it. No
// cluster protocol: a shard knows only its own number and the total.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "base/stable_hash.h"

namespace canaryd {

// Lamping and Veach, "A Fast, Minimal Memory, Consistent Hash Algorithm"
// (2014): a key's bucket among `buckets`; going from n to n+1 buckets moves a
// key only into the new bucket, so about 1/(n+1) of the keys move.
int32_t jump_consistent_hash(uint64_t key, int32_t buckets);

struct Shard {
  int index = 0;
  int total = 1;
  bool owns(std::string_view probe_name) const {
    return total <= 1 || jump_consistent_hash(stable_hash(probe_name), total) == index;
  }
};

// The ordinal a StatefulSet gives its pods, from a pod name such as
// "canaryd-3"; nullopt if the name does not end in "-<number>".
std::optional<int> ordinal_from_pod_name(std::string_view pod_name);

// Checks a shard against its total; the error names what is wrong.
std::optional<std::string> shard_error(int index, int total);

}  // namespace canaryd
