#include "tests/support/harness.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <catch2/catch.hpp>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <mutex>
#include <random>
#include <sstream>
#include <stdexcept>
#include <thread>
#include <utility>

namespace canaryd::test {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

[[noreturn]] void throw_errno(const std::string& what) {
  throw std::runtime_error(what + ": " + std::strerror(errno));
}

// Closes a descriptor on scope exit so error paths cannot leak it into later children.
class UniqueFd {
 public:
  explicit UniqueFd(int fd = -1) : fd_(fd) {}
  ~UniqueFd() {
    if (fd_ >= 0) ::close(fd_);
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

std::string tail(const std::string& text, size_t max_bytes) {
  if (text.size() <= max_bytes) return text;
  return "[...]" + text.substr(text.size() - max_bytes);
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return "";
  std::ostringstream buf;
  buf << in.rdbuf();
  return buf.str();
}

// Reads a whole capture file from offset 0; pread leaves the shared file offset alone.
std::string read_fd(int fd) {
  std::string out;
  char buf[65536];
  off_t offset = 0;
  for (;;) {
    ssize_t n = ::pread(fd, buf, sizeof buf, offset);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw_errno("read captured output");
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
    offset += n;
  }
  return out;
}

// Exit status, or -signal so callers can tell "exited 15" from "killed by SIGTERM".
int decode_status(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return -WTERMSIG(status);
  return -1;
}

bool is_proxy_variable(std::string_view entry) {
  std::string key(entry.substr(0, entry.find('=')));
  std::transform(key.begin(), key.end(), key.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return key == "http_proxy" || key == "https_proxy" || key == "all_proxy" || key == "ftp_proxy";
}

// The test's environment without proxy settings (tests only talk to loopback and a proxy
// would silently change what is being tested), then extra_env: "K=V" sets, "K" removes.
std::vector<std::string> child_environment(const std::vector<std::string>& extra_env) {
  std::vector<std::string> env;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    if (!is_proxy_variable(*e)) env.emplace_back(*e);
  }
  for (const std::string& entry : extra_env) {
    const std::string key = entry.substr(0, entry.find('='));
    std::erase_if(env, [&](const std::string& existing) {
      return existing.compare(0, key.size(), key) == 0 &&
             (existing.size() == key.size() || existing[key.size()] == '=');
    });
    if (entry.find('=') != std::string::npos) env.push_back(entry);
  }
  return env;
}

std::vector<char*> c_strings(const std::vector<std::string>& strings) {
  std::vector<char*> out;
  out.reserve(strings.size() + 1);
  for (const std::string& s : strings) out.push_back(const_cast<char*>(s.c_str()));
  out.push_back(nullptr);
  return out;
}

// posix_spawn (no fork of a possibly multi-threaded test binary) with stdout/stderr on the
// given descriptors, stdin on /dev/null so no child can block on the terminal, every other
// descriptor closed, an empty signal mask and default dispositions (an ignored SIGTERM or
// SIGPIPE in the test runner must not leak into the daemon under test).
pid_t spawn(const std::vector<std::string>& argv, const std::vector<std::string>& extra_env,
            int out_fd, int err_fd) {
  if (argv.empty() || argv[0].empty()) throw std::invalid_argument("spawn: empty argv");
  const std::vector<std::string> env = child_environment(extra_env);
  std::vector<char*> c_argv = c_strings(argv);
  std::vector<char*> c_env = c_strings(env);

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  // dup2 first: if the test runner had fd 0 closed, a capture file could sit on fd 0.
  posix_spawn_file_actions_adddup2(&actions, out_fd, STDOUT_FILENO);
  posix_spawn_file_actions_adddup2(&actions, err_fd, STDERR_FILENO);
  posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 34))
  // Our own descriptors are O_CLOEXEC, but libraries (and other tests) may not be careful.
  posix_spawn_file_actions_addclosefrom_np(&actions, STDERR_FILENO + 1);
#endif
  sigset_t empty_set;
  sigset_t all_signals;
  sigemptyset(&empty_set);
  sigfillset(&all_signals);
  posix_spawnattr_setsigmask(&attr, &empty_set);
  posix_spawnattr_setsigdefault(&attr, &all_signals);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);

  pid_t pid = -1;
  const int rc = posix_spawnp(&pid, argv[0].c_str(), &actions, &attr, c_argv.data(), c_env.data());
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) throw std::runtime_error("cannot start " + argv[0] + ": " + std::strerror(rc));
  return pid;
}

