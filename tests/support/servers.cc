#include "tests/support/servers.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <stdexcept>
#include <system_error>
#include <utility>

namespace canaryd::test {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;
using namespace std::chrono_literals;

constexpr milliseconds kStartupTimeout = 30s;
// Bounds one client command; generous because a loaded CI machine is slow, never hit normally.
constexpr milliseconds kClientTimeout = 15s;
// free_port() hands out a port that is merely free *now*; a parallel test can take it before
// the server binds. A server that dies of EADDRINUSE is retried on a new port this many times.
constexpr int kPortAttempts = 3;
constexpr milliseconds kPollStep = 50ms;

constexpr const char* kPgBinDir = "/usr/lib/postgresql/15/bin";
constexpr const char* kPgUser = "postgres";

[[noreturn]] void throw_errno(const std::string& what) {
  throw std::runtime_error(what + ": " + std::strerror(errno));
}

std::string tail(const std::string& text, size_t max_bytes) {
  if (text.size() <= max_bytes) return text;
  return "[...]" + text.substr(text.size() - max_bytes);
}

std::string trim_right(std::string text) {
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back()))) text.pop_back();
  return text;
}

// Both streams: redis-server logs to stdout, postgres to stderr.
std::string server_log(Process& process) {
  return process.describe() + "\nstdout:\n" + tail(process.stdout_text(), 8192);
}

bool port_was_taken(Process& process) {
  const std::string needle = "Address already in use";
  return process.stderr_text().find(needle) != std::string::npos ||
         process.stdout_text().find(needle) != std::string::npos;
}

enum class StartResult { kReady, kPortTaken };

// Polls ready() until it holds. Throws if the server exits for any reason other than losing
// its port, or is still not ready after kStartupTimeout.
StartResult await_ready(Process& process, const std::string& what,
                        const std::function<bool()>& ready) {
  const auto deadline = Clock::now() + kStartupTimeout;
  for (;;) {
    if (ready()) return StartResult::kReady;
    if (!process.running()) {
      if (port_was_taken(process)) return StartResult::kPortTaken;
      throw std::runtime_error(what + " exited before it was ready: " + server_log(process));
    }
    if (Clock::now() >= deadline) {
      throw std::runtime_error(what + " not ready after " +
                               std::to_string(kStartupTimeout.count()) +
                               " ms: " + server_log(process));
    }
    std::this_thread::sleep_for(kPollStep);
  }
}

// Value of "key:value" in INFO output (lines end in \r\n), if present.
std::optional<std::string> info_field(const std::string& info, const std::string& key) {
  const std::string prefix = key + ":";
  size_t pos = 0;
  while (pos < info.size()) {
    size_t end = info.find('\n', pos);
    if (end == std::string::npos) end = info.size();
    std::string line = trim_right(info.substr(pos, end - pos));
    if (line.starts_with(prefix)) return line.substr(prefix.size());
    pos = end + 1;
  }
  return std::nullopt;
}

// A double-quoted redis.conf argument. redis-server splits config lines like a shell, so
// quotes and backslashes must be escaped, and control characters are written as \xHH.
std::string redis_quote(std::string_view value) {
  std::string out = "\"";
  for (const unsigned char c : value) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20 || c == 0x7f) {
      char hex[5];
      std::snprintf(hex, sizeof hex, "\\x%02x", c);
      out += hex;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out + "\"";
}

std::string sql_identifier(std::string_view name) {
  std::string out = "\"";
  for (const char c : name) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + "\"";
}

// Relies on standard_conforming_strings (on by default since 9.1): backslashes are literal.
std::string sql_literal(std::string_view value) {
  std::string out = "'";
  for (const char c : value) {
    if (c == '\'') out += '\'';
    out += c;
  }
  return out + "'";
}

// A libpq conninfo value: bare when possible (readable DSNs in test output), otherwise single
// quoted with \' and \\ escapes as libpq requires.
std::string conninfo_value(std::string_view value) {
  const bool bare = !value.empty() && value.find_first_of(" \t\n\r\f\v'\\") == std::string::npos;
  if (bare) return std::string(value);
  std::string out = "'";
  for (const char c : value) {
    if (c == '\'' || c == '\\') out += '\\';
    out += c;
  }
  return out + "'";
}

