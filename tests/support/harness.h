// Integration-test support for canaryd: real child processes (the daemon, fixture servers) on
// loopback free ports, HTTP helpers, polling waits and a Prometheus exposition parser.
//
// Ground rules the helpers enforce so the tests don't have to remember them:
//  - children are started with posix_spawn, inherit no descriptors besides 0-2 (stdin is
//    /dev/null), start with default signal dispositions, and are stopped by the PID we started;
//  - every wait is "poll until the condition holds or a generous timeout passes";
//  - HTTP goes straight to the URL given (proxy variables are ignored), never past its timeout.
#ifndef CANARYD_TESTS_SUPPORT_HARNESS_H_
#define CANARYD_TESTS_SUPPORT_HARNESS_H_

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

namespace canaryd::test {

// A TCP port on 127.0.0.1 that was free a moment ago (bound to port 0, read back, closed).
// Throws std::runtime_error if no socket can be bound.
int free_port();

// A fresh directory under $TMPDIR (or /tmp), removed recursively on destruction unless the
// environment variable CANARYD_TEST_KEEP_TMP is set (handy to inspect logs after a failure).
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(TempDir&& other) noexcept;
  TempDir& operator=(TempDir&& other) noexcept;
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  // path() + "/" + name; the file need not exist.
  std::string file(std::string_view name) const;
  // Writes content to file(name), creating parent directories, and returns that path. The write
  // is atomic (temporary file + rename) so a daemon re-reading the file never sees half of it.
  // The file is created with mode 0600 because tests use it for secrets; chmod if needed.
  std::string write_file(std::string_view name, std::string_view content) const;

 private:
  std::string path_;
};

struct CommandResult {
  // Exit status if the command exited, -signal if a signal killed it, -1 if it was killed for
  // exceeding its timeout (timed_out tells that apart from a SIGHUP death).
  int exit_code = 0;
  std::string out;
  std::string err;
  bool timed_out = false;
};

// Runs argv (argv[0] is looked up in PATH) to completion. stdout and stderr are captured in
// anonymous memory files rather than pipes, so any amount of output is fine and a grandchild
// that keeps the descriptors open cannot stall us. On timeout the child is SIGKILLed by PID.
// The child environment is the test's minus proxy variables (http_proxy & co, so loopback
// traffic is never proxied), plus extra_env: "K=V" sets or overrides, "K" removes.
// Throws std::runtime_error if the program cannot be started.
CommandResult run_command(const std::vector<std::string>& argv,
                          std::chrono::milliseconds timeout = std::chrono::seconds(60),
                          const std::vector<std::string>& extra_env = {});

// A background child process (daemon, fixture server). stdout and stderr go to files in
// log_dir (a private temporary directory if empty) so tests can inspect them at any time, e.g.
// to check that a secret never appears in the logs. The child environment is the test's minus
// proxy variables (http_proxy & co, so loopback traffic is never proxied), plus extra_env
// (same syntax as run_command). Movable; a moved-from Process is inert.
class Process {
 public:
  // Throws std::runtime_error if the program cannot be started.
  explicit Process(std::vector<std::string> argv, std::vector<std::string> extra_env = {},
                   std::string log_dir = "");
  ~Process();  // stop()
  Process(Process&& other) noexcept;
  Process& operator=(Process&& other) noexcept;
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  pid_t pid() const { return pid_; }
  // Reaps the child without blocking; false once it has exited.
  bool running();
  // SIGTERM, wait up to grace, then SIGKILL. Returns the exit status, or -signal if a signal
  // ended it. Returns the recorded status if the child had already exited.
  int stop(std::chrono::milliseconds grace = std::chrono::seconds(10));
  // Sends sig by PID. Throws std::runtime_error if the child has already been reaped, because
  // signalling a dead daemon means the test's premise is already broken.
  void signal(int sig);
  // Exit status (as for stop()) if the child exits within timeout, else nullopt.
  std::optional<int> wait_exit(std::chrono::milliseconds timeout);

  std::string stdout_text() const;
  std::string stderr_text() const;
  const std::string& stdout_path() const { return stdout_path_; }
  const std::string& stderr_path() const { return stderr_path_; }
  // Program name plus status and the tail of stderr, for exception messages.
  std::string describe();

 private:
  bool reap(bool block);

  std::string name_;
  std::unique_ptr<TempDir> own_log_dir_;
  std::string stdout_path_;
  std::string stderr_path_;
  pid_t pid_ = -1;
  std::optional<int> exit_status_;  // set once reaped; the PID must never be signalled after
};