// Sleep schedule for polling a child: quick at first so short commands return promptly,
// then capped so a long wait does not spin.
class Backoff {
 public:
  void sleep_until_at_most(Clock::time_point deadline) {
    const auto now = Clock::now();
    if (now >= deadline) return;
    std::this_thread::sleep_for(std::min<Clock::duration>(delay_, deadline - now));
    delay_ = std::min(delay_ * 2, milliseconds(20));
  }

 private:
  milliseconds delay_{1};
};

std::atomic<unsigned> g_process_counter{0};

std::string base_name(const std::string& path) {
  std::string name = fs::path(path).filename().string();
  return name.empty() ? "process" : name;
}

int open_log(const std::string& path) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) throw_errno("open " + path);
  return fd;
}

void curl_init_once() {
  static std::once_flag once;
  std::call_once(once, [] {
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
      throw std::runtime_error("curl_global_init failed");
    }
  });
}

size_t append_body(char* data, size_t size, size_t count, void* user) {
  static_cast<std::string*>(user)->append(data, size * count);
  return size * count;
}

size_t collect_header(char* data, size_t size, size_t count, void* user) {
  auto* headers = static_cast<std::map<std::string, std::string>*>(user);
  std::string_view line(data, size * count);
  // A new status line starts a new header block (e.g. after "100 Continue"); keep only the
  // last block, which belongs to the final response.
  if (line.starts_with("HTTP/")) {
    headers->clear();
    return size * count;
  }
  const size_t colon = line.find(':');
  if (colon == std::string_view::npos) return size * count;
  std::string name(line.substr(0, colon));
  std::transform(name.begin(), name.end(), name.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  std::string_view value = line.substr(colon + 1);
  while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
  while (!value.empty() && std::isspace(static_cast<unsigned char>(value.back()))) {
    value.remove_suffix(1);
  }
  std::string& slot = (*headers)[name];
  if (!slot.empty()) slot += ", ";
  slot += value;
  return size * count;
}

// ---- Prometheus text format -------------------------------------------------------------

class LineParser {
 public:
  LineParser(std::string_view line, size_t line_no) : line_(line), line_no_(line_no) {}

  // Appends the sample on this line, if any.
  void parse(std::vector<Sample>& out) {
    skip_space();
    if (at_end() || peek() == '#') return;
    Sample sample;
    sample.name = name(/*allow_colon=*/true);
    if (sample.name.empty()) fail("expected a metric name");
    size_t before = pos_;
    skip_space();
    if (!at_end() && peek() == '{') {
      ++pos_;
      labels(sample.labels);
      before = pos_;
      skip_space();
    }
    if (pos_ == before) fail("expected whitespace before the value");
    sample.value = value(token());
    skip_space();
    if (!at_end() && peek() != '#') {
      // Optional millisecond timestamp.
      const std::string_view ts = token();
      long long unused = 0;
      const char* begin = ts.data() + (ts.starts_with('-') ? 1 : 0);
      auto [ptr, ec] = std::from_chars(begin, ts.data() + ts.size(), unused);
      if (ec != std::errc() || ptr != ts.data() + ts.size()) fail("bad timestamp");
      skip_space();
    }
    // Whatever follows '#' is an OpenMetrics exemplar, not part of the sample.
    if (!at_end() && peek() != '#') fail("unexpected text after the value");
    out.push_back(std::move(sample));
  }

 private:
  static bool is_space(char c) { return c == ' ' || c == '\t'; }
  bool at_end() const { return pos_ >= line_.size(); }
  char peek() const { return line_[pos_]; }
  void skip_space() {
    while (!at_end() && is_space(peek())) ++pos_;
  }

  [[noreturn]] void fail(const std::string& why) const {
    throw std::invalid_argument("exposition line " + std::to_string(line_no_) + ": " + why + ": " +
                                std::string(line_));
  }

  std::string name(bool allow_colon) {
    const size_t start = pos_;
    while (!at_end()) {
      const char c = peek();
      const bool alpha =
          (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (allow_colon && c == ':');
      const bool digit = c >= '0' && c <= '9';
      if (!(alpha || (digit && pos_ > start))) break;
      ++pos_;
    }
    return std::string(line_.substr(start, pos_ - start));
  }

  void labels(std::map<std::string, std::string>& out) {
    for (;;) {
      skip_space();
      if (at_end()) fail("unterminated label set");
      if (peek() == '}') {
        ++pos_;
        return;
      }
      std::string label = name(/*allow_colon=*/false);
      if (label.empty()) fail("expected a label name");
      skip_space();
      if (at_end() || peek() != '=') fail("expected '=' after label " + label);
      ++pos_;
      skip_space();
      if (at_end() || peek() != '"') fail("expected '\"' to open the value of label " + label);
      ++pos_;
      std::string value = quoted();
      if (!out.emplace(label, std::move(value)).second) fail("duplicate label " + label);
      skip_space();
      if (at_end()) fail("unterminated label set");
      if (peek() == ',') {
        ++pos_;  // a trailing comma before '}' is allowed by the format
      } else if (peek() != '}') {
        fail("expected ',' or '}' after label " + label);
      }
    }
  }

  // The rest of a label value after the opening quote, unescaped.
  std::string quoted() {
    std::string out;
    for (;;) {
      if (at_end()) fail("unterminated label value");
      const char c = line_[pos_++];
      if (c == '"') return out;
      if (c != '\\') {
        out += c;
        continue;
      }
      if (at_end()) fail("dangling escape in label value");
      const char escaped = line_[pos_++];
      switch (escaped) {
        case 'n':
          out += '\n';
          break;
        case '\\':
        case '"':
          out += escaped;
          break;
        default:
          fail(std::string("invalid escape \\") + escaped + " in label value");
      }
    }
  }

  std::string_view token() {
    const size_t start = pos_;
    while (!at_end() && !is_space(peek())) ++pos_;
    return line_.substr(start, pos_ - start);
  }

  double value(std::string_view text) const {
    if (text.empty()) fail("missing value");
    if (text == "+Inf" || text == "Inf") return std::numeric_limits<double>::infinity();
    if (text == "-Inf") return -std::numeric_limits<double>::infinity();
    if (text == "NaN") return std::numeric_limits<double>::quiet_NaN();
    std::string_view digits = text.starts_with('+') ? text.substr(1) : text;
    double result = 0;
    // from_chars, unlike strtod, ignores the locale's decimal separator.
    auto [ptr, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), result);
    if (ec != std::errc() || ptr != digits.data() + digits.size()) {
      fail("bad value '" + std::string(text) + "'");
    }
    return result;
  }

  std::string_view line_;
  size_t line_no_;
  size_t pos_ = 0;
};

std::string percent_encode(std::string_view text) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (const unsigned char c : text) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 0xF];
    }
  }
  return out;
}