// Settings a developer's shell may carry that would redirect or alter psql's connection.
const std::vector<std::string>& libpq_overrides_removed() {
  static const std::vector<std::string> kRemoved = {
      "PGHOSTADDR",           "PGSERVICE",        "PGSERVICEFILE",
      "PGSYSCONFDIR",         "PGOPTIONS",        "PGSSLMODE",
      "PGREQUIRESSL",         "PGGSSENCMODE",     "PGCHANNELBINDING",
      "PGTARGETSESSIONATTRS", "PGCLIENTENCODING", "PGTZ",
      "PGDATESTYLE"};
  return kRemoved;
}

struct PgAccount {
  uid_t uid;
  gid_t gid;
};

PgAccount postgres_account() {
  passwd entry{};
  passwd* found = nullptr;
  std::vector<char> buf(16384);
  const int rc = ::getpwnam_r(kPgUser, &entry, buf.data(), buf.size(), &found);
  if (rc != 0 || found == nullptr) {
    throw std::runtime_error(
        "PostgresServer: running as root needs the 'postgres' user (package postgresql, "
        "scripts/install-deps.sh), because initdb and postgres refuse to run as root");
  }
  return {entry.pw_uid, entry.pw_gid};
}

// The postgres user must be able to traverse every directory above the cluster; a TMPDIR
// under /root (mode 0700) would fail deep inside initdb with a confusing message.
void check_reachable(const fs::path& dir, uid_t uid) {
  for (fs::path p = dir;; p = p.parent_path()) {
    struct stat st {};
    if (::stat(p.c_str(), &st) == 0 && st.st_uid != uid && (st.st_mode & S_IXOTH) == 0) {
      char mode[8];
      std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
      throw std::runtime_error("PostgresServer: the postgres user cannot traverse " + p.string() +
                               " (mode " + mode +
                               "); point TMPDIR at a directory every user can reach, e.g. /tmp");
    }
    if (p == p.root_path() || p.parent_path() == p) break;
  }
}

void make_dir(const std::string& path, mode_t mode) {
  if (::mkdir(path.c_str(), mode) != 0) throw_errno("mkdir " + path);
  // mkdir applies the umask; the exact mode matters (postgres insists on 0700 or 0750).
  if (::chmod(path.c_str(), mode) != 0) throw_errno("chmod " + path);
}

void give_to(const std::string& path, const PgAccount& account) {
  if (::chown(path.c_str(), account.uid, account.gid) != 0) throw_errno("chown " + path);
}

}  // namespace

// ---- RedisServer -------------------------------------------------------------------------

RedisServer::RedisServer() : RedisServer(Options{}) {}

RedisServer::RedisServer(Options opts) : opts_(std::move(opts)) {
  for (int attempt = 1;; ++attempt) {
    port_ = free_port();
    const std::string config = dir_.write_file("redis.conf", config_text());
    process_.emplace(std::vector<std::string>{"redis-server", config}, std::vector<std::string>{},
                     dir_.path());
    // Ready means *our* server answers: if another test's server won the port race, it might
    // answer PING while ours is still dying of EADDRINUSE, but its process_id differs.
    const std::string pid = std::to_string(process_->pid());
    const StartResult result = await_ready(*process_, "redis-server", [&] {
      return info_field(cli({"INFO", "server"}).out, "process_id") == pid;
    });
    if (result == StartResult::kReady) return;
    if (attempt == kPortAttempts) {
      throw std::runtime_error("redis-server lost its port to another process " +
                               std::to_string(kPortAttempts) + " times: " + server_log(*process_));
    }
  }
}

std::string RedisServer::config_text() const {
  std::string text;
  text += "port " + std::to_string(port_) + "\n";
  text += "bind 127.0.0.1\n";
  text += "save \"\"\n";  // no RDB snapshots: tests never need the data back
  text += "appendonly no\n";
  text += "daemonize no\n";  // daemonizing would fork, and the PID we hold would be gone
  text += "logfile \"\"\n";  // stdout, i.e. the Process log file
  // A replica's full sync writes an RDB file into dir; keep it inside our TempDir.
  text += "dir " + redis_quote(dir_.path()) + "\n";
  // The default 5 s delay waits for more replicas to share one transfer; tests have one.
  text += "repl-diskless-sync-delay 0\n";
  if (!opts_.password.empty()) text += "requirepass " + redis_quote(opts_.password) + "\n";
  if (!opts_.acl_user.empty()) {
    text += "user " + redis_quote(opts_.acl_user) + " on " + redis_quote(">" + opts_.acl_password) +
            " ~* &* +@all\n";
  }
  if (opts_.replica_of_port) {
    text += "replicaof 127.0.0.1 " + std::to_string(*opts_.replica_of_port) + "\n";
  }
  if (!opts_.master_password.empty()) {
    text += "masterauth " + redis_quote(opts_.master_password) + "\n";
  }
  return text;
}