// Polls cond every step until it returns true (-> true) or timeout passes (-> false). cond is
// evaluated once more at the deadline so a slow final step cannot cause a false negative.
bool wait_until(const std::function<bool()>& cond,
                std::chrono::milliseconds timeout = std::chrono::seconds(20),
                std::chrono::milliseconds step = std::chrono::milliseconds(50));

// True once a TCP connection to 127.0.0.1:port succeeds within timeout.
bool wait_for_port(int port, std::chrono::milliseconds timeout = std::chrono::seconds(20));

struct HttpResult {
  long status = 0;
  std::string body;
  std::string error;  // non-empty on transport failure (refused, timeout, ...); status is then 0
  // Response headers with lower-cased names; repeated headers are joined with ", ".
  std::map<std::string, std::string> headers;
};

// Plain libcurl requests. Redirects are not followed, proxies are never used, and the whole
// request (connect included) is bounded by timeout.
HttpResult http_get(const std::string& url,
                    std::chrono::milliseconds timeout = std::chrono::seconds(10));
HttpResult http_post(const std::string& url, const std::string& body = "",
                     std::chrono::milliseconds timeout = std::chrono::seconds(10));
// Any method; headers are "Name: value" lines. A non-empty body is sent as the request body.
HttpResult http_request(const std::string& method, const std::string& url,
                        const std::string& body = "", const std::vector<std::string>& headers = {},
                        std::chrono::milliseconds timeout = std::chrono::seconds(10));

// One sample of the Prometheus text exposition format.
struct Sample {
  std::string name;
  std::map<std::string, std::string> labels;
  double value = 0;
};

// Parses every sample line; comments (# HELP/# TYPE/others) and blank lines are skipped,
// label values are unescaped (\" \\ \n), values accept +Inf/-Inf/NaN, and an optional
// timestamp or OpenMetrics exemplar after the value is ignored. Throws std::invalid_argument
// naming the line on malformed input, since a bad exposition is itself a bug to report.
std::vector<Sample> parse_exposition(const std::string& exposition);

// Value of the first sample called name whose labels include every given pair (other labels
// allowed); nullopt if none matches. Throws like parse_exposition on malformed input.
std::optional<double> metric_value(const std::string& exposition, const std::string& name,
                                   const std::map<std::string, std::string>& labels = {});

// The sum of every sample called name whose labels include every given pair: a
// family split by a label the caller does not care about (e.g. `loop`).
double metric_sum(const std::string& exposition, const std::string& name,
                  const std::map<std::string, std::string>& labels = {});

// Paths injected by CMake (CANARYD_BIN, CANARYD_SOURCE_DIR, PYTHON3 compile definitions).
// Without them: the environment variable of the same name, then a best guess.
std::string canaryd_bin();
std::string source_dir();
std::string python3();

// tests/fixtures/fake_platform.py on free ports; the constructor returns once the fixture has
// written its ready file, and throws std::runtime_error (with its stderr) if it exits first or
// is not ready within 30 s.
class FakePlatform {
 public:
  struct Options {
    std::vector<std::tuple<std::string, std::string, std::string>> tls;  // name, cert, key
    std::vector<std::string> extra_args;  // appended to the command line
    std::vector<std::string> extra_env;   // as for Process
    std::string script;                   // empty: the repository's fake_platform.py
  };

  explicit FakePlatform(Options opts = {});

  int http_port() const { return http_port_; }
  // Throws std::out_of_range for a name that was not passed in Options::tls.
  int tls_port(const std::string& name) const;
  // "http://127.0.0.1:PORT" + path_and_query (a missing leading '/' is added).
  std::string url(std::string_view path_and_query) const;
  Process& process() { return process_; }

 private:
  TempDir dir_;  // declared before process_: the logs and ready file must outlive it
  Process process_;
  int http_port_ = 0;
  std::map<std::string, int> tls_ports_;
};

// Options for a fake platform with the TLS listeners "good", "wronghost" and
// "expired", using the certificates make_certs() wrote to `certs_dir`.
FakePlatform::Options tls_platform_options(const std::string& certs_dir);

// n random letters and digits: a value no fixed text contains by chance (a
// test secret, say).
std::string random_token(size_t n);

// `canaryd once --config <config_yaml written to a temp file> --json`, the deploy gate as a
// pipeline runs it. `out` is the parsed JSON (discarded, i.e. out.is_discarded(), if stdout
// was not JSON).
struct OnceRun {
  int exit_code = 0;
  nlohmann::json out;
  std::string err;
};
OnceRun run_once_json(const std::string& config_yaml,
                      const std::vector<std::string>& extra_env = {});
