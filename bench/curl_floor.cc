// curl_floor: what libcurl itself costs for benchmark (a)'s work, so that a
// reader can tell canaryd's own cost from its HTTP library's. The same GETs as
// get_floor (a fresh TCP connection to 127.0.0.1, one GET, the whole response
// read, the status checked, the connection closed), made by one libcurl multi
// handle with nothing around it: no scheduler, no metrics, no logging, no
// probe results. Easy handles are reused, as canaryd's probes reuse theirs.
//
//   curl_floor --port P [--path /health] [--rate N] [--warmup S] [--duration S]
//              [--timeout-ms MS] [--max-inflight N] [--cpu-pid PID]
//
// Request i is due at t0 + i/rate; one that finds --max-inflight transfers
// running is skipped, never queued. The window, the CPU accounting and the
// JSON on stdout are get_floor's (bench/get_floor.cc).
#include <curl/curl.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "cpu_time.h"

namespace {

using bench::now_ns;
using bench::proc_cpu_ticks;

double cpu_seconds(double* user, double* sys) {
  rusage r{};
  getrusage(RUSAGE_SELF, &r);
  *user = static_cast<double>(r.ru_utime.tv_sec) + static_cast<double>(r.ru_utime.tv_usec) / 1e6;
  *sys = static_cast<double>(r.ru_stime.tv_sec) + static_cast<double>(r.ru_stime.tv_usec) / 1e6;
  return *user + *sys;
}

size_t discard(char* /*data*/, size_t size, size_t n, void* /*user*/) { return size * n; }

struct Args {
  int port = 0;
  std::string path = "/health";
  double rate = 1000, warmup = 5, duration = 30;
  long timeout_ms = 1000;
  int max_inflight = 1000, cpu_pid = 0;
};

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string_view k = argv[i];
    const char* v = argv[i + 1];
    if (k == "--port")
      a.port = std::atoi(v);
    else if (k == "--path")
      a.path = v;
    else if (k == "--rate")
      a.rate = std::atof(v);
    else if (k == "--warmup")
      a.warmup = std::atof(v);
    else if (k == "--duration")
      a.duration = std::atof(v);
    else if (k == "--timeout-ms")
      a.timeout_ms = std::atol(v);
    else if (k == "--max-inflight")
      a.max_inflight = std::atoi(v);
    else if (k == "--cpu-pid")
      a.cpu_pid = std::atoi(v);
  }
  // Bounded, as every load loop here is.
  if (a.port <= 0 || a.port > 65535 || a.rate <= 0 || a.rate > 20000 || a.warmup < 0 ||
      a.warmup > 300 || a.duration <= 0 || a.duration > 600 || a.max_inflight <= 0 ||
      a.max_inflight > 20000) {
    std::fprintf(stderr,
                 "usage: curl_floor --port P [--path /health] [--rate N<=20000] [--warmup S<=300] "
                 "[--duration S<=600] [--timeout-ms MS] [--max-inflight N<=20000] "
                 "[--cpu-pid PID]\n");
    std::exit(2);
  }
  return a;
}

}  // namespace

int main(int argc, char** argv) {
  const Args a = parse(argc, argv);
  curl_global_init(CURL_GLOBAL_DEFAULT);
  CURLM* multi = curl_multi_init();
  const std::string url = "http://127.0.0.1:" + std::to_string(a.port) + a.path;
  std::vector<CURL*> idle;
  for (int i = 0; i < a.max_inflight; ++i) {
    CURL* e = curl_easy_init();
    curl_easy_setopt(e, CURLOPT_URL, url.c_str());
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_FORBID_REUSE, 1L);
    curl_easy_setopt(e, CURLOPT_FRESH_CONNECT, 1L);
    curl_easy_setopt(e, CURLOPT_PROXY, "");
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, a.timeout_ms);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, discard);
    idle.push_back(e);
  }
  const int64_t period = static_cast<int64_t>(1e9 / a.rate);
  const int64_t t0 = now_ns();
  const int64_t window_start = t0 + static_cast<int64_t>(a.warmup * 1e9);
  const int64_t window_end = window_start + static_cast<int64_t>(a.duration * 1e9);
  int64_t next_due = t0;
  bool in_window = false;
  double user0 = 0, sys0 = 0, cpu0 = 0;
  long long peer0 = -1;
  long requests = 0, failures = 0, skipped = 0;
  int running = 0;
  while (true) {
    int64_t now = now_ns();
    if (!in_window && now >= window_start) {
      in_window = true;
      cpu0 = cpu_seconds(&user0, &sys0);
      if (a.cpu_pid > 0) peer0 = proc_cpu_ticks(a.cpu_pid);
    }
    if (now >= window_end) break;
    while (next_due <= now) {
      next_due += period;
      if (idle.empty()) {
        if (in_window) ++skipped;
        continue;
      }
      curl_multi_add_handle(multi, idle.back());
      idle.pop_back();
    }
    curl_multi_perform(multi, &running);
    int left = 0;
    while (CURLMsg* m = curl_multi_info_read(multi, &left)) {
      if (m->msg != CURLMSG_DONE) continue;
      long status = 0;
      curl_easy_getinfo(m->easy_handle, CURLINFO_RESPONSE_CODE, &status);
      if (in_window) {
        ++requests;
        if (m->data.result != CURLE_OK || status != 200) ++failures;
      }
      curl_multi_remove_handle(multi, m->easy_handle);
      idle.push_back(m->easy_handle);
    }
    // Rounded up: a wait of 0 ms for a request due in 0.6 ms would spin.
    const int64_t wait_ms =
        std::clamp<int64_t>((next_due - now_ns() + 999'999) / 1'000'000, 0, 100);
    curl_multi_poll(multi, nullptr, 0, static_cast<int>(wait_ms), nullptr);
  }
  double user1 = 0, sys1 = 0;
  const double cpu = cpu_seconds(&user1, &sys1) - cpu0;
  const long long peer1 = a.cpu_pid > 0 ? proc_cpu_ticks(a.cpu_pid) : -1;
  const double wall = a.duration;
  const double per = requests > 0 ? 1e6 / static_cast<double>(requests) : 0;
  const double ticks = static_cast<double>(sysconf(_SC_CLK_TCK));
  const double peer_us =
      peer0 >= 0 && peer1 >= 0 ? static_cast<double>(peer1 - peer0) / ticks * per : -1;
  std::printf(
      "{\"requests\": %ld, \"failures\": %ld, \"skipped\": %ld, \"wall_seconds\": %.3f, "
      "\"achieved_rate\": %.1f, \"cpu_seconds\": %.4f, \"cpu_us_per_request\": %.2f, "
      "\"user_us_per_request\": %.2f, \"sys_us_per_request\": %.2f, "
      "\"cpu_pid_us_per_request\": %.2f, \"curl_version\": \"%s\"}\n",
      requests, failures, skipped, wall, static_cast<double>(requests) / wall, cpu, cpu * per,
      (user1 - user0) * per, (sys1 - sys0) * per, peer_us,
      curl_version_info(CURLVERSION_NOW)->version);
  for (CURL* e : idle) curl_easy_cleanup(e);
  curl_multi_cleanup(multi);
  curl_global_cleanup();
  return 0;
}