std::string RedisServer::address() const { return "127.0.0.1:" + std::to_string(port_); }

void RedisServer::stop() {
  // Without save points SIGTERM needs no snapshot, so this is quick; Process::stop escalates to
  // SIGKILL after its grace period and reaps, and the kernel closes the listener with the PID.
  if (process_) process_->stop();
}

CommandResult RedisServer::cli(const std::vector<std::string>& args) const {
  return cli_as("", opts_.password, args);
}

CommandResult RedisServer::cli_as(const std::string& user, const std::string& password,
                                  const std::vector<std::string>& args) const {
  std::vector<std::string> argv = {"redis-cli", "-h", "127.0.0.1", "-p", std::to_string(port_)};
  if (!user.empty()) {
    argv.push_back("--user");
    argv.push_back(user);
  }
  argv.insert(argv.end(), args.begin(), args.end());
  // "REDISCLI_AUTH" alone removes a value the runner's environment might carry.
  const std::string auth = password.empty() ? "REDISCLI_AUTH" : "REDISCLI_AUTH=" + password;
  return run_command(argv, kClientTimeout, {auth});
}

int RedisServer::connected_clients() {
  const CommandResult r = cli({"INFO", "clients"});
  const std::optional<std::string> value = info_field(r.out, "connected_clients");
  if (!value) {
    throw std::runtime_error("INFO clients on " + address() +
                             " has no connected_clients: " + r.out + r.err);
  }
  return std::stoi(*value) - 1;  // the redis-cli connection asking
}

// ---- PostgresServer ----------------------------------------------------------------------

PostgresServer::PostgresServer() : PostgresServer(Options{}) {}

PostgresServer::PostgresServer(Options opts)
    : opts_(std::move(opts)), data_dir_(dir_.file("data")), socket_dir_(dir_.file("sock")) {
  init_cluster();
  try {
    for (int attempt = 1;; ++attempt) {
      port_ = free_port();
      process_.emplace(
          as_postgres({std::string(kPgBinDir) + "/postgres", "-D", data_dir_, "-p",
                       std::to_string(port_), "-k", socket_dir_, "-c", "listen_addresses=127.0.0.1",
                       // Throwaway data: durability only costs time.
                       "-c", "fsync=off", "-c", "full_page_writes=off", "-c",
                       "synchronous_commit=off", "-c",
                       "max_connections=" + std::to_string(opts_.max_connections), "-c",
                       "log_min_messages=warning"}),
          std::vector<std::string>{}, dir_.path());
      // Ready means *our* cluster answers; a server that won the port race would report a
      // different data directory (or reject the password).
      const StartResult result = await_ready(*process_, "postgres", [&] {
        try {
          std::error_code ec;
          return fs::equivalent(psql("SHOW data_directory"), data_dir_, ec);
        } catch (const std::runtime_error&) {
          return false;  // refused or "the database system is starting up": keep polling
        }
      });
      if (result == StartResult::kReady) return;
      if (attempt == kPortAttempts) {
        throw std::runtime_error("postgres lost its port to another process " +
                                 std::to_string(kPortAttempts) +
                                 " times: " + server_log(*process_));
      }
    }
  } catch (...) {
    // The destructor does not run for a half-built object, and Process's own SIGTERM is a
    // "smart" shutdown that would wait for clients; stop the PostgreSQL way.
    stop();
    throw;
  }
}

PostgresServer::~PostgresServer() {
  try {
    stop();
  } catch (...) {  // a destructor must not throw; stop() only throws on impossible errors
  }
}

std::vector<std::string> PostgresServer::as_postgres(std::vector<std::string> argv) const {
  if (::geteuid() != 0) return argv;
  // setpriv execs the program, so the PID we spawn becomes the postmaster itself and can be
  // signalled directly. --clear-groups drops root's supplementary groups.
  std::vector<std::string> wrapped = {"setpriv", std::string("--reuid=") + kPgUser,
                                      std::string("--regid=") + kPgUser, "--clear-groups"};
  wrapped.insert(wrapped.end(), argv.begin(), argv.end());
  return wrapped;
}

