// The RESP reader of the Redis probe (probes/redis/resp.h): what a Redis
// server, a broken one or a hostile one sends, and what the probe makes of
// it. kIncomplete means "read more", kInvalid ends the run as a protocol
// failure, so a reply that can never complete must be kInvalid at once rather
// than wait for the timeout.
#include "probes/redis/resp.h"

#include <catch2/catch.hpp>
#include <string>
#include <string_view>

using namespace canaryd;

namespace {

struct Parsed {
  RespParse status = RespParse::kInvalid;
  size_t consumed = 0;
  RespValue value;
};

Parsed parse(std::string_view bytes) {
  Parsed p;
  p.status = parse_resp(bytes, p.consumed, p.value);
  return p;
}

// `depth` arrays of one element each around the integer 1.
std::string nested_arrays(int depth) {
  std::string out;
  for (int i = 0; i < depth; ++i) out += "*1\r\n";
  return out + ":1\r\n";
}

}  // namespace

TEST_CASE("RESP: each kind of complete reply is read with its value and length", "[resp]") {
  auto simple = parse("+PONG\r\n");
  REQUIRE(simple.status == RespParse::kOk);
  CHECK(simple.value.type == RespValue::Type::kSimple);
  CHECK(simple.value.text == "PONG");
  CHECK(simple.consumed == 7);

  auto error = parse("-NOAUTH Authentication required.\r\n");
  REQUIRE(error.status == RespParse::kOk);
  CHECK(error.value.type == RespValue::Type::kError);
  CHECK(error.value.text == "NOAUTH Authentication required.");

  auto integer = parse(":-42\r\n");
  REQUIRE(integer.status == RespParse::kOk);
  CHECK(integer.value.type == RespValue::Type::kInteger);
  CHECK(integer.value.integer == -42);

  // A bulk string is taken by its length, so CR LF inside it is data.
  auto bulk = parse("$8\r\nab\r\ncd\r\n\r\n");
  REQUIRE(bulk.status == RespParse::kOk);
  CHECK(bulk.value.type == RespValue::Type::kBulk);
  CHECK(bulk.value.text == "ab\r\ncd\r\n");
  CHECK(bulk.consumed == 14);

  auto empty = parse("$0\r\n\r\n");
  REQUIRE(empty.status == RespParse::kOk);
  CHECK(empty.value.type == RespValue::Type::kBulk);
  CHECK(empty.value.text.empty());

  CHECK(parse("$-1\r\n").value.type == RespValue::Type::kNull);
  CHECK(parse("*-1\r\n").value.type == RespValue::Type::kNull);
  auto no_items = parse("*0\r\n");
  REQUIRE(no_items.status == RespParse::kOk);
  CHECK(no_items.value.type == RespValue::Type::kArray);
  CHECK(no_items.value.items.empty());
}

TEST_CASE("RESP: only the first reply is consumed, the rest stays for the next read", "[resp]") {
  auto first = parse("+OK\r\n:1\r\n");
  REQUIRE(first.status == RespParse::kOk);
  CHECK(first.value.text == "OK");
  CHECK(first.consumed == 5);
}

TEST_CASE("RESP: a reply cut anywhere asks for more bytes, never fails or misreads", "[resp]") {
  const std::string whole = "*3\r\n$5\r\nhello\r\n*2\r\n:7\r\n+ok\r\n-ERR no\r\n";
  auto full = parse(whole);
  REQUIRE(full.status == RespParse::kOk);
  CHECK(full.consumed == whole.size());
  for (size_t cut = 0; cut < whole.size(); ++cut) {
    INFO("first " << cut << " bytes");
    CHECK(parse(std::string_view(whole).substr(0, cut)).status == RespParse::kIncomplete);
  }
}

TEST_CASE("RESP: nested arrays keep their structure", "[resp]") {
  auto reply = parse("*2\r\n*2\r\n:1\r\n$1\r\na\r\n*1\r\n$-1\r\n");
  REQUIRE(reply.status == RespParse::kOk);
  const auto& outer = reply.value;
  REQUIRE(outer.type == RespValue::Type::kArray);
  REQUIRE(outer.items.size() == 2);
  REQUIRE(outer.items[0].items.size() == 2);
  CHECK(outer.items[0].items[0].integer == 1);
  CHECK(outer.items[0].items[1].text == "a");
  REQUIRE(outer.items[1].items.size() == 1);
  CHECK(outer.items[1].items[0].type == RespValue::Type::kNull);
}

TEST_CASE("RESP: arrays nest at most kRespMaxDepth levels, deeper is invalid before it ends",
          "[resp]") {
  CHECK(parse(nested_arrays(kRespMaxDepth)).status == RespParse::kOk);
  CHECK(parse(nested_arrays(kRespMaxDepth + 1)).status == RespParse::kInvalid);
  // Headers alone are enough to refuse it: no need to wait for a body that may never come.
  std::string headers_only;
  for (int i = 0; i <= kRespMaxDepth + 1; ++i) headers_only += "*1\r\n";
  CHECK(parse(headers_only).status == RespParse::kInvalid);
  // A hostile depth costs nothing: refused at the cap, not followed down.
  std::string bomb;
  for (int i = 0; i < 100000; ++i) bomb += "*1\r\n";
  CHECK(parse(bomb).status == RespParse::kInvalid);
}

