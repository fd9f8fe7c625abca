// Shards: which process runs which probe (daemon/shard.h).
#include "daemon/shard.h"

#include <catch2/catch.hpp>
#include <string>

using canaryd::jump_consistent_hash;
using canaryd::ordinal_from_pod_name;

TEST_CASE(
    "jump hash: every key lands in range, and growing by one moves keys only to the new bucket") {
  for (int32_t n = 1; n <= 20; ++n) {
    int moved = 0;
    for (uint64_t k = 0; k < 5000; ++k) {
      uint64_t key = canaryd::stable_hash("probe-" + std::to_string(k));
      int32_t before = jump_consistent_hash(key, n);
      int32_t after = jump_consistent_hash(key, n + 1);
      REQUIRE(before >= 0);
      REQUIRE(before < n);
      if (after != before) {
        REQUIRE(after == n);
        ++moved;
      }
    }
    // About 1/(n+1) of 5,000 keys move: well inside half to twice that.
    CHECK(moved > 5000 / (n + 1) / 2);
    CHECK(moved < 2 * 5000 / (n + 1));
  }
}

TEST_CASE("one shard owns everything, and a shard owns exactly its hash's probes") {
  canaryd::Shard all;
  CHECK(all.owns("anything"));
  int owners = 0;
  for (int i = 0; i < 3; ++i) owners += canaryd::Shard{i, 3}.owns("redis-main") ? 1 : 0;
  CHECK(owners == 1);
}

TEST_CASE("a StatefulSet pod's ordinal is the number after its last dash") {
  CHECK(ordinal_from_pod_name("canaryd-0") == 0);
  CHECK(ordinal_from_pod_name("canaryd-eu-west-12") == 12);
  CHECK_FALSE(ordinal_from_pod_name("canaryd"));
  CHECK_FALSE(ordinal_from_pod_name("canaryd-"));
  CHECK_FALSE(ordinal_from_pod_name("canaryd-1a"));
  CHECK_FALSE(ordinal_from_pod_name("canaryd-99999999999999999999"));
}

TEST_CASE("a shard must be below its total, and the total at least 1") {
  CHECK_FALSE(canaryd::shard_error(0, 1));
  CHECK_FALSE(canaryd::shard_error(2, 3));
  CHECK(canaryd::shard_error(3, 3));
  CHECK(canaryd::shard_error(-1, 3));
  CHECK(canaryd::shard_error(0, 0));
}