void PostgresServer::init_cluster() {
  const bool root = ::geteuid() == 0;
  std::optional<PgAccount> account;
  if (root) {
    account = postgres_account();
    // mkdtemp made the TempDir 0700 root: the postgres user could not even reach data/.
    if (::chmod(dir_.path().c_str(), 0755) != 0) throw_errno("chmod " + dir_.path());
    check_reachable(dir_.path(), account->uid);
  }
  // Unix socket paths are limited to sizeof(sun_path) bytes including the NUL; postgres would
  // refuse to start with a long TMPDIR, so say why up front.
  const std::string longest_socket = socket_dir_ + "/.s.PGSQL.65535";
  if (longest_socket.size() >= sizeof(sockaddr_un{}.sun_path)) {
    throw std::runtime_error("PostgresServer: socket path too long (" + longest_socket +
                             "); use a shorter TMPDIR");
  }
  make_dir(data_dir_, 0700);
  make_dir(socket_dir_, 0700);
  // A file, not an argument: the password stays out of the process list.
  const std::string pwfile = dir_.write_file("pwfile", opts_.superuser_password + "\n");
  if (account) {
    give_to(data_dir_, *account);
    give_to(socket_dir_, *account);
    give_to(pwfile, *account);
  }
  const CommandResult r =
      run_command(as_postgres({std::string(kPgBinDir) + "/initdb", "-D", data_dir_, "-U", kPgUser,
                               "--auth=scram-sha-256", "--pwfile=" + pwfile, "-E", "UTF8",
                               // C locale: independent of the runner's LANG, which may name a
                               // locale that is not installed.
                               "--no-locale", "--no-sync", "--no-instructions"}),
                  std::chrono::seconds(120));
  ::unlink(pwfile.c_str());
  if (r.exit_code != 0) {
    throw std::runtime_error("initdb failed (status " + std::to_string(r.exit_code) +
                             (r.timed_out ? ", timed out" : "") + "):\n" + tail(r.out, 4096) +
                             tail(r.err, 8192));
  }
}

std::string PostgresServer::psql(const std::string& sql, const std::string& database) {
  std::vector<std::string> env = libpq_overrides_removed();
  env.push_back("PGPASSWORD=" + opts_.superuser_password);
  // Bounds the connection attempt itself; run_command's timeout bounds the whole command.
  env.push_back("PGCONNECT_TIMEOUT=10");
  const CommandResult r =
      run_command({"psql", "-h", "127.0.0.1", "-p", std::to_string(port_), "-U", kPgUser, "-d",
                   database, "-AtX", "-v", "ON_ERROR_STOP=1", "-c", sql},
                  kClientTimeout, env);
  if (r.exit_code != 0) {
    throw std::runtime_error("psql on port " + std::to_string(port_) + " failed (status " +
                             std::to_string(r.exit_code) + (r.timed_out ? ", timed out" : "") +
                             ") for: " + sql + "\n" + tail(r.err, 8192));
  }
  return trim_right(r.out);
}

void PostgresServer::create_role(const std::string& name, const std::string& password) {
  // PUBLIC has CONNECT by default; granting it explicitly keeps the role usable even if a
  // test revokes that default.
  psql("CREATE ROLE " + sql_identifier(name) + " LOGIN PASSWORD " + sql_literal(password) +
       "; GRANT CONNECT ON DATABASE postgres TO " + sql_identifier(name));
}

std::string PostgresServer::dsn(const std::string& user, const std::string& password) const {
  return "host=127.0.0.1 port=" + std::to_string(port_) + " user=" + conninfo_value(user) +
         " password=" + conninfo_value(password) + " dbname=postgres";
}

int PostgresServer::client_sessions(const std::string& user) {
  std::string sql =
      "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> "
      "pg_backend_pid()";
  if (!user.empty()) sql += " AND usename = " + sql_literal(user);
  const std::string out = psql(sql);
  try {
    return std::stoi(out);
  } catch (const std::exception&) {
    throw std::runtime_error("client_sessions: unexpected psql output: " + out);
  }
}

