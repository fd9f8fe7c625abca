// The TCP client tries every address of a name in turn, as curl does: a
// refused first address followed by a working one is a connection.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <vector>

#include "probes/common/tcp_client.h"

using namespace canaryd;

namespace {

// An IPv4-only listener on loopback: the same port on ::1 refuses, as a
// server bound to 127.0.0.1 does for a client that tries "localhost" as ::1
// first.
struct Ipv4Listener {
  int fd = -1;
  int port = 0;
  Ipv4Listener() {
    fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    REQUIRE(listen(fd, 16) == 0);
    socklen_t len = sizeof a;
    getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
    port = ntohs(a.sin_port);
  }
  ~Ipv4Listener() { close(fd); }
};

struct Outcome : TcpClient::Handler {
  std::vector<int> statuses;
  TcpClient* conn = nullptr;
  void on_connect(int status) override {
    statuses.push_back(status);
    conn->close(TcpClient::Close::kReset);
  }
  void on_data(std::string_view) override {}
  void on_closed(int) override {}
};

std::vector<int> connect_all(const std::vector<std::pair<std::string, int>>& addresses) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  ResolvedAddresses addrs;
  for (const auto& [ip, port] : addresses) addrs.push_back(*numeric_address(ip, port));
  Outcome outcome;
  outcome.conn = TcpClient::connect(&loop, addrs, &outcome);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(uv_loop_close(&loop) == 0);
  return outcome.statuses;
}

}  // namespace

TEST_CASE("the TCP client tries the next address when one refuses", "[connect]") {
  Ipv4Listener server;
  int closed = 0;
  {
    Ipv4Listener gone;
    closed = gone.port;
  }
  // ::1 refuses (nothing listens there); 127.0.0.1 accepts.
  CHECK(connect_all({{"::1", server.port}, {"127.0.0.1", server.port}}) == std::vector<int>{0});
  CHECK(connect_all({{"127.0.0.1", closed}, {"127.0.0.1", server.port}}) == std::vector<int>{0});
  // The first address that works is used; later ones are not needed.
  CHECK(connect_all({{"127.0.0.1", server.port}, {"127.0.0.1", closed}}) == std::vector<int>{0});
  // When none accepts the handler hears one failure, the last address's.
  CHECK(connect_all({{"::1", server.port}, {"127.0.0.1", closed}}) ==
        std::vector<int>{UV_ECONNREFUSED});
}