void replace_all(std::string& text, std::string_view from, std::string_view to) {
  for (size_t pos = text.find(from); pos != std::string::npos;
       pos = text.find(from, pos + to.size())) {
    text.replace(pos, from.size(), to);
  }
}

constexpr milliseconds kStartupTimeout = std::chrono::seconds(30);

}  // namespace

// ---- ports, directories ------------------------------------------------------------------

int free_port() {
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (fd.get() < 0) throw_errno("socket");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    throw_errno("bind 127.0.0.1:0");
  }
  socklen_t len = sizeof addr;
  if (::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    throw_errno("getsockname");
  }
  return ntohs(addr.sin_port);
}

TempDir::TempDir() {
  std::error_code ec;
  fs::path base = fs::temp_directory_path(ec);
  if (ec) base = "/tmp";
  std::string templ = (base / "canaryd-test-XXXXXX").string();
  if (::mkdtemp(templ.data()) == nullptr) throw_errno("mkdtemp " + templ);
  path_ = std::move(templ);
}

TempDir::~TempDir() {
  if (path_.empty() || std::getenv("CANARYD_TEST_KEEP_TMP") != nullptr) return;
  std::error_code ec;  // best effort: a destructor must not throw
  fs::remove_all(path_, ec);
}

TempDir::TempDir(TempDir&& other) noexcept : path_(std::exchange(other.path_, {})) {}

TempDir& TempDir::operator=(TempDir&& other) noexcept {
  if (this != &other) {
    TempDir old(std::move(*this));
    path_ = std::exchange(other.path_, {});
  }
  return *this;
}

std::string TempDir::file(std::string_view name) const { return path_ + "/" + std::string(name); }

std::string TempDir::write_file(std::string_view name, std::string_view content) const {
  const std::string target = file(name);
  const fs::path parent = fs::path(target).parent_path();
  fs::create_directories(parent);
  std::string temp = (parent / ".write-XXXXXX").string();
  UniqueFd fd(::mkostemp(temp.data(), O_CLOEXEC));
  if (fd.get() < 0) throw_errno("mkostemp " + temp);
  const char* data = content.data();
  size_t left = content.size();
  while (left > 0) {
    const ssize_t n = ::write(fd.get(), data, left);
    if (n < 0) {
      if (errno == EINTR) continue;
      const int saved = errno;
      ::unlink(temp.c_str());
      errno = saved;
      throw_errno("write " + temp);
    }
    data += n;
    left -= static_cast<size_t>(n);
  }
  if (::rename(temp.c_str(), target.c_str()) != 0) {
    const int saved = errno;
    ::unlink(temp.c_str());
    errno = saved;
    throw_errno("rename to " + target);
  }
  return target;
}