void PostgresServer::stop() {
  if (!process_ || !process_->running()) return;  // running() reaps, so no stale PID is used
  // SIGTERM would be a "smart" shutdown that waits for every client to leave; a test holding
  // a session (or a leaking daemon) would stall it. SIGINT terminates sessions instead.
  process_->signal(SIGINT);
  if (process_->wait_exit(kStartupTimeout)) return;
  // Immediate shutdown: the postmaster SIGQUITs its children, waits for them, and exits.
  process_->signal(SIGQUIT);
  if (process_->wait_exit(10s)) return;
  process_->stop(0ms);  // SIGKILL; orphaned backends notice the postmaster's death and exit
}

// ---- RawListener -------------------------------------------------------------------------

RawListener::RawListener(Mode mode) : mode_(mode) {
  // Bound to port 0 and read back rather than free_port(): no window for another test to
  // take the port between choosing and binding it.
  listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (listen_fd_ < 0) throw_errno("RawListener: socket");
  wake_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (wake_fd_ < 0) {
    ::close(listen_fd_);
    throw_errno("RawListener: eventfd");
  }
  try {
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
      throw_errno("RawListener: bind 127.0.0.1:0");
    }
    if (::listen(listen_fd_, mode_ == Mode::kNeverAccepts ? 0 : 128) != 0)
      throw_errno("RawListener: listen");
    socklen_t len = sizeof addr;
    if (::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      throw_errno("RawListener: getsockname");
    }
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this] { run(); });
  } catch (...) {
    ::close(listen_fd_);
    ::close(wake_fd_);
    throw;
  }
}

RawListener::~RawListener() {
  const uint64_t one = 1;
  // An eventfd write of 1 cannot fail short of overflow, which a single write cannot reach.
  [[maybe_unused]] const ssize_t n = ::write(wake_fd_, &one, sizeof one);
  thread_.join();
  ::close(listen_fd_);
  ::close(wake_fd_);
}

void RawListener::run() {
  struct Connection {
    int fd;
    bool answered;
  };
  std::vector<Connection> connections;
  std::vector<pollfd> fds;
  char buf[4096];

  for (;;) {
    fds.clear();
    fds.push_back({wake_fd_, POLLIN, 0});
    fds.push_back({listen_fd_, static_cast<short>(mode_ == Mode::kNeverAccepts ? 0 : POLLIN), 0});
    for (const Connection& c : connections) fds.push_back({c.fd, POLLIN, 0});
    if (::poll(fds.data(), fds.size(), -1) < 0) {
      if (errno == EINTR) continue;
      break;  // cannot happen with valid descriptors; stop serving rather than spin
    }
    if (fds[0].revents != 0) break;

    if (fds[1].revents & POLLIN) {
      for (;;) {
        const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd < 0) break;  // EAGAIN: queue drained (errors: the next poll retries)
        connections.push_back({fd, false});
        accepted_.fetch_add(1);
        open_.fetch_add(1);
      }
    }

    // fds[i + 2] belongs to connections[i] as they were before this round's accepts.
    const size_t polled = fds.size() - 2;
    std::vector<bool> closed(connections.size(), false);
    for (size_t i = 0; i < polled; ++i) {
      if (fds[i + 2].revents == 0) continue;
      Connection& c = connections[i];
      bool peer_gone = false;
      bool got_data = false;
      for (;;) {
        const ssize_t n = ::recv(c.fd, buf, sizeof buf, 0);
        if (n > 0) {
          got_data = true;  // discarded: the content does not matter, only that it came
          continue;
        }
        if (n < 0 && errno == EINTR) continue;
        peer_gone = n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK);
        break;
      }
      if (!peer_gone && got_data && mode_ == Mode::kGarbage && !c.answered) {
        // MSG_NOSIGNAL: a peer that already left must not SIGPIPE the test process. The
        // reply is far below the socket buffer size, so one send writes all of it.
        ::send(c.fd, kGarbageReply.data(), kGarbageReply.size(), MSG_NOSIGNAL);
        ::shutdown(c.fd, SHUT_WR);
        c.answered = true;
      }
      if (peer_gone) {
        ::close(c.fd);
        closed[i] = true;
        open_.fetch_sub(1);
      }
    }
    std::vector<Connection> kept;
    for (size_t j = 0; j < connections.size(); ++j) {
      if (j >= closed.size() || !closed[j]) kept.push_back(connections[j]);
    }
    connections = std::move(kept);
  }

  for (const Connection& c : connections) ::close(c.fd);
  open_.store(0);
}

}  // namespace canaryd::test
