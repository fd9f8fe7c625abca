// Real peer servers for the probe tests: redis-server and a throwaway PostgreSQL 15 cluster,
// each started by the harness on a free loopback port and stopped by the PID we started, plus
// a raw TCP listener that misbehaves on purpose (never answers, or answers garbage).
//
// No mocks: the probes must be tested against the servers they will meet in production. The
// Debian packages (redis-server, postgresql) start no service on install; every test starts
// its own instances, so tests never share state and may run in parallel.
#ifndef CANARYD_TESTS_SUPPORT_SERVERS_H_
#define CANARYD_TESTS_SUPPORT_SERVERS_H_

#include <atomic>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "tests/support/harness.h"

namespace canaryd::test {

// redis-server on 127.0.0.1:<free port>, no persistence, not daemonized. The configuration is
// written to a file in a private TempDir rather than passed as arguments, so passwords never
// appear in the process list and need no shell-style quoting. The constructor returns once
// PING answers PONG and throws std::runtime_error (with the server's log) if redis-server
// exits first or is not ready within 30 s.
class RedisServer {
 public:
  // Every member has an initializer so designated initializers naming only some of them
  // compile without -Wmissing-field-initializers warnings.
  struct Options {
    std::string password{};                // requirepass for the default user; empty: no password
    std::string acl_user{};                // non-empty: "user NAME on >acl_password ~* &* +@all"
    std::string acl_password{};            // password of acl_user
    std::optional<int> replica_of_port{};  // set: replica of 127.0.0.1:<port>
    std::string master_password{};         // masterauth, for a replica of a protected master
  };

  // Two constructors rather than "Options opts = {}": a nested struct with default member
  // initializers cannot be a default argument inside its enclosing class (GCC rejects it).
  RedisServer();
  explicit RedisServer(Options opts);

  int port() const { return port_; }
  std::string address() const;  // "127.0.0.1:PORT"
  Process& process() { return *process_; }
  const Options& options() const { return opts_; }

  // SIGTERM to our PID, SIGKILL after a grace period. Once it returns the listening socket is
  // closed, so connections to port() are refused. Idempotent.
  void stop();

  // redis-cli against this server (raw output, as redis-cli prints when not on a terminal) as
  // the default user with Options::password. redis-cli exits 0 even when the server answers
  // an error, so callers look at out/err rather than exit_code.
  CommandResult cli(const std::vector<std::string>& args) const;
  // Same with explicit credentials; empty user means the default user, empty password means
  // no AUTH at all. The password travels in REDISCLI_AUTH, never on a command line.
  CommandResult cli_as(const std::string& user, const std::string& password,
                       const std::vector<std::string>& args) const;

  // connected_clients from INFO clients, minus the redis-cli connection asking, so a server
  // nobody uses reports 0 and a leak check can compare against 0 directly. Replica links are
  // not counted by Redis itself. Throws std::runtime_error if the answer has no such field.
  int connected_clients();

 private:
  std::string config_text() const;

  Options opts_;
  TempDir dir_;  // declared before process_: config, logs and the replica's RDB outlive it
  int port_ = 0;
  std::optional<Process> process_;  // optional: a port lost to a race is retried with a new one
};

// A throwaway PostgreSQL 15 cluster in a private TempDir: initdb (scram-sha-256, superuser
// "postgres" with Options::superuser_password), then the postmaster on 127.0.0.1:<free port>.
// Durability is switched off (fsync, full_page_writes, synchronous_commit) because the data
// is discarded anyway. The constructor returns once "SELECT 1" succeeds over TCP and throws
// std::runtime_error (with the server's log) if postgres exits first or is not ready in 30 s.
//
// initdb and postgres refuse to run as root. When the tests run as root, the cluster files are
// owned by the "postgres" user and both programs run through
// "setpriv --reuid=postgres --regid=postgres --clear-groups"; setpriv execs, so the PID we hold
// is the postmaster's own. As any other user they run directly as that user.
class PostgresServer {
 public:
  struct Options {
    std::string superuser_password = "canary-super-pw";
    int max_connections = 200;
  };

