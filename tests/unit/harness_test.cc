// Self-test of the integration-test harness, against real child processes (sh, python3's
// http.server and small Python stand-ins written on the fly) on loopback. The stand-ins let
// FakePlatform and Daemon be checked before the real fixture and daemon exist.
#include "tests/support/harness.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cmath>
#include <csignal>
#include <filesystem>
#include <string>

namespace canaryd::test {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using Catch::Matchers::Contains;

// Generous upper bounds only: they prove a wait ended, not how fast.
constexpr auto kGenerous = 20s;

// POST/PUT echo server: answers 201 with the request body and its content type.
constexpr const char* kEchoServer = R"py(
import http.server, sys
class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        data = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(201)
        self.send_header("Content-Type", "text/plain")
        self.send_header("X-Got-Type", self.headers.get("Content-Type", ""))
        self.send_header("X-Method", self.command)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
    do_PUT = do_POST
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
)py";

// Stand-in for fake_platform.py: same command line and ready-file contract.
constexpr const char* kPlatformStub = R"py(
import argparse, http.server, json, os, socket, sys
p = argparse.ArgumentParser()
p.add_argument("--port", type=int)
p.add_argument("--ready-file")
p.add_argument("--tls", action="append", default=[])
p.add_argument("--fail", action="store_true")
a = p.parse_args()
if a.fail:
    print("stub platform: refusing to start", file=sys.stderr)
    sys.exit(2)
http_server = http.server.HTTPServer(("127.0.0.1", a.port), http.server.SimpleHTTPRequestHandler)
tls = {}
for spec in a.tls:
    name = spec.split(":")[0]
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    tls[name] = s.getsockname()[1]
    globals()["keep_" + name] = s
tmp = a.ready_file + ".tmp"
with open(tmp, "w") as f:
    json.dump({"http": http_server.server_address[1], "tls": tls, "pid": os.getpid()}, f)
os.replace(tmp, a.ready_file)
http_server.serve_forever()
)py";

// Stand-in for canaryd: "run --config PATH", listens where the config says, is not ready for
// the first half second (so the readiness poll is exercised), reloads on SIGHUP.
constexpr const char* kDaemonStub = R"py(
import http.server, json, re, signal, sys, time, urllib.parse
config_path = sys.argv[sys.argv.index("--config") + 1]
def load():
    return open(config_path).read()
config = load()
if re.search(r"^fail:", config, re.M):
    print("stub daemon: bad config", file=sys.stderr)
    sys.exit(3)
host, port = re.search(r"listen:\s*(\S+)", config).group(1).split(":")
value = lambda: re.search(r"value:\s*(\S+)", config).group(1)
started = time.monotonic()
def reload(signum, frame):
    global config
    config = load()
    print("reloaded", file=sys.stderr)
signal.signal(signal.SIGHUP, reload)
class Handler(http.server.BaseHTTPRequestHandler):
    def reply(self, status, body, ctype="text/plain"):
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
    def do_GET(self):
        if self.path == "/-/ready":
            ready = time.monotonic() - started > 0.5
            self.reply(200 if ready else 503, "ok" if ready else "starting")
        elif self.path == "/metrics":
            self.reply(200, "# TYPE stub_config_value gauge\nstub_config_value " + value() + "\n")
        elif self.path == "/api/v1/state":
            self.reply(200, json.dumps({"probes": ["a b"]}), "application/json")
        elif self.path.startswith("/api/v1/state/"):
            name = urllib.parse.unquote(self.path[len("/api/v1/state/"):])
            self.reply(200, json.dumps({"probe": name}), "application/json")
        else:
            self.reply(404, "no")
http.server.HTTPServer((host, int(port)), Handler).serve_forever()
)py";

std::string write_executable_stub(const TempDir& dir, const std::string& name,
                                  const std::string& python_source) {
  const std::string path =
      dir.write_file(name, "#!/usr/bin/env " + python3() + "\n" + python_source);
  fs::permissions(path, fs::perms::owner_all);
  return path;
}