// ---- processes ---------------------------------------------------------------------------

CommandResult run_command(const std::vector<std::string>& argv, milliseconds timeout,
                          const std::vector<std::string>& extra_env) {
  UniqueFd out(::memfd_create("canaryd-test-stdout", MFD_CLOEXEC));
  UniqueFd err(::memfd_create("canaryd-test-stderr", MFD_CLOEXEC));
  if (out.get() < 0 || err.get() < 0) throw_errno("memfd_create");
  const pid_t pid = spawn(argv, extra_env, out.get(), err.get());

  CommandResult result;
  const auto deadline = Clock::now() + timeout;
  Backoff backoff;
  int status = 0;
  for (;;) {
    const pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid) break;
    if (r < 0) {
      if (errno == EINTR) continue;
      throw_errno("waitpid " + std::to_string(pid));
    }
    if (Clock::now() >= deadline) {
      ::kill(pid, SIGKILL);
      while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
      }
      result.timed_out = true;
      break;
    }
    backoff.sleep_until_at_most(deadline);
  }
  result.exit_code = result.timed_out ? -1 : decode_status(status);
  result.out = read_fd(out.get());
  result.err = read_fd(err.get());
  return result;
}

Process::Process(std::vector<std::string> argv, std::vector<std::string> extra_env,
                 std::string log_dir) {
  if (argv.empty()) throw std::invalid_argument("Process: empty argv");
  name_ = base_name(argv[0]);
  if (log_dir.empty()) {
    own_log_dir_ = std::make_unique<TempDir>();
    log_dir = own_log_dir_->path();
  }
  // A counter rather than the PID in the name: the files must exist before the child does,
  // and several processes may share one log directory.
  const std::string stem =
      log_dir + "/" + name_ + "-" + std::to_string(g_process_counter.fetch_add(1));
  stdout_path_ = stem + ".stdout.log";
  stderr_path_ = stem + ".stderr.log";
  UniqueFd out(open_log(stdout_path_));
  UniqueFd err(open_log(stderr_path_));
  pid_ = spawn(argv, extra_env, out.get(), err.get());
}

Process::~Process() {
  try {
    stop();
  } catch (...) {  // a destructor must not throw; stop() only throws on impossible errors
  }
}

Process::Process(Process&& other) noexcept
    : name_(std::move(other.name_)),
      own_log_dir_(std::move(other.own_log_dir_)),
      stdout_path_(std::move(other.stdout_path_)),
      stderr_path_(std::move(other.stderr_path_)),
      pid_(std::exchange(other.pid_, -1)),
      exit_status_(std::exchange(other.exit_status_, std::nullopt)) {}

Process& Process::operator=(Process&& other) noexcept {
  if (this != &other) {
    Process old(std::move(*this));  // stops the process we were holding
    name_ = std::move(other.name_);
    own_log_dir_ = std::move(other.own_log_dir_);
    stdout_path_ = std::move(other.stdout_path_);
    stderr_path_ = std::move(other.stderr_path_);
    pid_ = std::exchange(other.pid_, -1);
    exit_status_ = std::exchange(other.exit_status_, std::nullopt);
  }
  return *this;
}

bool Process::reap(bool block) {
  if (pid_ < 0 || exit_status_) return true;
  for (;;) {
    int status = 0;
    const pid_t r = ::waitpid(pid_, &status, block ? 0 : WNOHANG);
    if (r == pid_) {
      exit_status_ = decode_status(status);
      return true;
    }
    if (r == 0) return false;
    if (errno == EINTR) continue;
    // ECHILD: someone else reaped it (e.g. SIGCHLD set to SIG_IGN). The status is lost; record
    // the process as gone so we never signal a PID that may have been reused.
    exit_status_ = -1;
    return true;
  }
}

bool Process::running() { return !reap(/*block=*/false); }

std::optional<int> Process::wait_exit(milliseconds timeout) {
  if (pid_ < 0) return std::nullopt;
  const auto deadline = Clock::now() + timeout;
  Backoff backoff;
  for (;;) {
    if (reap(/*block=*/false)) return exit_status_;
    if (Clock::now() >= deadline) return std::nullopt;
    backoff.sleep_until_at_most(deadline);
  }
}

int Process::stop(milliseconds grace) {
  if (pid_ < 0) return 0;
  if (reap(/*block=*/false)) return *exit_status_;
  ::kill(pid_, SIGTERM);
  if (std::optional<int> status = wait_exit(grace)) return *status;
  ::kill(pid_, SIGKILL);
  reap(/*block=*/true);
  return *exit_status_;
}