TEST_CASE("RESP: a first byte that starts no RESP value is invalid at once", "[resp]") {
  for (std::string_view garbage : {"HTTP/1.1 200 OK\r\n", "\x01\x02 this is not RESP\r\n",
                                   "PONG\r\n", " +OK\r\n", "\r\n", "\x16\x03\x01"}) {
    INFO(garbage);
    CHECK(parse(garbage).status == RespParse::kInvalid);
  }
  // Even a single byte: the line need not end for the verdict.
  CHECK(parse("H").status == RespParse::kInvalid);
  // Inside an array too.
  CHECK(parse("*2\r\n:1\r\n?x\r\n").status == RespParse::kInvalid);
  CHECK(parse("").status == RespParse::kIncomplete);
}

TEST_CASE("RESP: malformed numbers and framing are invalid", "[resp]") {
  for (std::string_view bad : {":\r\n", ":12a\r\n", ": 1\r\n", ":99999999999999999999\r\n", "$\r\n",
                               "$x\r\n", "$-2\r\n", "*-2\r\n", "*x\r\n",
                               // The bulk string's own CR LF is missing or wrong.
                               "$3\r\nabcXY", "$3\r\nabc\n\r"}) {
    INFO(bad);
    CHECK(parse(bad).status == RespParse::kInvalid);
  }
}

TEST_CASE("RESP: lengths past the caps are invalid from the header alone", "[resp]") {
  // Announced sizes that could never be buffered: refused before any body arrives,
  // so a hostile announcement is a protocol failure rather than a timeout.
  CHECK(parse("$" + std::to_string(kRespMaxBulk + 1) + "\r\n").status == RespParse::kInvalid);
  CHECK(parse("$9223372036854775807\r\n").status == RespParse::kInvalid);
  CHECK(parse("$99999999999999999999999\r\n").status == RespParse::kInvalid);
  CHECK(parse("*" + std::to_string(kRespMaxItems + 1) + "\r\n").status == RespParse::kInvalid);
  CHECK(parse("*9223372036854775807\r\n").status == RespParse::kInvalid);
  // At the caps they are still waited for, and complete.
  CHECK(parse("$" + std::to_string(kRespMaxBulk) + "\r\n").status == RespParse::kIncomplete);
  auto largest =
      parse("$" + std::to_string(kRespMaxBulk) + "\r\n" + std::string(kRespMaxBulk, 'b') + "\r\n");
  REQUIRE(largest.status == RespParse::kOk);
  CHECK(largest.value.text.size() == kRespMaxBulk);
  std::string most_items = "*" + std::to_string(kRespMaxItems) + "\r\n";
  for (size_t i = 0; i < kRespMaxItems; ++i) most_items += ":1\r\n";
  auto many = parse(most_items);
  REQUIRE(many.status == RespParse::kOk);
  CHECK(many.value.items.size() == kRespMaxItems);
}

TEST_CASE("RESP: a line that never ends is invalid once it is longer than any reply", "[resp]") {
  const std::string at_cap = "+" + std::string(kRespMaxBulk, 'a');
  CHECK(parse(at_cap).status == RespParse::kIncomplete);
  CHECK(parse(at_cap + "a").status == RespParse::kInvalid);
  CHECK(parse("-" + std::string(kRespMaxBulk + 1, 'e')).status == RespParse::kInvalid);
  CHECK(parse(":" + std::string(kRespMaxBulk + 1, '1')).status == RespParse::kInvalid);
}

TEST_CASE("RESP: a command is an array of bulk strings, any bytes allowed", "[resp]") {
  CHECK(resp_command({"PING"}) == "*1\r\n$4\r\nPING\r\n");
  CHECK(resp_command({"AUTH", "user", "p\r\nw"}) ==
        "*3\r\n$4\r\nAUTH\r\n$4\r\nuser\r\n$4\r\np\r\nw\r\n");
  CHECK(resp_command({"GET", ""}) == "*2\r\n$3\r\nGET\r\n$0\r\n\r\n");
  // What we send, we can read back.
  auto echoed = parse(resp_command({"SET", "k", "v\r\n"}));
  REQUIRE(echoed.status == RespParse::kOk);
  REQUIRE(echoed.value.items.size() == 3);
  CHECK(echoed.value.items[2].text == "v\r\n");
}

TEST_CASE("RESP: a reply quoted in a message is one short, safe line", "[resp]") {
  RespValue error;
  error.type = RespValue::Type::kError;
  error.text = "ERR bad\r\nforged log line";
  const std::string brief = resp_brief(error);
  CHECK(brief.find('\n') == std::string::npos);
  CHECK(brief.find('\r') == std::string::npos);
  CHECK(brief.find("ERR bad") == 0);

  RespValue huge;
  huge.type = RespValue::Type::kBulk;
  huge.text = std::string(kRespMaxBulk, 'x');
  CHECK(resp_brief(huge).size() <= 80);

  RespValue array;
  array.type = RespValue::Type::kArray;
  array.items.resize(3);
  CHECK(resp_brief(array) == "(array of 3)");
  CHECK(resp_brief(RespValue{}) == "(nil)");
  RespValue integer;
  integer.type = RespValue::Type::kInteger;
  integer.integer = -7;
  CHECK(resp_brief(integer) == "-7");
}
