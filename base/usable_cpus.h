// How many CPUs this process can keep busy, for sizing its thread count the
// way an operator would: not the machine's CPUs, but those it is allowed.
#pragma once

#include <optional>
#include <string_view>

namespace canaryd {

// The CPUs in the affinity mask (taskset, a cpuset), further bounded by a
// cgroup CPU quota (a container's CPU limit: Kubernetes' resources.limits.cpu
// is one), rounded up. At least 1.
int usable_cpus();

// The CPU limit that a cgroup v2 `cpu.max` text ("200000 100000", or "max
// 100000" for none) sets, rounded up; nullopt if it sets none or is not that
// format.
std::optional<int> cpu_max_limit(std::string_view cpu_max);

// The same from cgroup v1's cpu.cfs_quota_us and cpu.cfs_period_us texts (a
// quota of -1 is none).
std::optional<int> cfs_quota_limit(std::string_view quota_us, std::string_view period_us);

}  // namespace canaryd