// The result of probe `name` in `once --json` output; an empty object if it is not there.
nlohmann::json once_result(const nlohmann::json& out, const std::string& name);
// run_once_json for a test: the exit code goes to *exit_code, stdout must be JSON
// (REQUIRE), and stderr is shown if a later check fails.
nlohmann::json once_json(const std::string& config_yaml, int* exit_code,
                         const std::vector<std::string>& extra_env = {});
// once_result that FAILs the test when the probe has no result.
nlohmann::json result_of(const nlohmann::json& out, const std::string& name);
// A result's details field, or null when it has none.
nlohmann::json detail(const nlohmann::json& result, const std::string& key);
// Its reason, or "(missing)".
std::string once_reason(const nlohmann::json& out, const std::string& name);
// A result's message, or "" when it has none.
std::string result_message(const nlohmann::json& result);

// Runs tests/fixtures/make_certs.sh on dir.path() + "/certs" (ca.pem, good.pem/key,
// wronghost.pem/key, expired.pem/key) and returns that directory. Throws std::runtime_error
// with the script's output if it fails.
std::string make_certs(const TempDir& dir);

// A FakePlatform with the TLS listeners of tls_platform_options(), on certificates that
// make_certs() wrote to a private directory. Tests keep one in a function-local static and
// add their own URL helpers.
struct TlsPlatform {
  TempDir dir;  // declared first: the certificates must outlive the fixture
  std::string certs = make_certs(dir);
  FakePlatform fp{tls_platform_options(certs)};

  std::string ca() const { return certs + "/ca.pem"; }
  // "<scheme>://127.0.0.1:<port of TLS listener `listener`><path_and_query>".
  std::string tls_url(std::string_view scheme, const std::string& listener,
                      std::string_view path_and_query) const;
};

// The canaryd daemon ("BIN run --config PATH") with a config written to a private temp dir.
// In the config text "{{listen}}" becomes 127.0.0.1:<free port> and "{{dir}}" the temp dir
// (for secret files written with dir().write_file()). The constructor returns once
// GET /-/ready answers 200 and throws std::runtime_error with the daemon's stderr if it exits
// first or is not ready within 30 s.
class Daemon {
 public:
  // binary: empty means canaryd_bin(); set for tests of the harness itself. extra_args
  // follow "run --config PATH" (e.g. "--web.enable-lifecycle").
  explicit Daemon(const std::string& config_yaml, std::vector<std::string> extra_env = {},
                  std::string binary = "", std::vector<std::string> extra_args = {});

  int port() const { return port_; }
  std::string base_url() const;  // http://127.0.0.1:PORT
  // GET /metrics body; throws std::runtime_error unless the answer is 200.
  std::string metrics();
  // GET /api/v1/state (or /api/v1/state/<probe>, URL-escaped) parsed as JSON; throws
  // std::runtime_error unless the answer is 200 with valid JSON.
  nlohmann::json state();
  nlohmann::json state(const std::string& probe);

  Process& process() { return process_; }
  const TempDir& dir() const { return dir_; }
  const std::string& config_path() const { return config_path_; }
  // Atomically replaces the config (same substitutions). Does not signal the daemon: the test
  // decides when to process().signal(SIGHUP).
  void rewrite_config(const std::string& yaml);

 private:
  std::string substitute(const std::string& yaml) const;
  std::string get_ok(const std::string& path);

  TempDir dir_;  // declared before process_: config and logs must outlive the daemon
  int port_;
  std::string config_path_;
  Process process_;
};

// A metric of a running daemon, or -1 when it has no such series.
double daemon_metric(Daemon& d, const std::string& name,
                     const std::map<std::string, std::string>& labels = {});
// Whether probe `probe` has completed at least `runs` runs.
bool has_run(Daemon& d, const std::string& probe, int runs = 1);

// The sum of counter `name` over every series whose "probe" label starts with `probe_prefix`
// and whose labels include every given pair: e.g. the timeouts of a whole group of probes.
double metric_sum(const std::string& exposition, const std::string& name,
                  const std::string& probe_prefix,
                  const std::map<std::string, std::string>& labels = {});
// "PROBE REASON=VALUE" for every canary_probe_failures_total series above 0 whose probe
// starts with `probe_prefix` and whose reason is not `allowed_reason` (empty: none allowed).
// A scrape is not atomic across series, so tests that want "these probes failed only for
// this reason" compare this list with {} rather than adding counters up.
std::vector<std::string> unexpected_failures(const std::string& exposition,
                                             const std::string& probe_prefix,
                                             const std::string& allowed_reason = "");

}  // namespace canaryd::test

#endif  // CANARYD_TESTS_SUPPORT_HARNESS_H_
