#include "base/usable_cpus.h"

#include <sched.h>

#include <algorithm>
#include <charconv>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace canaryd {
namespace {

std::optional<long long> parse_number(std::string_view text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.remove_suffix(1);
  long long value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size()) return std::nullopt;
  return value;
}

std::optional<int> ceil_ratio(long long quota, long long period) {
  if (quota <= 0 || period <= 0) return std::nullopt;
  return static_cast<int>(std::min<long long>((quota + period - 1) / period, 1 << 20));
}

std::string read_small_file(const std::string& path) {
  std::ifstream in(path);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

// The cgroup directories this process sits in and their ancestors, nearest
// first, for the v2 hierarchy ("0::/path") or the v1 cpu controller.
std::vector<std::string> cgroup_dirs(bool v2) {
  std::vector<std::string> dirs;
  std::istringstream lines(read_small_file("/proc/self/cgroup"));
  for (std::string line; std::getline(lines, line);) {
    const size_t first = line.find(':');
    const size_t second = line.find(':', first + 1);
    if (first == std::string::npos || second == std::string::npos) continue;
    const std::string controllers = line.substr(first + 1, second - first - 1);
    std::string path = line.substr(second + 1);
    std::string root;
    if (v2 && line.compare(0, first, "0") == 0 && controllers.empty()) {
      root = "/sys/fs/cgroup";
    } else if (!v2) {
      std::istringstream names(controllers);
      bool cpu = false;
      for (std::string name; std::getline(names, name, ',');) cpu |= name == "cpu";
      if (!cpu) continue;
      root = "/sys/fs/cgroup/cpu";
    } else {
      continue;
    }
    while (true) {
      dirs.push_back(root + (path == "/" ? "" : path));
      if (path.empty() || path == "/") break;
      // Cut at the last '/', keeping the root's: "/a/b" -> "/a" -> "/". (A
      // resize, not `path = "/"`, which g++ 12 at -O3 with _FORTIFY_SOURCE
      // misreads as an overlapping copy, GCC bug 105651.)
      const size_t slash = path.rfind('/');
      path.resize(slash == 0 || slash == std::string::npos ? 1 : slash);
      path[0] = '/';
    }
  }
  return dirs;
}

std::optional<int> cgroup_limit() {
  std::optional<int> limit;
  auto tighter = [&](std::optional<int> l) {
    if (l && (!limit || *l < *limit)) limit = l;
  };
  for (const auto& dir : cgroup_dirs(true))
    tighter(cpu_max_limit(read_small_file(dir + "/cpu.max")));
  for (const auto& dir : cgroup_dirs(false))
    tighter(cfs_quota_limit(read_small_file(dir + "/cpu.cfs_quota_us"),
                            read_small_file(dir + "/cpu.cfs_period_us")));
  return limit;
}

}  // namespace

std::optional<int> cpu_max_limit(std::string_view cpu_max) {
  const size_t space = cpu_max.find(' ');
  if (space == std::string_view::npos) return std::nullopt;
  auto quota = parse_number(cpu_max.substr(0, space));
  auto period = parse_number(cpu_max.substr(space + 1));
  if (!quota || !period) return std::nullopt;  // "max": no limit
  return ceil_ratio(*quota, *period);
}

std::optional<int> cfs_quota_limit(std::string_view quota_us, std::string_view period_us) {
  auto quota = parse_number(quota_us);
  auto period = parse_number(period_us);
  if (!quota || !period) return std::nullopt;
  return ceil_ratio(*quota, *period);
}

int usable_cpus() {
  int cpus = 0;
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0) cpus = CPU_COUNT(&set);
  if (cpus <= 0) cpus = static_cast<int>(std::thread::hardware_concurrency());
  if (auto limit = cgroup_limit()) cpus = std::min(cpus, *limit);
  return std::max(1, cpus);
}

}  // namespace canaryd
