// The CPU count that sizes the default number of probe loops.
#include "base/usable_cpus.h"

#include <sched.h>

#include <catch2/catch.hpp>

using canaryd::cfs_quota_limit;
using canaryd::cpu_max_limit;

TEST_CASE("a cgroup v2 cpu.max quota is a CPU limit rounded up, and max is none") {
  CHECK(cpu_max_limit("200000 100000\n") == 2);
  CHECK(cpu_max_limit("150000 100000") == 2);  // 1.5 CPUs: two loops, each part busy
  CHECK(cpu_max_limit("50000 100000") == 1);
  CHECK(!cpu_max_limit("max 100000\n"));
  CHECK(!cpu_max_limit(""));
  CHECK(!cpu_max_limit("200000"));
  CHECK(!cpu_max_limit("0 100000"));
  CHECK(!cpu_max_limit("abc def"));
}

TEST_CASE("a cgroup v1 CFS quota is a CPU limit rounded up, and -1 is none") {
  CHECK(cfs_quota_limit("400000\n", "100000\n") == 4);
  CHECK(!cfs_quota_limit("-1\n", "100000\n"));
  CHECK(!cfs_quota_limit("", ""));
}

TEST_CASE("usable CPUs are at least one and never more than the affinity mask allows") {
  cpu_set_t set;
  CPU_ZERO(&set);
  REQUIRE(sched_getaffinity(0, sizeof(set), &set) == 0);
  const int cpus = canaryd::usable_cpus();
  CHECK(cpus >= 1);
  CHECK(cpus <= CPU_COUNT(&set));
}
