// Self-test of the peer servers the probe tests rely on: a real redis-server and a real
// PostgreSQL 15 cluster started on free loopback ports, and the misbehaving RawListener.
// Each test case starts at most one PostgreSQL cluster, since initdb dominates its run time.
#include "tests/support/servers.h"

#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cerrno>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

namespace canaryd::test {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using Catch::Matchers::Contains;

// Generous upper bounds only: they prove a wait ended, not how fast.
constexpr auto kGenerous = 30s;

std::string trimmed(std::string text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r' || text.back() == ' ')) {
    text.pop_back();
  }
  return text;
}

// A connected client socket, closed on scope exit; fd() < 0 and error() say why it failed.
class Client {
 public:
  explicit Client(int port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd_ < 0) {
      error_ = errno;
      return;
    }
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(static_cast<uint16_t>(port));
    // Blocking is fine on loopback: the kernel answers a connect at once (accept or refuse).
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
      error_ = errno;
      ::close(fd_);
      fd_ = -1;
    }
  }
  ~Client() { close(); }
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  int fd() const { return fd_; }
  int error() const { return error_; }
  void close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }
  bool send_text(const std::string& text) {
    return ::send(fd_, text.data(), text.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(text.size());
  }
  struct Received {
    std::string data;
    bool closed = false;  // false: the peer still had the connection open at the timeout
  };
  // Everything until the peer closes, or whatever arrived if it has not closed by timeout.
  Received read_to_eof(std::chrono::milliseconds timeout) {
    Received r;
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    char buf[4096];
    for (;;) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return r;
      pollfd pfd{fd_, POLLIN, 0};
      if (::poll(&pfd, 1, static_cast<int>(left.count())) <= 0) continue;
      const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n <= 0) {
        r.closed = true;  // EOF, or a reset: either way the peer is gone
        return r;
      }
      r.data.append(buf, static_cast<size_t>(n));
    }
  }

 private:
  int fd_ = -1;
  int error_ = 0;
};

struct ProcInfo {
  pid_t pid;
  unsigned long long start_time;  // tells a live PID from a reused one
};

// Fields after the parenthesised command name of /proc/PID/stat (state is index 0).
std::optional<std::vector<std::string>> stat_fields(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(in, line)) return std::nullopt;
  const size_t close_paren = line.rfind(')');  // the name itself may contain ')' or spaces
  if (close_paren == std::string::npos) return std::nullopt;
  std::istringstream rest(line.substr(close_paren + 1));
  std::vector<std::string> fields;
  for (std::string f; rest >> f;) fields.push_back(f);
  if (fields.size() < 20) return std::nullopt;
  return fields;
}

// Children of parent right now: for PostgreSQL, the background workers and backends.
std::vector<ProcInfo> children_of(pid_t parent) {
  std::vector<ProcInfo> out;
  for (const auto& entry : fs::directory_iterator("/proc")) {
    const std::string name = entry.path().filename().string();
    if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos) continue;
    const pid_t pid = std::stoi(name);
    const auto fields = stat_fields(pid);
    if (fields && std::stoi((*fields)[1]) == parent) {
      out.push_back({pid, std::stoull((*fields)[19])});
    }
  }
  return out;
}

bool still_running(const ProcInfo& p) {
  const auto fields = stat_fields(p.pid);
  return fields && std::stoull((*fields)[19]) == p.start_time && (*fields)[0] != "Z";
}

bool refused(int port) {
  Client c(port);
  return c.fd() < 0 && c.error() == ECONNREFUSED;
}

// ---- Redis -------------------------------------------------------------------------------

TEST_CASE("RedisServer with a password answers PING only after AUTH", "[servers]") {
  // Quotes and spaces prove the config file quoting; REDISCLI_AUTH needs no quoting.
  const std::string password = "redis pw \"with quotes\" \\ end";
  RedisServer redis({.password = password});
  CHECK(redis.address() == "127.0.0.1:" + std::to_string(redis.port()));

  const CommandResult anonymous = redis.cli_as("", "", {"PING"});
  CHECK_THAT(anonymous.out, Contains("NOAUTH"));
  CHECK_THAT(anonymous.out, !Contains("PONG"));

  const CommandResult wrong = redis.cli_as("", "wrong-password", {"PING"});
  CHECK_THAT(wrong.err, Contains("WRONGPASS"));
  CHECK_THAT(wrong.out, !Contains("PONG"));

  CHECK(trimmed(redis.cli({"PING"}).out) == "PONG");
  CHECK(trimmed(redis.cli_as("", password, {"PING"}).out) == "PONG");
}

