// The TCP client tries every address of a name in turn, as curl does: a
// refused first address followed by a working one is a connection.
#include <catch2/catch.hpp>
#include <vector>

#include "probes/common/tcp_client.h"
#include "tests/support/servers.h"

using namespace canaryd;
using canaryd::test::RawListener;

namespace {

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
  // RawListener listens on 127.0.0.1 only: the same port on ::1 refuses, as a server bound
  // to 127.0.0.1 does for a client that tries "localhost" as ::1 first.
  RawListener server(RawListener::Mode::kSilent);
  int closed = 0;
  {
    RawListener gone(RawListener::Mode::kSilent);
    closed = gone.port();
  }
  // ::1 refuses (nothing listens there); 127.0.0.1 accepts.
  CHECK(connect_all({{"::1", server.port()}, {"127.0.0.1", server.port()}}) == std::vector<int>{0});
  CHECK(connect_all({{"127.0.0.1", closed}, {"127.0.0.1", server.port()}}) == std::vector<int>{0});
  // The first address that works is used; later ones are not needed.
  CHECK(connect_all({{"127.0.0.1", server.port()}, {"127.0.0.1", closed}}) == std::vector<int>{0});
  // When none accepts the handler hears one failure, the last address's.
  CHECK(connect_all({{"::1", server.port()}, {"127.0.0.1", closed}}) ==
        std::vector<int>{UV_ECONNREFUSED});
}