TEST_CASE("free_port returns a bindable loopback port", "[harness]") {
  const int port = free_port();
  REQUIRE(port > 0);
  REQUIRE(port < 65536);
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  REQUIRE(fd >= 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  CHECK(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  ::close(fd);
}

TEST_CASE("TempDir creates, writes and removes", "[harness]") {
  std::string path;
  {
    TempDir dir;
    path = dir.path();
    REQUIRE(fs::is_directory(path));
    CHECK(dir.file("x.txt") == path + "/x.txt");
    const std::string written = dir.write_file("sub/dir/x.txt", "hello\n");
    CHECK(written == path + "/sub/dir/x.txt");
    CHECK(run_command({"cat", written}).out == "hello\n");
    dir.write_file("sub/dir/x.txt", "replaced");
    CHECK(run_command({"cat", written}).out == "replaced");
    CHECK((fs::status(written).permissions() & fs::perms::all) ==
          (fs::perms::owner_read | fs::perms::owner_write));

    TempDir moved(std::move(dir));
    CHECK(moved.path() == path);
    CHECK(dir.path().empty());  // NOLINT(bugprone-use-after-move): documented moved-from state
  }
  CHECK_FALSE(fs::exists(path));
}

TEST_CASE("run_command captures output and exit status", "[harness]") {
  const CommandResult r = run_command({"sh", "-c", "echo hi; echo oops >&2; exit 3"});
  CHECK(r.exit_code == 3);
  CHECK(r.out == "hi\n");
  CHECK(r.err == "oops\n");
  CHECK_FALSE(r.timed_out);

  const CommandResult killed = run_command({"sh", "-c", "kill -TERM $$"});
  CHECK(killed.exit_code == -SIGTERM);
  CHECK_FALSE(killed.timed_out);
}

TEST_CASE("run_command does not deadlock on large output", "[harness]") {
  // 3 MiB on each stream: far beyond any pipe buffer.
  const CommandResult r = run_command(
      {"sh", "-c", "head -c 3145728 /dev/zero; head -c 3145728 /dev/zero | tr '\\0' e >&2"});
  REQUIRE(r.exit_code == 0);
  CHECK(r.out.size() == 3145728);
  CHECK(r.err.size() == 3145728);
  CHECK(r.err.find_first_not_of('e') == std::string::npos);
}

TEST_CASE("run_command kills a command that outlives its timeout", "[harness]") {
  const auto start = std::chrono::steady_clock::now();
  const CommandResult r = run_command({"sleep", "60"}, 1s);
  CHECK(r.exit_code == -1);
  CHECK(r.timed_out);
  CHECK(std::chrono::steady_clock::now() - start < kGenerous);
}

TEST_CASE("run_command environment", "[harness]") {
  ::setenv("CANARYD_HARNESS_REMOVE_ME", "present", 1);
  ::setenv("http_proxy", "http://127.0.0.1:9", 1);
  const CommandResult r = run_command(
      {"sh", "-c",
       "echo \"[$FOO][${CANARYD_HARNESS_REMOVE_ME-unset}][${http_proxy-unset}][${HOME:+home}]\""},
      10s, {"FOO=bar=baz", "CANARYD_HARNESS_REMOVE_ME"});
  ::unsetenv("CANARYD_HARNESS_REMOVE_ME");
  ::unsetenv("http_proxy");
  CHECK(r.out == "[bar=baz][unset][unset][home]\n");
}

TEST_CASE("run_command reports a missing program", "[harness]") {
  CHECK_THROWS_WITH(run_command({"/nonexistent/canaryd-harness-nope"}),
                    Contains("/nonexistent/canaryd-harness-nope"));
}

TEST_CASE("children inherit no stray descriptors", "[harness]") {
  // Deliberately without O_CLOEXEC, and above 2 even if the runner has stdin closed.
  const int null_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  REQUIRE(null_fd >= 0);
  const int leaky = ::fcntl(null_fd, F_DUPFD, 10);
  ::close(null_fd);
  REQUIRE(leaky >= 10);
  const std::string check = "if [ -e /proc/self/fd/" + std::to_string(leaky) +
                            " ]; then echo leaked; else echo clean; fi; "
                            "[ -t 0 ] && echo tty || head -c 1 | wc -c";
  CHECK(run_command({"sh", "-c", check}).out == "clean\n0\n");
  Process p({"sh", "-c", check});
  CHECK(p.wait_exit(kGenerous) == 0);
  CHECK(p.stdout_text() == "clean\n0\n");
  ::close(leaky);
}

TEST_CASE("Process runs in the background with logs in files", "[harness]") {
  TempDir logs;
  Process p({"sh", "-c", "echo out; echo err >&2; exit 7"}, {}, logs.path());
  CHECK(p.pid() > 0);
  CHECK(p.wait_exit(kGenerous) == 7);
  CHECK_FALSE(p.running());
  CHECK(p.stdout_text() == "out\n");
  CHECK(p.stderr_text() == "err\n");
  CHECK(p.stdout_path().starts_with(logs.path() + "/sh-"));
  CHECK(p.stop() == 7);  // already exited: the recorded status, no signal
  CHECK_THROWS_WITH(p.signal(SIGHUP), Contains("exited with status 7"));
}

TEST_CASE("Process stop, signal and escalation", "[harness]") {
  SECTION("SIGTERM ends a well-behaved child") {
    Process p({"sleep", "60"});
    CHECK(p.running());
    CHECK(p.stop() == -SIGTERM);
    CHECK_FALSE(p.running());
  }
  SECTION("signal() delivers to the child's handler") {
    Process p(
        {"sh", "-c", "trap 'echo got-hup; exit 0' HUP; echo ready; while :; do sleep 0.1; done"});
    REQUIRE(wait_until([&] { return p.stdout_text() == "ready\n"; }));
    p.signal(SIGHUP);
    CHECK(p.wait_exit(kGenerous) == 0);
    CHECK(p.stdout_text() == "ready\ngot-hup\n");
  }
  SECTION("SIGKILL after the grace period if SIGTERM is ignored") {
    Process p({"sh", "-c", "trap '' TERM; echo ready; while :; do sleep 0.1; done"});
    REQUIRE(wait_until([&] { return p.stdout_text() == "ready\n"; }));
    CHECK(p.stop(1s) == -SIGKILL);
  }
  SECTION("children start with default dispositions even if the runner ignores SIGTERM") {
    struct sigaction ignore {};
    struct sigaction previous {};
    ignore.sa_handler = SIG_IGN;
    REQUIRE(::sigaction(SIGTERM, &ignore, &previous) == 0);
    Process p({"sleep", "60"});
    ::sigaction(SIGTERM, &previous, nullptr);
    CHECK(p.stop(5s) == -SIGTERM);
  }
  SECTION("destruction stops the child") {
    pid_t pid = 0;
    {
      Process p({"sleep", "60"});
      pid = p.pid();
      REQUIRE(::kill(pid, 0) == 0);
    }
    CHECK(::kill(pid, 0) != 0);  // reaped, so gone (barring instant PID reuse)
  }
  SECTION("move transfers ownership") {
    Process a({"sleep", "60"});
    const pid_t pid = a.pid();
    Process b(std::move(a));
    CHECK(b.pid() == pid);
    CHECK(a.pid() == -1);  // NOLINT(bugprone-use-after-move): documented moved-from state
    CHECK(a.stop() == 0);
    CHECK(b.running());
  }
  SECTION("a missing program throws") {
    CHECK_THROWS(Process({"/nonexistent/canaryd-harness-nope"}));
  }
}

TEST_CASE("wait_until polls until true or timeout", "[harness]") {
  int calls = 0;
  CHECK(wait_until([&] { return ++calls == 3; }, kGenerous, 1ms));
  CHECK(calls == 3);
  calls = 0;
  CHECK_FALSE(wait_until([&] { return ++calls < 0; }, 100ms, 10ms));
  CHECK(calls >= 2);  // first try and the one at the deadline
}

TEST_CASE("http helpers against python http.server", "[harness]") {
  TempDir root;
  root.write_file("hello.txt", "hello from disk\n");
  const int port = free_port();
  Process server({python3(), "-m", "http.server", "--bind", "127.0.0.1", "--directory", root.path(),
                  std::to_string(port)},
                 {"PYTHONUNBUFFERED=1"});
  REQUIRE(wait_for_port(port));
  const std::string base = "http://127.0.0.1:" + std::to_string(port);

  const HttpResult ok = http_get(base + "/hello.txt");
  CHECK(ok.error.empty());
  CHECK(ok.status == 200);
  CHECK(ok.body == "hello from disk\n");
  CHECK(ok.headers.at("content-length") == "16");

  const HttpResult missing = http_get(base + "/nope");
  CHECK(missing.error.empty());
  CHECK(missing.status == 404);

  // http.server logs each request to stderr, which lands in the log file.
  CHECK(
      wait_until([&] { return server.stderr_text().find("GET /hello.txt") != std::string::npos; }));
  CHECK(server.stop() == -SIGTERM);
}

TEST_CASE("http_post and http_request send bodies and headers", "[harness]") {
  TempDir dir;
  const int port = free_port();
  Process server({python3(), dir.write_file("echo.py", kEchoServer), std::to_string(port)});
  REQUIRE(wait_for_port(port));
  const std::string url = "http://127.0.0.1:" + std::to_string(port) + "/echo";

  const std::string binary("a\0b{\"x\":1}", 10);
  const HttpResult posted = http_post(url, binary);
  CHECK(posted.error.empty());
  CHECK(posted.status == 201);
  CHECK(posted.body == binary);
  CHECK(posted.headers.at("x-method") == "POST");

  const HttpResult empty = http_post(url);
  CHECK(empty.status == 201);
  CHECK(empty.body.empty());

  const HttpResult put = http_request("PUT", url, "{}", {"Content-Type: application/json"}, 10s);
  CHECK(put.status == 201);
  CHECK(put.headers.at("x-method") == "PUT");
  CHECK(put.headers.at("x-got-type") == "application/json");
}

TEST_CASE("http transport failures are reported, never hang", "[harness]") {
  SECTION("connection refused") {
    const int port = free_port();  // nobody listens
    CHECK_FALSE(wait_for_port(port, 200ms));
    const HttpResult r = http_get("http://127.0.0.1:" + std::to_string(port) + "/");
    CHECK_FALSE(r.error.empty());
    CHECK(r.status == 0);
  }
  SECTION("a listener that never answers times out") {
    // The kernel completes the handshake from the backlog, but nobody ever accepts or answers.
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(fd >= 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    REQUIRE(::listen(fd, 16) == 0);
    socklen_t len = sizeof addr;
    REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
    const int port = ntohs(addr.sin_port);
    CHECK(wait_for_port(port));

    const auto start = std::chrono::steady_clock::now();
    const HttpResult r = http_get("http://127.0.0.1:" + std::to_string(port) + "/", 500ms);
    CHECK_THAT(r.error, Contains("imeout") || Contains("timed out"));
    CHECK(r.status == 0);
    CHECK(std::chrono::steady_clock::now() - start < kGenerous);
    ::close(fd);
  }
}

constexpr const char* kExposition =
    R"exp(# HELP canaryd_probe_success Whether the last run succeeded.
# TYPE canaryd_probe_success gauge
canaryd_probe_success{probe="api",target="http://x/?q=\"b\""} 1

canaryd_probe_success{probe="db"} 0
# just a comment
canaryd_probe_duration_seconds_bucket{probe="api",le="0.5"} 3
canaryd_probe_duration_seconds_bucket{probe="api",le="+Inf"} 7
canaryd_probe_duration_seconds_sum{probe="api"} 1.25e-1
canaryd_probe_duration_seconds_count{probe="api"} 7
escaped{path="C:\\dir\\",msg="line1\nline2",trailing="comma",} -3.5 1700000000000
up_inf +Inf
down_inf -Inf
not_a_number NaN
	no_labels   42   
spaced { a = "1" , b="two words" } 5
ns:recording_rule:rate5m{job="x"} 0.25
exemplar_total{a="1"} 3 # {trace_id="abc"} 1.0
windows_line_end 9
# EOF
)exp";

TEST_CASE("parse_exposition parses every sample", "[harness][metrics]") {
  const std::vector<Sample> samples = parse_exposition(kExposition);
  REQUIRE(samples.size() == 15);
  CHECK(samples[0].name == "canaryd_probe_success");
  CHECK(samples[0].labels.at("target") == "http://x/?q=\"b\"");
  CHECK(samples[0].value == 1);
  CHECK(samples[6].labels.at("path") == "C:\\dir\\");
  CHECK(samples[6].labels.at("msg") == "line1\nline2");
  CHECK(samples[6].labels.size() == 3);
  CHECK(samples[10].name == "no_labels");
  CHECK(samples[10].labels.empty());
  CHECK(samples[11].labels.at("b") == "two words");
  CHECK(samples[12].name == "ns:recording_rule:rate5m");
  CHECK(samples[13].value == 3);

  const std::vector<Sample> crlf = parse_exposition("a 1\r\nb{x=\"y\"} 2\r\n");
  REQUIRE(crlf.size() == 2);
  CHECK(crlf[1].value == 2);
  CHECK(parse_exposition("").empty());
  CHECK(parse_exposition("\n\n# only comments\n").empty());
}

TEST_CASE("metric_value matches name and label subset", "[harness][metrics]") {
  CHECK(metric_value(kExposition, "canaryd_probe_success", {{"probe", "api"}}) == 1);
  CHECK(metric_value(kExposition, "canaryd_probe_success", {{"probe", "db"}}) == 0);
  CHECK(metric_value(kExposition, "canaryd_probe_success") == 1);  // first match
  CHECK(metric_value(kExposition, "canaryd_probe_success",
                     {{"probe", "api"}, {"target", "http://x/?q=\"b\""}}) == 1);
  CHECK_FALSE(metric_value(kExposition, "canaryd_probe_success", {{"probe", "web"}}));
  CHECK_FALSE(metric_value(kExposition, "canaryd_probe_success", {{"missing", ""}}));
  CHECK_FALSE(metric_value(kExposition, "canaryd_probe"));  // no prefix matching

  CHECK(metric_value(kExposition, "canaryd_probe_duration_seconds_bucket", {{"le", "0.5"}}) == 3);
  CHECK(metric_value(kExposition, "canaryd_probe_duration_seconds_bucket", {{"le", "+Inf"}}) == 7);
  CHECK(metric_value(kExposition, "canaryd_probe_duration_seconds_sum") == 0.125);
  CHECK(metric_value(kExposition, "escaped", {{"msg", "line1\nline2"}}) == -3.5);

  const auto up = metric_value(kExposition, "up_inf");
  REQUIRE(up);
  CHECK((std::isinf(*up) && *up > 0));
  const auto down = metric_value(kExposition, "down_inf");
  REQUIRE(down);
  CHECK((std::isinf(*down) && *down < 0));
  const auto nan = metric_value(kExposition, "not_a_number");
  REQUIRE(nan);
  CHECK(std::isnan(*nan));
}

TEST_CASE("malformed exposition is an error naming the line", "[harness][metrics]") {
  CHECK_THROWS_WITH(parse_exposition("ok 1\nfoo{a=\"1\" 2\n"), Contains("line 2"));
  for (const char* bad : {"foo{a=1} 2", "foo 1 2 3", "foo{a=\"\\x\"} 1", "foo", "foo{a=\"1\"}",
                          "foo{a=\"1\",a=\"2\"} 1", "1foo 2", "foo{a=\"unterminated} 1",
                          "foo 1.2.3", "foo{=\"1\"} 1", "foo{a=\"1\"}2"}) {
    INFO(bad);
    CHECK_THROWS_AS(parse_exposition(bad), std::invalid_argument);
  }
}

TEST_CASE("FakePlatform waits for the ready file (stand-in script)", "[harness]") {
  TempDir dir;
  const std::string stub = dir.write_file("platform_stub.py", kPlatformStub);

  SECTION("ready") {
    FakePlatform::Options opts;
    opts.script = stub;
    opts.tls = {{"good", "g.pem", "g.key"}, {"expired", "e.pem", "e.key"}};
    FakePlatform platform(opts);
    CHECK(platform.http_port() > 0);
    CHECK(platform.tls_port("good") > 0);
    CHECK(platform.tls_port("expired") != platform.tls_port("good"));
    CHECK_THROWS_AS(platform.tls_port("nope"), std::out_of_range);
    CHECK(platform.url("/x?y=1") ==
          "http://127.0.0.1:" + std::to_string(platform.http_port()) + "/x?y=1");
    CHECK(platform.url("x") == platform.url("/x"));
    CHECK(http_get(platform.url("/")).status == 200);
    CHECK(platform.process().running());
  }
  SECTION("early exit throws with stderr") {
    FakePlatform::Options opts;
    opts.script = stub;
    opts.extra_args = {"--fail"};
    CHECK_THROWS_WITH(FakePlatform(opts), Contains("refusing to start") && Contains("status 2"));
  }
}

TEST_CASE("Daemon starts, serves and reloads (stand-in binary)", "[harness]") {
  TempDir dir;
  const std::string stub = write_executable_stub(dir, "canaryd_stub", kDaemonStub);

  SECTION("ready, metrics, state, reload") {
    Daemon daemon("listen: {{listen}}\nvalue: 1\nsecrets: {{dir}}/secret\n", {"PYTHONUNBUFFERED=1"},
                  stub);
    CHECK(daemon.base_url() == "http://127.0.0.1:" + std::to_string(daemon.port()));
    CHECK(run_command({"cat", daemon.config_path()}).out ==
          "listen: 127.0.0.1:" + std::to_string(daemon.port()) +
              "\nvalue: 1\nsecrets: " + daemon.dir().path() + "/secret\n");
    CHECK(metric_value(daemon.metrics(), "stub_config_value") == 1);
    CHECK(daemon.state()["probes"][0] == "a b");
    CHECK(daemon.state("a b")["probe"] == "a b");

    daemon.rewrite_config("listen: {{listen}}\nvalue: 2\n");
    daemon.process().signal(SIGHUP);
    CHECK(wait_until([&] { return metric_value(daemon.metrics(), "stub_config_value") == 2; }));
    CHECK_THAT(daemon.process().stderr_text(), Contains("reloaded"));
  }
  SECTION("early exit throws with stderr") {
    CHECK_THROWS_WITH(Daemon("listen: {{listen}}\nfail: yes\n", {}, stub),
                      Contains("bad config") && Contains("status 3"));
  }
}

// The real fixtures are written alongside this harness; exercise them when they exist.
TEST_CASE("real fixtures, when present", "[harness][fixtures]") {
  const std::string platform_script = source_dir() + "/tests/fixtures/fake_platform.py";
  const std::string certs_script = source_dir() + "/tests/fixtures/make_certs.sh";
  if (!fs::exists(platform_script) || !fs::exists(certs_script)) {
    WARN("skipped: " << platform_script << " or " << certs_script << " does not exist yet");
    return;
  }
  TempDir dir;
  const std::string certs = make_certs(dir);
  for (const char* name : {"ca.pem", "good.pem", "good.key", "wronghost.pem", "wronghost.key",
                           "expired.pem", "expired.key"}) {
    INFO(name);
    CHECK(fs::exists(certs + "/" + name));
  }
  FakePlatform::Options opts;
  opts.tls = {{"good", certs + "/good.pem", certs + "/good.key"}};
  FakePlatform platform(opts);
  const HttpResult health = http_get(platform.url("/health"));
  CHECK(health.status == 200);
  CHECK(nlohmann::json::parse(health.body)["status"] == "healthy");
  CHECK(wait_for_port(platform.tls_port("good")));
  CHECK(platform.process().stop() == 0);  // the fixture exits 0 on SIGTERM
}

}  // namespace
}  // namespace canaryd::test
