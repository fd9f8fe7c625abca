// loadgen: a fixed-rate, fixed-duration HTTP load generator for canaryd's
// benchmarks (bench/README.md). Loopback targets only.
//
// It launches requests open-loop at --rate per second (the schedule does not
// slow down when the target does), keeps at most --concurrency in flight
// (a launch that finds them all busy is counted as skipped, never queued),
// and after --warmup seconds measures a window of --duration seconds:
// requests completed in the window, their errors, their libcurl total times
// (CURLINFO_TOTAL_TIME_T, what `curl -w %{time_total}` prints) and,
// for every --cpu-pid, the utime+stime that process used in the window.
// --samples-out writes one line per successful request of the window:
// "<CLOCK_REALTIME at completion> <total seconds> <local port>".
//
// Connections are kept alive and reused by default (how a load generator
// talks to blackbox_exporter); --fresh opens a new connection for every
// request (FRESH_CONNECT + FORBID_REUSE, as canaryd does for each probe run).
//
// The result is one JSON object on stdout. Exit code 0 unless the arguments
// are bad or curl cannot be set up; request errors are reported, not fatal.
#include <curl/curl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

struct Options {
  std::string url;
  double rate = 100;
  double duration = 10;
  double warmup = 0;
  int concurrency = 64;
  bool fresh = false;
  long timeout_ms = 5000;
  std::string expect_body;
  std::vector<int> cpu_pids;
  std::string samples_out;
};

[[noreturn]] void usage(const char* why) {
  std::fprintf(stderr,
               "loadgen: %s\n"
               "usage: loadgen --url URL [--rate N] [--duration S] [--warmup S]\n"
               "               [--concurrency N] [--fresh] [--timeout-ms MS]\n"
               "               [--expect-body TEXT] [--cpu-pid PID]... [--samples-out FILE]\n",
               why);
  std::exit(2);
}

Options parse_args(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage(("missing value for " + a).c_str());
      return argv[++i];
    };
    if (a == "--url") {
      o.url = value();
    } else if (a == "--rate") {
      o.rate = std::atof(value().c_str());
    } else if (a == "--duration") {
      o.duration = std::atof(value().c_str());
    } else if (a == "--warmup") {
      o.warmup = std::atof(value().c_str());
    } else if (a == "--concurrency") {
      o.concurrency = std::atoi(value().c_str());
    } else if (a == "--fresh") {
      o.fresh = true;
    } else if (a == "--timeout-ms") {
      o.timeout_ms = std::atol(value().c_str());
    } else if (a == "--expect-body") {
      o.expect_body = value();
    } else if (a == "--cpu-pid") {
      o.cpu_pids.push_back(std::atoi(value().c_str()));
    } else if (a == "--samples-out") {
      o.samples_out = value();
    } else {
      usage(("unknown argument " + a).c_str());
    }
  }
  if (o.url.empty()) usage("--url is required");
  // Loopback only: refuse anything else outright.
  if (o.url.rfind("http://127.0.0.1:", 0) != 0 && o.url.rfind("http://localhost:", 0) != 0)
    usage("--url must be http://127.0.0.1:PORT/... (loopback only)");
  // Bounded in count and time whatever is asked.
  if (!(o.rate > 0 && o.rate <= 50000)) usage("--rate must be in (0, 50000]");
  if (!(o.duration > 0 && o.duration <= 600)) usage("--duration must be in (0, 600]");
  if (!(o.warmup >= 0 && o.warmup <= 300)) usage("--warmup must be in [0, 300]");
  if (o.concurrency < 1 || o.concurrency > 10000) usage("--concurrency must be in [1, 10000]");
  if (o.timeout_ms < 1 || o.timeout_ms > 60000) usage("--timeout-ms must be in [1, 60000]");
  return o;
}

// utime + stime of a process, in clock ticks; -1 if it cannot be read.
long long cpu_ticks(int pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(f, line)) return -1;
  // The command name (field 2) may contain spaces: parse after its last ')'.
  size_t close = line.rfind(')');
  if (close == std::string::npos) return -1;
  std::istringstream rest(line.substr(close + 2));
  std::vector<std::string> fields;
  std::string field;
  while (rest >> field) fields.push_back(field);
  // fields[0] is field 3 (state); utime is field 14, stime field 15.
  if (fields.size() < 13) return -1;
  return std::atoll(fields[11].c_str()) + std::atoll(fields[12].c_str());
}

struct Slot {
  CURL* easy = nullptr;
  std::string body;
  bool busy = false;
  Clock::time_point launched;
};

size_t on_body(char* data, size_t size, size_t nmemb, void* userp) {
  auto* slot = static_cast<Slot*>(userp);
  size_t n = size * nmemb;
  if (slot->body.size() < 65536) slot->body.append(data, std::min(n, 65536 - slot->body.size()));
  return n;
}

