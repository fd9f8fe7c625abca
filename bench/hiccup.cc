// hiccup: how long this machine keeps a runnable thread from running. One
// thread per CPU, pinned, sleeps 1 ms in a loop and records how much longer
// than asked each sleep took (the idea of jHiccup). On a virtual machine the
// worst of it is usually the hypervisor taking the vCPU away; no process on
// the machine can be more punctual than this, so benchmarks print it next to
// their maximum latency errors.
//
//   hiccup --seconds S
//
// Prints one JSON object on stdout: per CPU and overall, the oversleep's
// p50, p99, p99.99 and max in seconds, and how many exceeded 5 and 10 ms.
#include <pthread.h>
#include <sched.h>
#include <time.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

namespace {

int64_t now_ns() {
  timespec t{};
  clock_gettime(CLOCK_MONOTONIC, &t);
  return static_cast<int64_t>(t.tv_sec) * 1'000'000'000 + t.tv_nsec;
}

std::string summary(std::vector<int64_t> v) {
  if (v.empty()) return "{\"n\":0}";
  std::sort(v.begin(), v.end());
  auto at = [&](double q) {
    return static_cast<double>(v[static_cast<size_t>(q * (v.size() - 1))]) / 1e9;
  };
  long over5 = std::count_if(v.begin(), v.end(), [](int64_t x) { return x > 5'000'000; });
  long over10 = std::count_if(v.begin(), v.end(), [](int64_t x) { return x > 10'000'000; });
  char buf[256];
  std::snprintf(buf, sizeof buf,
                "{\"n\":%zu,\"p50\":%.6f,\"p99\":%.6f,\"p9999\":%.6f,\"max\":%.6f,"
                "\"over_5ms\":%ld,\"over_10ms\":%ld}",
                v.size(), at(0.5), at(0.99), at(0.9999), static_cast<double>(v.back()) / 1e9, over5,
                over10);
  return buf;
}

}  // namespace

int main(int argc, char** argv) {
  double seconds = 0;
  if (argc == 3 && std::strcmp(argv[1], "--seconds") == 0) seconds = std::atof(argv[2]);
  if (!(seconds > 0 && seconds <= 3600)) {
    std::fprintf(stderr, "usage: hiccup --seconds S (0 < S <= 3600)\n");
    return 2;
  }
  unsigned ncpu = std::max(1u, std::thread::hardware_concurrency());
  std::vector<std::vector<int64_t>> over(ncpu);
  std::vector<std::thread> threads;
  const int64_t end = now_ns() + static_cast<int64_t>(seconds * 1e9);
  for (unsigned c = 0; c < ncpu; ++c) {
    threads.emplace_back([&, c] {
      cpu_set_t set;
      CPU_ZERO(&set);
      CPU_SET(c, &set);
      pthread_setaffinity_np(pthread_self(), sizeof set, &set);
      const timespec one_ms{0, 1'000'000};
      while (now_ns() < end) {
        int64_t before = now_ns();
        nanosleep(&one_ms, nullptr);
        over[c].push_back(now_ns() - before - 1'000'000);
      }
    });
  }
  for (auto& t : threads) t.join();
  std::vector<int64_t> all;
  std::string per_cpu;
  for (unsigned c = 0; c < ncpu; ++c) {
    all.insert(all.end(), over[c].begin(), over[c].end());
    if (c > 0) per_cpu += ',';
    per_cpu += summary(over[c]);
  }
  std::printf("{\"seconds\":%.1f,\"all\":%s,\"per_cpu\":[%s]}\n", seconds, summary(all).c_str(),
              per_cpu.c_str());
  return 0;
}