TEST_CASE("RedisServer ACL user can log in with its own password", "[servers]") {
  RedisServer redis({.password = "default-pw", .acl_user = "canary", .acl_password = "acl pw"});
  CHECK(trimmed(redis.cli_as("canary", "acl pw", {"ACL", "WHOAMI"}).out) == "canary");
  CHECK(trimmed(redis.cli_as("canary", "acl pw", {"PING"}).out) == "PONG");
  CHECK_THAT(redis.cli_as("canary", "default-pw", {"PING"}).err, Contains("WRONGPASS"));
  CHECK(trimmed(redis.cli({"ACL", "WHOAMI"}).out) == "default");
}

TEST_CASE("RedisServer replica of a password-protected master reports role slave", "[servers]") {
  RedisServer master({.password = "master-pw"});
  RedisServer replica({.replica_of_port = master.port(), .master_password = "master-pw"});

  // A full sync takes a moment; only the link state says it is done.
  const bool linked = wait_until(
      [&] {
        const std::string info = replica.cli({"INFO", "replication"}).out;
        return info.find("role:slave") != std::string::npos &&
               info.find("master_link_status:up") != std::string::npos;
      },
      kGenerous);
  INFO(replica.cli({"INFO", "replication"}).out);
  REQUIRE(linked);
  CHECK(trimmed(replica.cli({"ROLE"}).out).starts_with("slave"));
  CHECK_THAT(master.cli({"INFO", "replication"}).out, Contains("connected_slaves:1"));

  CHECK(trimmed(master.cli({"SET", "canary-key", "canary-value"}).out) == "OK");
  CHECK(wait_until(
      [&] {
        return trimmed(replica.cli({"GET", "canary-key"}).out) == "canary-value";
      },
      kGenerous));
}

TEST_CASE("RedisServer connected_clients counts connections and stop() closes the port",
          "[servers]") {
  RedisServer redis({.password = "pw"});
  CHECK(redis.connected_clients() == 0);  // the asking redis-cli is not counted

  {
    Client held(redis.port());
    REQUIRE(held.fd() >= 0);
    CHECK(wait_until([&] { return redis.connected_clients() == 1; }, kGenerous));
  }
  CHECK(wait_until([&] { return redis.connected_clients() == 0; }, kGenerous));

  const int port = redis.port();
  redis.stop();
  CHECK_FALSE(redis.process().running());
  CHECK(refused(port));
  redis.stop();  // idempotent
}

TEST_CASE("RedisServer reports a server that exits before it is ready", "[servers]") {
  // Redis rejects user names with spaces, so the server exits while loading its config.
  CHECK_THROWS_WITH(RedisServer({.acl_user = "bad name", .acl_password = "x"}),
                    Contains("exited before it was ready"));
}

// ---- PostgreSQL --------------------------------------------------------------------------

TEST_CASE("PostgresServer runs SQL and creates roles that log in only with their password",
          "[servers]") {
  PostgresServer pg;
  CHECK(pg.psql("SELECT 1") == "1");
  CHECK(pg.psql("SHOW max_connections") == "200");
  CHECK(pg.psql("SELECT current_database()", "template1") == "template1");
  CHECK_THROWS_WITH(pg.psql("SELECT no_such_column"), Contains("no_such_column"));

  // A space in the name and quotes in the password exercise SQL and conninfo quoting.
  const std::string role = "canary role";
  const std::string password = "it's a \"pw\" \\ ok";
  pg.create_role(role, password);

  const auto login = [&](const std::string& pw) {
    // psql takes an argument containing '=' as a conninfo string. PGPASSWORD is removed so
    // only the DSN's password can succeed.
    return run_command({"psql", pg.dsn(role, pw), "-AtX", "-c", "SELECT current_user"}, kGenerous,
                       {"PGPASSWORD"});
  };
  const CommandResult good = login(password);
  INFO(good.err);
  CHECK(good.exit_code == 0);
  CHECK(trimmed(good.out) == role);

  const CommandResult bad = login("wrong");
  CHECK(bad.exit_code != 0);
  CHECK_THAT(bad.err, Contains("password authentication failed"));

  CHECK(pg.dsn("u", "p") ==
        "host=127.0.0.1 port=" + std::to_string(pg.port()) + " user=u password=p dbname=postgres");
}