void Process::signal(int sig) {
  if (pid_ < 0) throw std::runtime_error("signal: Process has no child (moved from)");
  if (exit_status_) {
    throw std::runtime_error("signal " + std::to_string(sig) + ": " + describe());
  }
  // Not reaped yet, so the PID is still ours even if the child is a zombie.
  if (::kill(pid_, sig) != 0) throw_errno("kill " + std::to_string(pid_));
}

std::string Process::stdout_text() const { return read_file(stdout_path_); }
std::string Process::stderr_text() const { return read_file(stderr_path_); }

std::string Process::describe() {
  std::string text = name_ + " (pid " + std::to_string(pid_) + ")";
  if (running()) {
    text += " still running";
  } else if (exit_status_) {
    text += " exited with status " + std::to_string(*exit_status_);
  }
  return text + "; stderr:\n" + tail(stderr_text(), 8192);
}

// ---- waiting -----------------------------------------------------------------------------

bool wait_until(const std::function<bool()>& cond, milliseconds timeout, milliseconds step) {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    if (cond()) return true;
    const auto now = Clock::now();
    if (now >= deadline) return false;
    std::this_thread::sleep_for(std::min<Clock::duration>(step, deadline - now));
  }
}

bool wait_for_port(int port, milliseconds timeout) {
  return wait_until(
      [port] {
        // Non-blocking connect with a bounded poll: a listener with a full accept queue drops
        // SYNs, and a blocking connect would then outlive our timeout.
        UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
        if (fd.get() < 0) return false;
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        addr.sin_port = htons(static_cast<uint16_t>(port));
        if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
          return true;
        }
        if (errno != EINPROGRESS) return false;
        pollfd pfd{fd.get(), POLLOUT, 0};
        if (::poll(&pfd, 1, 1000) != 1) return false;
        int error = 0;
        socklen_t len = sizeof error;
        return ::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &error, &len) == 0 && error == 0;
      },
      timeout);
}

// ---- HTTP --------------------------------------------------------------------------------

HttpResult http_request(const std::string& method, const std::string& url, const std::string& body,
                        const std::vector<std::string>& headers, milliseconds timeout) {
  curl_init_once();
  HttpResult result;
  // Declared before the handle so it outlives curl_easy_cleanup.
  char error_buffer[CURL_ERROR_SIZE] = {};
  std::unique_ptr<CURL, decltype(&curl_easy_cleanup)> curl(curl_easy_init(), curl_easy_cleanup);
  if (!curl) {
    result.error = "curl_easy_init failed";
    return result;
  }
  curl_slist* header_list = nullptr;
  for (const std::string& h : headers) header_list = curl_slist_append(header_list, h.c_str());
  std::unique_ptr<curl_slist, decltype(&curl_slist_free_all)> header_guard(header_list,
                                                                           curl_slist_free_all);
  // curl treats 0 as "no timeout", which must never happen here.
  const long timeout_ms = std::max<long>(1, static_cast<long>(timeout.count()));
  CURL* h = curl.get();
  curl_easy_setopt(h, CURLOPT_URL, url.c_str());
  // Signals would interrupt other tests' waits; timeouts still hold for IP-literal URLs.
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, timeout_ms);
  curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, timeout_ms);
  curl_easy_setopt(h, CURLOPT_PROXY, "");  // ignore *_proxy variables: loopback only
  curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(h, CURLOPT_ERRORBUFFER, error_buffer);
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, append_body);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, &result.body);
  curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, collect_header);
  curl_easy_setopt(h, CURLOPT_HEADERDATA, &result.headers);
  if (header_list != nullptr) curl_easy_setopt(h, CURLOPT_HTTPHEADER, header_list);
  if (method == "POST" || !body.empty()) {
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, static_cast<long>(body.size()));
    curl_easy_setopt(h, CURLOPT_COPYPOSTFIELDS, body.c_str());
  }
  if (method == "HEAD") {
    curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
  } else if (method != "GET" && method != "POST") {
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method.c_str());
  }
  const CURLcode rc = curl_easy_perform(h);
  if (rc != CURLE_OK) {
    result.error = std::string(curl_easy_strerror(rc));
    if (error_buffer[0] != '\0') result.error += std::string(": ") + error_buffer;
    result.status = 0;
    result.body.clear();
    return result;
  }
  curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &result.status);
  return result;
}

HttpResult http_get(const std::string& url, milliseconds timeout) {
  return http_request("GET", url, "", {}, timeout);
}