  // Two constructors: see RedisServer.
  PostgresServer();
  explicit PostgresServer(Options opts);
  ~PostgresServer();  // stop()
  PostgresServer(const PostgresServer&) = delete;
  PostgresServer& operator=(const PostgresServer&) = delete;

  int port() const { return port_; }
  Process& process() { return *process_; }
  const std::string& data_dir() const { return data_dir_; }

  // Runs sql as the superuser with "psql -AtX -v ON_ERROR_STOP=1 -c" over TCP and returns
  // stdout without trailing whitespace. Throws std::runtime_error with psql's stderr on failure.
  std::string psql(const std::string& sql, const std::string& database = "postgres");
  // Creates a login role with that password and CONNECT on database postgres. Name and
  // password are quoted, so any characters are fine.
  void create_role(const std::string& name, const std::string& password);
  // libpq key/value DSN: "host=127.0.0.1 port=P user=U password=W dbname=postgres"; values
  // that need it are quoted the way libpq expects.
  std::string dsn(const std::string& user, const std::string& password) const;
  // Client backends other than the one asking, optionally only those of one user.
  int client_sessions(const std::string& user = "");

  // SIGINT to the postmaster PID (fast shutdown: sessions are terminated, not waited for),
  // then SIGQUIT (immediate shutdown) and finally SIGKILL if it does not exit in time. The
  // postmaster reaps its own children before it exits, so nothing is left running and the
  // port refuses connections once this returns. Idempotent.
  void stop();

 private:
  void init_cluster();
  std::vector<std::string> as_postgres(std::vector<std::string> argv) const;

  Options opts_;
  TempDir dir_;  // declared before process_: data directory and logs outlive the postmaster
  std::string data_dir_;
  std::string socket_dir_;
  int port_ = 0;
  std::optional<Process> process_;  // optional: started after initdb, retried on a port race
};

// A misbehaving TCP peer on 127.0.0.1:<port chosen by the kernel>, served by a background
// thread of the test process (test tooling, not the daemon).
//  - kSilent accepts and never answers; connections are held until the peer closes them or
//    the listener is destroyed, so a client must rely on its own timeout.
//  - kGarbage accepts, waits for the client's first bytes (Redis and PostgreSQL clients speak
//    first), answers kGarbageReply and half-closes (FIN). The socket is kept, and anything
//    more is discarded, until the peer closes: closing with unread data would send RST and
//    could destroy the reply before the client reads it.
class RawListener {
 public:
  // kSilent accepts and never answers; kGarbage answers junk; kNeverAccepts
  // never accepts, so once its tiny backlog is full, connects hang in SYN-SENT.
  enum class Mode { kSilent, kGarbage, kNeverAccepts };
  // Neither a RESP nor a PostgreSQL message, and not a valid answer to an SSLRequest.
  static constexpr std::string_view kGarbageReply = "\x01\x02 this is not RESP\r\n";

  // Throws std::runtime_error if the socket cannot be set up.
  explicit RawListener(Mode mode);
  ~RawListener();  // closes the listener and all held connections, joins the thread
  RawListener(const RawListener&) = delete;
  RawListener& operator=(const RawListener&) = delete;

  int port() const { return port_; }
  int accepted() const { return accepted_.load(); }  // connections accepted so far
  // Accepted connections whose peer has not closed yet.
  int open_connections() const { return open_.load(); }

 private:
  void run();

  Mode mode_;
  int listen_fd_ = -1;
  int wake_fd_ = -1;  // eventfd: the destructor's way to interrupt poll()
  int port_ = 0;
  std::atomic<int> accepted_{0};
  std::atomic<int> open_{0};
  std::thread thread_;  // last: started once everything it uses exists
};

}  // namespace canaryd::test

#endif  // CANARYD_TESTS_SUPPORT_SERVERS_H_