TEST_CASE("PostgresServer counts client sessions and stops by PID", "[servers]") {
  PostgresServer pg;
  pg.create_role("holder", "holder-pw");
  CHECK(pg.client_sessions() == 0);  // the asking psql is not counted

  const auto hold_session = [&](int seconds) {
    // Long enough never to end on its own during the test; the test ends it explicitly.
    return Process({"psql", pg.dsn("holder", "holder-pw"), "-AtX", "-c",
                    "SELECT pg_sleep(" + std::to_string(seconds) + ")"},
                   {"PGPASSWORD"});
  };

  {
    Process held = hold_session(60);
    REQUIRE(wait_until([&] { return pg.client_sessions() == 1; }, kGenerous));
    CHECK(pg.client_sessions("holder") == 1);
    CHECK(pg.client_sessions("postgres") == 0);
    // Ending the session on the server side shows the count going back down.
    pg.psql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'holder'");
    CHECK(wait_until([&] { return pg.client_sessions() == 0; }, kGenerous));
    const std::optional<int> status = held.wait_exit(kGenerous);
    REQUIRE(status.has_value());
    CHECK(*status != 0);  // psql reports the terminated connection
  }

  // stop() must not wait for a client that is still connected (a "smart" shutdown would).
  Process held = hold_session(600);
  REQUIRE(wait_until([&] { return pg.client_sessions("holder") == 1; }, kGenerous));
  const pid_t postmaster = pg.process().pid();
  const std::vector<ProcInfo> children = children_of(postmaster);
  CHECK(children.size() >= 4);  // checkpointer, background writer, walwriter, ... the backend

  const int port = pg.port();
  pg.stop();
  CHECK_FALSE(pg.process().running());
  for (const ProcInfo& child : children) {
    INFO("postmaster child " << child.pid);
    CHECK_FALSE(still_running(child));
  }
  CHECK(refused(port));
  CHECK_FALSE(fs::exists(pg.data_dir() + "/postmaster.pid"));  // a clean shutdown removes it
  CHECK(held.wait_exit(kGenerous).has_value());
  pg.stop();  // idempotent
}

TEST_CASE("PostgresServer reports a postmaster that exits before it is ready", "[servers]") {
  CHECK_THROWS_WITH(PostgresServer({.max_connections = 0}), Contains("max_connections"));
}

// ---- RawListener -------------------------------------------------------------------------

TEST_CASE("RawListener kSilent holds connections without answering", "[servers]") {
  auto listener = std::make_unique<RawListener>(RawListener::Mode::kSilent);
  Client first(listener->port());
  REQUIRE(first.fd() >= 0);
  REQUIRE(first.send_text("PING\r\n"));
  REQUIRE(wait_until([&] { return listener->accepted() == 1; }, kGenerous));

  pollfd pfd{first.fd(), POLLIN, 0};
  CHECK(::poll(&pfd, 1, 300) == 0);  // no bytes and no close
  CHECK(listener->open_connections() == 1);

  first.close();
  CHECK(wait_until([&] { return listener->open_connections() == 0; }, kGenerous));
  CHECK(listener->accepted() == 1);

  // Destruction closes whatever is still held, so the client sees EOF.
  Client second(listener->port());
  REQUIRE(second.fd() >= 0);
  REQUIRE(wait_until([&] { return listener->open_connections() == 1; }, kGenerous));
  CHECK(listener->accepted() == 2);
  listener.reset();
  const Client::Received after = second.read_to_eof(kGenerous);
  CHECK(after.closed);
  CHECK(after.data.empty());
}

TEST_CASE("RawListener kGarbage answers non-protocol bytes and closes", "[servers]") {
  RawListener listener(RawListener::Mode::kGarbage);
  Client client(listener.port());
  REQUIRE(client.fd() >= 0);
  REQUIRE(client.send_text("*1\r\n$4\r\nPING\r\n"));
  const Client::Received reply = client.read_to_eof(kGenerous);
  CHECK(reply.closed);
  CHECK(reply.data == std::string(RawListener::kGarbageReply));
  CHECK(listener.accepted() == 1);

  client.close();
  CHECK(wait_until([&] { return listener.open_connections() == 0; }, kGenerous));
}

}  // namespace
}  // namespace canaryd::test