HttpResult http_post(const std::string& url, const std::string& body, milliseconds timeout) {
  return http_request("POST", url, body, {}, timeout);
}

// ---- Prometheus --------------------------------------------------------------------------

std::vector<Sample> parse_exposition(const std::string& exposition) {
  std::vector<Sample> samples;
  std::string_view rest(exposition);
  size_t line_no = 0;
  while (!rest.empty()) {
    const size_t end = rest.find('\n');
    std::string_view line = rest.substr(0, end);
    rest = end == std::string_view::npos ? std::string_view() : rest.substr(end + 1);
    if (line.ends_with('\r')) line.remove_suffix(1);
    LineParser(line, ++line_no).parse(samples);
  }
  return samples;
}

double metric_sum(const std::string& exposition, const std::string& name,
                  const std::map<std::string, std::string>& labels) {
  double sum = 0;
  for (const auto& sample : parse_exposition(exposition)) {
    if (sample.name != name) continue;
    bool all = true;
    for (const auto& [k, v] : labels) {
      auto it = sample.labels.find(k);
      all = all && it != sample.labels.end() && it->second == v;
    }
    if (all) sum += sample.value;
  }
  return sum;
}

std::optional<double> metric_value(const std::string& exposition, const std::string& name,
                                   const std::map<std::string, std::string>& labels) {
  for (const Sample& sample : parse_exposition(exposition)) {
    if (sample.name != name) continue;
    const bool all_match = std::all_of(labels.begin(), labels.end(), [&](const auto& want) {
      auto it = sample.labels.find(want.first);
      return it != sample.labels.end() && it->second == want.second;
    });
    if (all_match) return sample.value;
  }
  return std::nullopt;
}

// ---- paths -------------------------------------------------------------------------------

std::string canaryd_bin() {
#ifdef CANARYD_BIN
  return CANARYD_BIN;
#else
  if (const char* env = std::getenv("CANARYD_BIN")) return env;
  return source_dir() + "/build/canaryd";
#endif
}

std::string source_dir() {
#ifdef CANARYD_SOURCE_DIR
  return CANARYD_SOURCE_DIR;
#else
  if (const char* env = std::getenv("CANARYD_SOURCE_DIR")) return env;
  // This file is <root>/tests/support/harness.cc; only trustworthy if compiled by absolute path.
  const fs::path here(__FILE__);
  if (here.is_absolute()) return here.parent_path().parent_path().parent_path().string();
  return fs::current_path().string();
#endif
}

std::string python3() {
#ifdef PYTHON3
  return PYTHON3;
#else
  if (const char* env = std::getenv("PYTHON3")) return env;
  return "python3";
#endif
}

// ---- fixtures ----------------------------------------------------------------------------

namespace {

std::vector<std::string> fake_platform_argv(const TempDir& dir, const FakePlatform::Options& opts) {
  const std::string script =
      opts.script.empty() ? source_dir() + "/tests/fixtures/fake_platform.py" : opts.script;
  std::vector<std::string> argv = {python3(), script,         "--port",
                                   "0",       "--ready-file", dir.file("ready.json")};
  for (const auto& [name, cert, key] : opts.tls) {
    argv.push_back("--tls");
    argv.push_back(name + ":" + cert + ":" + key);
  }
  argv.insert(argv.end(), opts.extra_args.begin(), opts.extra_args.end());
  return argv;
}

std::vector<std::string> fake_platform_env(const FakePlatform::Options& opts) {
  // Unbuffered so the logs are current when a test reads them; no bytecode in the source tree.
  std::vector<std::string> env = {"PYTHONUNBUFFERED=1", "PYTHONDONTWRITEBYTECODE=1"};
  env.insert(env.end(), opts.extra_env.begin(), opts.extra_env.end());
  return env;
}

}  // namespace

FakePlatform::FakePlatform(Options opts)
    : process_(fake_platform_argv(dir_, opts), fake_platform_env(opts), dir_.path()) {
  const std::string ready_file = dir_.file("ready.json");
  const auto deadline = Clock::now() + kStartupTimeout;
  for (;;) {
    // The fixture writes the file atomically, but a parse failure is retried anyway rather
    // than trusting that.
    const std::string text = read_file(ready_file);
    if (!text.empty()) {
      const nlohmann::json ready = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
      if (ready.is_object() && ready.contains("http")) {
        http_port_ = ready["http"].get<int>();
        if (ready.contains("tls")) {
          for (const auto& [name, port] : ready["tls"].items()) tls_ports_[name] = port.get<int>();
        }
        for (const auto& entry : opts.tls) {
          if (!tls_ports_.contains(std::get<0>(entry))) {
            throw std::runtime_error("fake platform ready file lacks TLS listener " +
                                     std::get<0>(entry) + ": " + text);
          }
        }
        return;
      }
    }
    if (!process_.running()) {
      throw std::runtime_error("fake platform exited before ready: " + process_.describe());
    }
    if (Clock::now() >= deadline) {
      throw std::runtime_error("fake platform not ready after " +
                               std::to_string(kStartupTimeout.count()) +
                               " ms: " + process_.describe());
    }
    std::this_thread::sleep_for(milliseconds(50));
  }
}

