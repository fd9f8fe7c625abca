// The clocks the bench's floor clients (get_floor, curl_floor) measure with.
// Header-only: each tool is one file.
#pragma once

#include <time.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace bench {

inline int64_t now_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

// utime + stime of a process in clock ticks from /proc/PID/stat; -1 if unreadable.
inline long long proc_cpu_ticks(int pid) {
  char path[64];
  std::snprintf(path, sizeof path, "/proc/%d/stat", pid);
  FILE* f = std::fopen(path, "r");
  if (f == nullptr) return -1;
  char line[1024];
  size_t n = std::fread(line, 1, sizeof line - 1, f);
  std::fclose(f);
  line[n] = '\0';
  // The command name (field 2) may hold spaces: count fields after its last ')'.
  const char* p = std::strrchr(line, ')');
  if (p == nullptr) return -1;
  long long utime = -1, stime = -1;
  int field = 2;
  for (const char* q = p + 1; *q != '\0' && field < 15; ++q) {
    if (*q != ' ') continue;
    ++field;  // q + 1 starts field `field`
    if (field == 14) utime = std::atoll(q + 1);
    if (field == 15) stime = std::atoll(q + 1);
  }
  return utime < 0 || stime < 0 ? -1 : utime + stime;
}

}  // namespace bench
