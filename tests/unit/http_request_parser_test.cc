// The endpoint server's request parser alone, bytes in and requests out (the
// server around it is tested in http_server_test.cc over real sockets).
#include "daemon/http_request_parser.h"

#include <catch2/catch.hpp>
#include <string>
#include <vector>

using canaryd::HttpRequestParser;
using Result = HttpRequestParser::Result;

namespace {

struct Fed {
  std::vector<canaryd::RequestHead> requests;
  int error = 0;
};

// Feeds `stream` `chunk` bytes at a time, as reads arrive on a connection.
Fed feed(const std::string& stream, size_t chunk, size_t max_header = 1024, size_t max_body = 64) {
  Fed out;
  HttpRequestParser p(max_header, max_body);
  std::string in;
  for (size_t fed = 0; fed < stream.size();) {
    in += stream.substr(fed, chunk);
    fed += chunk;
    while (true) {
      size_t used = 0;
      Result r = p.parse(in, &used);
      in.erase(0, used);
      if (r == Result::kError) {
        out.error = p.error_status();
        return out;
      }
      if (r == Result::kNeedMore) break;
      out.requests.push_back(p.take());
    }
  }
  return out;
}

}  // namespace

TEST_CASE("request parser: pipelined requests come out the same whatever the read size") {
  const std::string stream =
      "\r\nGET /api/v1/state/a%2Db?x=1 HTTP/1.1\r\nHost: h\r\n\r\n"
      "POST /-/reload HTTP/1.1\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello"
      "GET / HTTP/1.0\n\n";
  for (size_t chunk : {1, 2, 3, 7, 1000}) {
    INFO("chunk " << chunk);
    Fed fed = feed(stream, chunk);
    CHECK(fed.error == 0);
    REQUIRE(fed.requests.size() == 3);
    CHECK(fed.requests[0].request.path == "/api/v1/state/a-b");
    CHECK(fed.requests[0].request.query == "x=1");
    CHECK(fed.requests[0].request.header("host") == "h");
    CHECK(fed.requests[1].request.body == "hello");
    CHECK_FALSE(fed.requests[1].keep_alive);
    CHECK(fed.requests[2].http10);
    CHECK_FALSE(fed.requests[2].keep_alive);
  }
}

TEST_CASE("request parser: the head waits for its body, and reports Expect: 100-continue") {
  HttpRequestParser p(1024, 64);
  std::string in = "POST /x HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n";
  size_t used = 0;
  CHECK(p.parse(in, &used) == Result::kNeedMore);
  CHECK(used == in.size());
  CHECK(p.reading_body());
  CHECK(p.head().expect_continue);
  CHECK(p.parse("ab", &used) == Result::kNeedMore);
  CHECK(used == 0);
  CHECK(p.parse("abc", &used) == Result::kRequest);
  CHECK(used == 3);
  CHECK(p.take().request.body == "abc");
  CHECK_FALSE(p.reading_body());
}

TEST_CASE("request parser: limits and malformed heads are error statuses, and stay so") {
  CHECK(feed(std::string(2000, 'a'), 100).error == 431);
  CHECK(feed("POST / HTTP/1.1\r\nContent-Length: 65\r\n\r\n", 1000).error == 413);
  CHECK(feed("GET / HTTP/2.0\r\n\r\n", 1000).error == 505);
  CHECK(feed("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 1000).error == 411);
  CHECK(feed("GET / HTTP/1.1\r\nExpect: nothing\r\n\r\n", 1000).error == 417);
  CHECK(feed("GET /%00 HTTP/1.1\r\n\r\n", 1000).error == 400);
  CHECK(feed("GET / HTTP/1.1\r\n folded\r\n\r\n", 1000).error == 400);
  HttpRequestParser p(1024, 64);
  size_t used = 0;
  CHECK(p.parse("BAD\r\n\r\n", &used) == Result::kError);
  CHECK(p.parse("GET / HTTP/1.1\r\n\r\n", &used) == Result::kError);
  CHECK(used == 0);
  CHECK(p.error_status() == 400);
}