int FakePlatform::tls_port(const std::string& name) const {
  auto it = tls_ports_.find(name);
  if (it == tls_ports_.end()) throw std::out_of_range("fake platform has no TLS listener " + name);
  return it->second;
}

std::string FakePlatform::url(std::string_view path_and_query) const {
  std::string url = "http://127.0.0.1:" + std::to_string(http_port_);
  if (!path_and_query.starts_with('/')) url += '/';
  return url + std::string(path_and_query);
}

FakePlatform::Options tls_platform_options(const std::string& certs_dir) {
  FakePlatform::Options o;
  for (const char* name : {"good", "wronghost", "expired"})
    o.tls.emplace_back(name, certs_dir + "/" + name + ".pem", certs_dir + "/" + name + ".key");
  return o;
}

std::string random_token(size_t n) {
  static const char kChars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  std::random_device rd;
  std::mt19937_64 gen(rd());
  std::uniform_int_distribution<size_t> pick(0, sizeof kChars - 2);
  std::string s;
  for (size_t i = 0; i < n; ++i) s += kChars[pick(gen)];
  return s;
}

OnceRun run_once_json(const std::string& config_yaml, const std::vector<std::string>& extra_env) {
  TempDir dir;
  auto r = run_command(
      {canaryd_bin(), "once", "--config", dir.write_file("canaryd.yaml", config_yaml), "--json"},
      std::chrono::seconds(60), extra_env);
  return {r.exit_code, nlohmann::json::parse(r.out, nullptr, false), r.err};
}

nlohmann::json once_result(const nlohmann::json& out, const std::string& name) {
  if (out.is_object() && out.contains("results")) {
    for (const auto& r : out["results"])
      if (r.value("name", "") == name) return r;
  }
  return nlohmann::json::object();
}

double daemon_metric(Daemon& d, const std::string& name,
                     const std::map<std::string, std::string>& labels) {
  auto v = metric_value(d.metrics(), name, labels);
  return v ? *v : -1;
}

bool has_run(Daemon& d, const std::string& probe, int runs) {
  return daemon_metric(d, "canary_probe_runs_total", {{"probe", probe}}) >= runs;
}

nlohmann::json once_json(const std::string& config_yaml, int* exit_code,
                         const std::vector<std::string>& extra_env) {
  auto r = run_once_json(config_yaml, extra_env);
  INFO(r.err);
  *exit_code = r.exit_code;
  REQUIRE_FALSE(r.out.is_discarded());
  return r.out;
}

nlohmann::json result_of(const nlohmann::json& out, const std::string& name) {
  nlohmann::json r = once_result(out, name);
  if (r.empty()) FAIL("no result for " << name);
  return r;
}

nlohmann::json detail(const nlohmann::json& result, const std::string& key) {
  if (!result.contains("details") || !result["details"].contains(key)) return nullptr;
  return result["details"][key];
}

std::string once_reason(const nlohmann::json& out, const std::string& name) {
  auto r = once_result(out, name);
  return r.contains("reason") ? r["reason"].get<std::string>() : "(missing)";
}

std::string result_message(const nlohmann::json& result) {
  return result.value("message", std::string());
}

std::string TlsPlatform::tls_url(std::string_view scheme, const std::string& listener,
                                 std::string_view path_and_query) const {
  return std::string(scheme) + "://127.0.0.1:" + std::to_string(fp.tls_port(listener)) +
         std::string(path_and_query);
}

double metric_sum(const std::string& exposition, const std::string& name,
                  const std::string& probe_prefix,
                  const std::map<std::string, std::string>& labels) {
  double sum = 0;
  for (const Sample& s : parse_exposition(exposition)) {
    if (s.name != name) continue;
    const auto probe = s.labels.find("probe");
    if (probe == s.labels.end() || probe->second.rfind(probe_prefix, 0) != 0) continue;
    const bool matches = std::all_of(labels.begin(), labels.end(), [&](const auto& want) {
      const auto have = s.labels.find(want.first);
      return have != s.labels.end() && have->second == want.second;
    });
    if (matches) sum += s.value;
  }
  return sum;
}