double percentile(std::vector<double> v, double q) {
  if (v.empty()) return NAN;
  std::sort(v.begin(), v.end());
  // Nearest rank, the same definition bench/common.py uses.
  size_t rank = static_cast<size_t>(std::ceil(q * static_cast<double>(v.size())));
  if (rank < 1) rank = 1;
  return v[std::min(rank, v.size()) - 1];
}

std::string json_number(double x) {
  if (!std::isfinite(x)) return "null";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.9g", x);
  return buf;
}

}  // namespace

int main(int argc, char** argv) {
  Options o = parse_args(argc, argv);
  if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
    std::fprintf(stderr, "loadgen: curl_global_init failed\n");
    return 1;
  }
  CURLM* multi = curl_multi_init();
  curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS, static_cast<long>(o.concurrency));

  std::vector<Slot> slots(static_cast<size_t>(o.concurrency));
  std::vector<Slot*> idle;
  for (auto& s : slots) {
    s.easy = curl_easy_init();
    curl_easy_setopt(s.easy, CURLOPT_URL, o.url.c_str());
    curl_easy_setopt(s.easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(s.easy, CURLOPT_TIMEOUT_MS, o.timeout_ms);
    curl_easy_setopt(s.easy, CURLOPT_WRITEFUNCTION, &on_body);
    curl_easy_setopt(s.easy, CURLOPT_WRITEDATA, &s);
    curl_easy_setopt(s.easy, CURLOPT_PRIVATE, &s);
    curl_easy_setopt(s.easy, CURLOPT_USERAGENT, "canaryd-bench-loadgen");
    if (o.fresh) {
      curl_easy_setopt(s.easy, CURLOPT_FRESH_CONNECT, 1L);
      curl_easy_setopt(s.easy, CURLOPT_FORBID_REUSE, 1L);
    }
    idle.push_back(&s);
  }

  const auto start = Clock::now();
  const auto window_start =
      start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(o.warmup));
  const auto stop_launching = window_start + std::chrono::duration_cast<Clock::duration>(
                                                 std::chrono::duration<double>(o.duration));
  // In-flight requests get their own timeout to finish, then are abandoned.
  const auto hard_stop = stop_launching + std::chrono::milliseconds(o.timeout_ms + 1000);

  uint64_t launched = 0, skipped = 0;
  uint64_t w_completed = 0, w_ok = 0, w_errors = 0, w_skipped = 0;
  std::map<std::string, uint64_t> error_kinds;
  std::vector<double> w_totals;  // seconds, for requests completed in the window
  struct Sample {
    double finished_wall;  // CLOCK_REALTIME when the completion was read
    double total;          // CURLINFO_TOTAL_TIME_T
    long local_port;       // names the connection in a packet capture
  };
  std::vector<Sample> w_samples;
  std::vector<long long> cpu_at_start(o.cpu_pids.size(), -1), cpu_at_end(o.cpu_pids.size(), -1);
  bool in_window = false, window_closed = false;
  Clock::time_point measured_from{}, measured_to{};

  auto open_window = [&] {
    in_window = true;
    measured_from = Clock::now();
    for (size_t i = 0; i < o.cpu_pids.size(); ++i) cpu_at_start[i] = cpu_ticks(o.cpu_pids[i]);
  };
  auto close_window = [&] {
    for (size_t i = 0; i < o.cpu_pids.size(); ++i) cpu_at_end[i] = cpu_ticks(o.cpu_pids[i]);
    measured_to = Clock::now();
    in_window = false;
    window_closed = true;
  };
  if (o.warmup <= 0) open_window();

  const double period_s = 1.0 / o.rate;
  uint64_t n = 0;  // index of the next scheduled launch
  for (;;) {
    auto now = Clock::now();
    if (!in_window && !window_closed && now >= window_start) open_window();
    if (in_window && now >= stop_launching) close_window();
    // Launch every request whose slot in the schedule has come.
    while (now < stop_launching) {
      auto due = start + std::chrono::duration_cast<Clock::duration>(
                             std::chrono::duration<double>(static_cast<double>(n) * period_s));
      if (due > now) break;
      ++n;
      if (idle.empty()) {
        ++skipped;
        if (in_window) ++w_skipped;
        continue;
      }
      Slot* s = idle.back();
      idle.pop_back();
      s->body.clear();
      s->busy = true;
      s->launched = now;
      curl_multi_add_handle(multi, s->easy);
      ++launched;
    }
    int running = 0;
    curl_multi_perform(multi, &running);
    int left = 0;
    while (CURLMsg* msg = curl_multi_info_read(multi, &left)) {
      if (msg->msg != CURLMSG_DONE) continue;
      CURL* e = msg->easy_handle;
      CURLcode rc = msg->data.result;
      Slot* s = nullptr;
      curl_easy_getinfo(e, CURLINFO_PRIVATE, reinterpret_cast<char**>(&s));
      long status = 0;
      curl_off_t total_us = 0;
      curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
      curl_easy_getinfo(e, CURLINFO_TOTAL_TIME_T, &total_us);
      curl_multi_remove_handle(multi, e);
      s->busy = false;
      idle.push_back(s);
      if (!in_window) continue;
      ++w_completed;
      std::string err;
      if (rc != CURLE_OK) {
        err = std::string("curl: ") + curl_easy_strerror(rc);
      } else if (status < 200 || status >= 300) {
        err = "http " + std::to_string(status);
      } else if (!o.expect_body.empty() && s->body.find(o.expect_body) == std::string::npos) {
        err = "body lacks expected text";
      }
      if (err.empty()) {
        ++w_ok;
        w_totals.push_back(static_cast<double>(total_us) / 1e6);
        if (!o.samples_out.empty()) {
          timespec wall{};
          clock_gettime(CLOCK_REALTIME, &wall);
          long local_port = 0;
          curl_easy_getinfo(e, CURLINFO_LOCAL_PORT, &local_port);
          w_samples.push_back(
              {static_cast<double>(wall.tv_sec) + wall.tv_nsec / 1e9, w_totals.back(), local_port});
        }
      } else {
        ++w_errors;
        ++error_kinds[err];
      }
    }
    now = Clock::now();
    if (now >= stop_launching && (idle.size() == slots.size() || now >= hard_stop)) break;
    // Sleep until the next launch is due or curl has something to do.
    int wait_ms = 10;
    if (now < stop_launching) {
      auto due = start + std::chrono::duration_cast<Clock::duration>(
                             std::chrono::duration<double>(static_cast<double>(n) * period_s));
      auto until = std::chrono::duration_cast<std::chrono::microseconds>(due - now).count();
      // Round up: waking early would spin; a launch up to 1 ms late is caught
      // up by the open-loop schedule.
      wait_ms = static_cast<int>(std::clamp<long long>((until + 999) / 1000, 0, 10));
    }
    curl_multi_poll(multi, nullptr, 0, wait_ms, nullptr);
  }
  if (in_window) close_window();

  uint64_t abandoned = 0;
  for (auto& s : slots) {
    if (s.busy) {
      curl_multi_remove_handle(multi, s.easy);
      ++abandoned;
    }
    curl_easy_cleanup(s.easy);
  }
  curl_multi_cleanup(multi);
  curl_global_cleanup();

  if (!o.samples_out.empty()) {
    std::ofstream out(o.samples_out);
    char buf[96];
    for (const Sample& sm : w_samples) {
      std::snprintf(buf, sizeof buf, "%.6f %.6f %ld\n", sm.finished_wall, sm.total, sm.local_port);
      out << buf;
    }
  }

  const double window_s = std::chrono::duration<double>(measured_to - measured_from).count();
  const long ticks_per_s = sysconf(_SC_CLK_TCK);
  std::ostringstream j;
  j << "{\"url\":\"" << o.url << "\",\"fresh\":" << (o.fresh ? "true" : "false")
    << ",\"target_rate\":" << json_number(o.rate) << ",\"concurrency\":" << o.concurrency
    << ",\"warmup_seconds\":" << json_number(o.warmup)
    << ",\"window_seconds\":" << json_number(window_s) << ",\"launched_total\":" << launched
    << ",\"skipped_total\":" << skipped << ",\"abandoned\":" << abandoned
    << ",\"completed\":" << w_completed << ",\"ok\":" << w_ok << ",\"errors\":" << w_errors
    << ",\"skipped\":" << w_skipped
    << ",\"achieved_rate\":" << json_number(window_s > 0 ? w_completed / window_s : NAN)
    << ",\"total_p50\":" << json_number(percentile(w_totals, 0.50))
    << ",\"total_p90\":" << json_number(percentile(w_totals, 0.90))
    << ",\"total_p99\":" << json_number(percentile(w_totals, 0.99))
    << ",\"total_max\":" << json_number(percentile(w_totals, 1.0)) << ",\"error_kinds\":{";
  bool first = true;
  for (const auto& [kind, count] : error_kinds) {
    j << (first ? "" : ",") << "\"" << kind << "\":" << count;
    first = false;
  }
  j << "},\"clk_tck\":" << ticks_per_s << ",\"cpu\":[";
  for (size_t i = 0; i < o.cpu_pids.size(); ++i) {
    long long d = (cpu_at_start[i] < 0 || cpu_at_end[i] < 0) ? -1 : cpu_at_end[i] - cpu_at_start[i];
    j << (i ? "," : "") << "{\"pid\":" << o.cpu_pids[i] << ",\"ticks\":" << d << ",\"seconds\":"
      << json_number(d < 0 ? NAN : static_cast<double>(d) / static_cast<double>(ticks_per_s))
      << "}";
  }
  rusage self{};
  getrusage(RUSAGE_SELF, &self);
  const double self_cpu = static_cast<double>(self.ru_utime.tv_sec + self.ru_stime.tv_sec) +
                          static_cast<double>(self.ru_utime.tv_usec + self.ru_stime.tv_usec) / 1e6;
  j << "],\"loadgen_cpu_seconds\":" << json_number(self_cpu) << "}";
  std::printf("%s\n", j.str().c_str());
  return 0;
}