std::vector<std::string> unexpected_failures(const std::string& exposition,
                                             const std::string& probe_prefix,
                                             const std::string& allowed_reason) {
  std::vector<std::string> out;
  for (const Sample& s : parse_exposition(exposition)) {
    if (s.name != "canary_probe_failures_total" || s.value == 0.0) continue;
    const auto probe = s.labels.find("probe");
    const auto reason = s.labels.find("reason");
    if (probe == s.labels.end() || probe->second.rfind(probe_prefix, 0) != 0) continue;
    const std::string why = reason == s.labels.end() ? "(none)" : reason->second;
    if (!allowed_reason.empty() && why == allowed_reason) continue;
    std::ostringstream line;
    line << probe->second << " " << why << "=" << s.value;
    out.push_back(line.str());
  }
  return out;
}

std::string make_certs(const TempDir& dir) {
  const std::string certs = dir.file("certs");
  fs::create_directories(certs);
  const std::string script = source_dir() + "/tests/fixtures/make_certs.sh";
  // Through bash so the script needs no executable bit.
  const CommandResult r = run_command({"bash", script, certs}, std::chrono::seconds(120));
  if (r.exit_code != 0) {
    throw std::runtime_error("make_certs.sh failed (status " + std::to_string(r.exit_code) +
                             (r.timed_out ? ", timed out" : "") + "):\n" + tail(r.out, 4096) +
                             tail(r.err, 8192));
  }
  return certs;
}

namespace {

std::vector<std::string> daemon_argv(std::string binary, const std::string& config_path,
                                     std::vector<std::string> extra_args) {
  std::vector<std::string> argv = {std::move(binary), "run", "--config", config_path};
  for (auto& a : extra_args) argv.push_back(std::move(a));
  return argv;
}

}  // namespace

Daemon::Daemon(const std::string& config_yaml, std::vector<std::string> extra_env,
               std::string binary, std::vector<std::string> extra_args)
    : port_(free_port()),
      config_path_(dir_.write_file("canaryd.yaml", substitute(config_yaml))),
      process_(
          daemon_argv(binary.empty() ? canaryd_bin() : binary, config_path_, std::move(extra_args)),
          std::move(extra_env), dir_.path()) {
  const std::string ready_url = base_url() + "/-/ready";
  const auto deadline = Clock::now() + kStartupTimeout;
  HttpResult last;
  for (;;) {
    last = http_get(ready_url, std::chrono::seconds(2));
    if (last.error.empty() && last.status == 200) return;
    if (!process_.running()) {
      throw std::runtime_error("canaryd exited before ready: " + process_.describe());
    }
    if (Clock::now() >= deadline) {
      const std::string answer =
          last.error.empty() ? "status " + std::to_string(last.status) : last.error;
      throw std::runtime_error("canaryd not ready after " +
                               std::to_string(kStartupTimeout.count()) + " ms (last " + ready_url +
                               ": " + answer + "): " + process_.describe());
    }
    std::this_thread::sleep_for(milliseconds(50));
  }
}

std::string Daemon::substitute(const std::string& yaml) const {
  std::string text = yaml;
  replace_all(text, "{{listen}}", "127.0.0.1:" + std::to_string(port_));
  replace_all(text, "{{dir}}", dir_.path());
  return text;
}

std::string Daemon::base_url() const { return "http://127.0.0.1:" + std::to_string(port_); }

std::string Daemon::get_ok(const std::string& path) {
  const std::string url = base_url() + path;
  const HttpResult r = http_get(url);
  if (!r.error.empty()) throw std::runtime_error("GET " + url + ": " + r.error);
  if (r.status != 200) {
    throw std::runtime_error("GET " + url + ": status " + std::to_string(r.status) + ": " +
                             tail(r.body, 2048));
  }
  return r.body;
}

std::string Daemon::metrics() { return get_ok("/metrics"); }

nlohmann::json Daemon::state() {
  const std::string body = get_ok("/api/v1/state");
  nlohmann::json parsed = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded())
    throw std::runtime_error("/api/v1/state is not JSON: " + tail(body, 2048));
  return parsed;
}

nlohmann::json Daemon::state(const std::string& probe) {
  const std::string path = "/api/v1/state/" + percent_encode(probe);
  const std::string body = get_ok(path);
  nlohmann::json parsed = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded()) throw std::runtime_error(path + " is not JSON: " + tail(body, 2048));
  return parsed;
}

void Daemon::rewrite_config(const std::string& yaml) {
  dir_.write_file("canaryd.yaml", substitute(yaml));
}

}  // namespace canaryd::test
