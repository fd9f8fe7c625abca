// Exercises HttpServer over real loopback sockets: libcurl as a well-behaved client, raw
// sockets for the malformed, slow and hostile ones.

#include "daemon/http_server.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdio>
#include <functional>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>

#include "tests/support/raw_http_client.h"

namespace canaryd {
namespace {

using test::RawSocket;

// Generous: only there so a broken server fails the test instead of hanging it.
constexpr int kSafetyTimeoutMs = 10000;

struct CurlResult {
  CURLcode code = CURLE_OK;
  long status = 0;
  std::string body;
  std::string headers;
  std::string content_type;
  long new_connections = 0;
};

size_t append_to_string(char* data, size_t size, size_t nmemb, void* user) {
  static_cast<std::string*>(user)->append(data, size * nmemb);
  return size * nmemb;
}

class Curl {
 public:
  Curl() : handle_(curl_easy_init()) { REQUIRE(handle_ != nullptr); }
  ~Curl() {
    curl_slist_free_all(headers_);
    curl_easy_cleanup(handle_);
  }
  Curl(const Curl&) = delete;
  Curl& operator=(const Curl&) = delete;

  CURL* get() { return handle_; }

  void add_header(const std::string& line) { headers_ = curl_slist_append(headers_, line.c_str()); }

  CurlResult perform(const std::string& url) {
    CurlResult r;
    curl_easy_setopt(handle_, CURLOPT_URL, url.c_str());
    curl_easy_setopt(handle_, CURLOPT_WRITEFUNCTION, &append_to_string);
    curl_easy_setopt(handle_, CURLOPT_WRITEDATA, &r.body);
    curl_easy_setopt(handle_, CURLOPT_HEADERFUNCTION, &append_to_string);
    curl_easy_setopt(handle_, CURLOPT_HEADERDATA, &r.headers);
    curl_easy_setopt(handle_, CURLOPT_TIMEOUT_MS, static_cast<long>(kSafetyTimeoutMs));
    curl_easy_setopt(handle_, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(handle_, CURLOPT_HTTPHEADER, headers_);
    r.code = curl_easy_perform(handle_);
    curl_easy_getinfo(handle_, CURLINFO_RESPONSE_CODE, &r.status);
    char* ct = nullptr;
    if (curl_easy_getinfo(handle_, CURLINFO_CONTENT_TYPE, &ct) == CURLE_OK && ct) {
      r.content_type = ct;
    }
    curl_easy_getinfo(handle_, CURLINFO_NUM_CONNECTS, &r.new_connections);
    return r;
  }

 private:
  CURL* handle_;
  curl_slist* headers_ = nullptr;
};

std::string url(const HttpServer& server, const std::string& target) {
  return "http://127.0.0.1:" + std::to_string(server.port()) + target;
}

CurlResult fetch(const HttpServer& server, const std::string& target) {
  Curl curl;
  return curl.perform(url(server, target));
}

// A handler that reports what it received, plus a few special paths.
HttpResponse echo_handler(const HttpRequest& req) {
  HttpResponse r;
  if (req.path == "/missing") {
    r.status = 404;
    r.body = "no such thing\n";
    r.headers.emplace_back("X-Probe", "none");
    return r;
  }
  if (req.path == "/throw") throw std::runtime_error("boom");
  if (req.path == "/big") {
    r.body.assign(16 * 1024 * 1024, 'x');
    return r;
  }
  if (req.path == "/sized") {  // "/sized?<bytes>", body ends with the path for ordering.
    r.body.assign(std::stoul(req.query), 's');
    r.body += "|" + req.header("x-seq");
    return r;
  }
  r.body =
      req.method + "|" + req.path + "|" + req.query + "|" + req.header("x-test") + "|" + req.body;
  return r;
}

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

size_t count_of(const std::string& haystack, const std::string& needle) {
  size_t n = 0;
  for (size_t p = haystack.find(needle); p != std::string::npos; p = haystack.find(needle, p + 1)) {
    ++n;
  }
  return n;
}

}  // namespace

TEST_CASE("GET reaches the handler with method, decoded path, query and headers", "[http_server]") {
  HttpServer server("127.0.0.1", 0, echo_handler);
  REQUIRE(server.port() > 0);
  server.start();

  Curl curl;
  curl.add_header("X-Test: hello");
  const auto r = curl.perform(url(server, "/api/v1/state/foo%20bar?x=1&y=%41"));
  REQUIRE(r.code == CURLE_OK);
  CHECK(r.status == 200);
  CHECK(r.body == "GET|/api/v1/state/foo bar|x=1&y=%41|hello|");
  CHECK(r.content_type == "text/plain; charset=utf-8");
  CHECK(contains(r.headers, "Content-Length: "));
}

TEST_CASE("POST body arrives, including a large one sent after 100 Continue", "[http_server]") {
  HttpServer server("127.0.0.1", 0, echo_handler);
  server.start();

  {
    Curl curl;
    curl_easy_setopt(curl.get(), CURLOPT_POSTFIELDS, "reload=now");
    const auto r = curl.perform(url(server, "/-/reload"));
    REQUIRE(r.code == CURLE_OK);
    CHECK(r.status == 200);
    CHECK(r.body == "POST|/-/reload|||reload=now");
  }
  {
    const std::string big(900 * 1024, 'b');
    Curl curl;
    curl.add_header("Expect: 100-continue");
    curl_easy_setopt(curl.get(), CURLOPT_POSTFIELDS, big.c_str());
    curl_easy_setopt(curl.get(), CURLOPT_POSTFIELDSIZE, static_cast<long>(big.size()));
    const auto r = curl.perform(url(server, "/upload"));
    REQUIRE(r.code == CURLE_OK);
    CHECK(r.status == 200);
    CHECK(contains(r.headers, "100 Continue"));
    CHECK(r.body == "POST|/upload|||" + big);
  }
}

TEST_CASE("keep-alive serves several requests on one connection", "[http_server]") {
  std::atomic<int> calls{0};
  HttpServer server("127.0.0.1", 0, [&](const HttpRequest& req) {
    ++calls;
    return echo_handler(req);
  });
  server.start();

  Curl curl;
  const auto first = curl.perform(url(server, "/metrics"));
  REQUIRE(first.code == CURLE_OK);
  CHECK(first.status == 200);
  CHECK(first.new_connections == 1);
  CHECK_FALSE(contains(first.headers, "Connection: close"));

  const auto second = curl.perform(url(server, "/-/healthy"));
  REQUIRE(second.code == CURLE_OK);
  CHECK(second.status == 200);
  CHECK(second.body == "GET|/-/healthy|||");
  CHECK(second.new_connections == 0);  // Reused.
  CHECK(calls == 2);
}

TEST_CASE("a handler's 404 and extra headers pass through", "[http_server]") {
  HttpServer server("127.0.0.1", 0, echo_handler);
  server.start();
  const auto r = fetch(server, "/missing");
  REQUIRE(r.code == CURLE_OK);
  CHECK(r.status == 404);
  CHECK(r.body == "no such thing\n");
  CHECK(contains(r.headers, "X-Probe: none"));
}

TEST_CASE("an oversized header block gets 431 and the connection is closed", "[http_server]") {
  HttpServer server("127.0.0.1", 0, echo_handler);
  server.start();

  Curl curl;
  curl.add_header("X-Huge: " + std::string(20000, 'h'));
  const auto r = curl.perform(url(server, "/metrics"));
  REQUIRE(r.code == CURLE_OK);
  CHECK(r.status == 431);
  CHECK(contains(r.headers, "Connection: close"));

  // The server is unaffected.
  CHECK(fetch(server, "/metrics").status == 200);
}

TEST_CASE("a throwing handler yields 500 and the server keeps serving", "[http_server]") {
  HttpServer server("127.0.0.1", 0, echo_handler);
  server.start();

  Curl curl;
  const auto bad = curl.perform(url(server, "/throw"));
  REQUIRE(bad.code == CURLE_OK);
  CHECK(bad.status == 500);
  CHECK_FALSE(bad.body.empty());
  CHECK(bad.body.size() < 100);

  const auto good = curl.perform(url(server, "/fine"));
  REQUIRE(good.code == CURLE_OK);
  CHECK(good.status == 200);
  CHECK(good.body == "GET|/fine|||");
}

TEST_CASE("silent, trickling and non-reading clients do not block others", "[http_server]") {
  HttpServer server("127.0.0.1", 0, echo_handler);
  server.start();

  RawSocket silent(server.port());
  RawSocket trickle(server.port());
  trickle.send_all("GET /metr");
  RawSocket hoarder(server.port());
  // Asks for 16 MiB and never reads it: the server's write stays pending.
  hoarder.send_all("GET /big HTTP/1.1\r\nHost: x\r\n\r\n");

  const auto r = fetch(server, "/metrics");
  REQUIRE(r.code == CURLE_OK);
  CHECK(r.status == 200);
  CHECK(r.body == "GET|/metrics|||");
}

TEST_CASE("idle connections are closed after the idle timeout", "[http_server]") {
  HttpServerLimits limits;
  limits.idle_timeout = std::chrono::milliseconds(200);
  HttpServer server("127.0.0.1", 0, echo_handler, limits);
  server.start();

  RawSocket silent(server.port());
  RawSocket trickle(server.port());
  trickle.send_all("GET /metrics HTTP/1.1\r\n");
  std::string ignored;
  CHECK(silent.read_until_closed(&ignored));
  CHECK(trickle.read_until_closed(&ignored));
  CHECK(ignored.empty());
}

TEST_CASE("pipelined requests are answered in order", "[http_server]") {
  HttpServer server("127.0.0.1", 0, echo_handler);
  server.start();

  RawSocket sock(server.port());
  sock.send_all(
      "GET /one HTTP/1.1\r\nHost: x\r\n\r\n"
      "POST /two HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
      "GET /three?q HTTP/1.1\r\nHost: x\r\n\r\n");
  std::string out;
  REQUIRE(sock.read_responses(3, &out));
  const size_t one = out.find("GET|/one|||");
  const size_t two = out.find("POST|/two|||abc");
  const size_t three = out.find("GET|/three|q||");
  REQUIRE(one != std::string::npos);
  REQUIRE(two != std::string::npos);
  REQUIRE(three != std::string::npos);
  CHECK(one < two);
  CHECK(two < three);
  CHECK(count_of(out, "HTTP/1.1 200 OK\r\n") == 3);
}

// The most bytes of responses the kernel can hold for a client that reads nothing: the
// server's send buffer (autotuned up to tcp_wmem's maximum) plus the client's receive buffer.
size_t kernel_response_capacity(int client_fd) {
  size_t send_max = 4 * 1024 * 1024;  // Linux's default tcp_wmem maximum
  if (std::FILE* f = std::fopen("/proc/sys/net/ipv4/tcp_wmem", "r")) {
    size_t low = 0, initial = 0, max = 0;
    if (std::fscanf(f, "%zu %zu %zu", &low, &initial, &max) == 3) send_max = max;
    std::fclose(f);
  }
  int receive = 0;
  socklen_t len = sizeof(receive);
  REQUIRE(getsockopt(client_fd, SOL_SOCKET, SO_RCVBUF, &receive, &len) == 0);
  return send_max + static_cast<size_t>(receive);
}

TEST_CASE(
    "a client pipelining faster than it reads holds the server to one queued response, then "
    "gets every response in order",
    "[http_server]") {
  std::atomic<int> handled{0};
  HttpServer server("127.0.0.1", 0, [&](const HttpRequest& req) {
    ++handled;
    return echo_handler(req);
  });
  server.start();

  // 1 MB answers to 32 pipelined requests: 32 MB if the server produced them all up front,
  // well below the 64 MB pending-write cap, so only back-pressure can hold it back.
  constexpr size_t kResponseBytes = 1024 * 1024;
  constexpr int kRequests = 32;
  // A fixed, small receive buffer (set before connect, so autotuning cannot grow it).
  RawSocket sock(server.port(), 64 * 1024);
  // While the client reads nothing, the server hands the kernel whole responses until one
  // does not fit; that one stays in its write queue and no further request is handled until
  // it drains. +2: that queued response, and one for the kernel's buffer accounting.
  const size_t bound = kernel_response_capacity(sock.fd()) / kResponseBytes + 2;
  INFO("at most " << bound << " requests handled before the client reads");
  REQUIRE(bound < static_cast<size_t>(kRequests));

  std::string requests;
  for (int i = 0; i < kRequests; ++i) {
    requests += "GET /sized?" + std::to_string(kResponseBytes) +
                " HTTP/1.1\r\nX-Seq: " + std::to_string(i) + "\r\n\r\n";
  }
  sock.send_all(requests);  // ~2 KB: the kernel takes it whole
  // Not reading yet. Wait until the server stops making progress (no new request handled
  // for a second), bounded so a server that never stops still ends the test.
  int seen = -1;
  for (int quiet = 0, polls = 0; quiet < 10 && polls < 200; ++polls) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    const int now = handled.load();
    quiet = now == seen ? quiet + 1 : 0;
    seen = now;
  }
  CHECK(seen >= 1);
  CHECK(static_cast<size_t>(seen) <= bound);

  // Now the client reads: every response arrives, whole and in request order, on the same
  // connection. Each is checked and dropped as it completes, so the test holds ~1 MB.
  std::string pending;
  int next = 0;
  const bool all = sock.consume_responses(kRequests, &pending, [&](const std::string& response) {
    INFO("response " << next);
    CHECK(response.rfind("HTTP/1.1 200 OK\r\n", 0) == 0);
    const std::string tail = "s|" + std::to_string(next);
    CHECK(response.size() > kResponseBytes);
    CHECK(response.compare(response.size() - tail.size(), tail.size(), tail) == 0);
    ++next;
  });
  CHECK(all);
  CHECK(next == kRequests);
  CHECK(pending.empty());
  CHECK(handled.load() == kRequests);
}

TEST_CASE("a response beyond the pending-write cap closes the connection", "[http_server]") {
  HttpServerLimits limits;
  limits.max_pending_write_bytes = 1024 * 1024;
  HttpServer server("127.0.0.1", 0, echo_handler, limits);
  server.start();

  RawSocket sock(server.port());
  sock.send_all("GET /big HTTP/1.1\r\n\r\n");
  std::string out;
  CHECK(sock.read_until_closed(&out));
  CHECK(out.size() < 16u * 1024 * 1024);
  CHECK(fetch(server, "/small").status == 200);
}

TEST_CASE("a client that half-closes after its request still gets the response", "[http_server]") {
  HttpServer server("127.0.0.1", 0, echo_handler);
  server.start();

  RawSocket sock(server.port());
  sock.send_all("GET /sized?3000000 HTTP/1.1\r\nX-Seq: last\r\n\r\n");
  sock.shutdown_write();
  std::string out;
  REQUIRE(sock.read_until_closed(&out));
  CHECK(out.rfind("HTTP/1.1 200 OK\r\n", 0) == 0);
  CHECK(out.size() > 3000000);
  CHECK(out.substr(out.size() - 6) == "s|last");
}

// A handler that defers /later and keeps the responder for the test to call.
class DeferringHandler {
 public:
  HttpResponse operator()(const HttpRequest& req) {
    if (req.path != "/later") return echo_handler(req);
    HttpResponse r;
    r.deferred = [this](HttpRespond respond) {
      std::lock_guard lock(mu_);
      pending_ = std::move(respond);
    };
    return r;
  }
  // Waits (bounded) until a request is deferred, then takes its responder.
  HttpRespond take() {
    const auto deadline =
        std::chrono::steady_clock::now() + std::chrono::milliseconds(kSafetyTimeoutMs);
    while (std::chrono::steady_clock::now() < deadline) {
      {
        std::lock_guard lock(mu_);
        if (pending_) return std::exchange(pending_, nullptr);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return nullptr;
  }

 private:
  std::mutex mu_;
  HttpRespond pending_;
};

TEST_CASE("a deferred response holds no other client up and comes when given", "[http_server]") {
  DeferringHandler handler;
  HttpServer server("127.0.0.1", 0, [&](const HttpRequest& r) { return handler(r); });
  server.start();

  RawSocket sock(server.port());
  sock.send_all(
      "GET /later HTTP/1.1\r\nHost: x\r\n\r\n"
      "GET /after HTTP/1.1\r\nHost: x\r\n\r\n");
  HttpRespond respond = handler.take();
  REQUIRE(respond);
  // Another client is served while /later waits.
  const CurlResult other = fetch(server, "/other");
  CHECK(other.status == 200);
  CHECK(other.body == "GET|/other|||");

  // Answered from another thread; only the first answer counts.
  std::thread([&] {
    HttpResponse r;
    r.status = 202;
    r.body = "done";
    respond(r);
    r.body = "twice";
    respond(r);
  }).join();
  std::string out;
  REQUIRE(sock.read_responses(2, &out));
  CHECK(out.rfind("HTTP/1.1 202 Accepted\r\n", 0) == 0);
  // The pipelined request waited its turn.
  CHECK(out.find("done") < out.find("GET|/after"));
  CHECK_FALSE(contains(out, "twice"));
}

TEST_CASE("a deferred answer after the client or the server is gone does nothing",
          "[http_server]") {
  DeferringHandler handler;
  HttpServer server("127.0.0.1", 0, [&](const HttpRequest& r) { return handler(r); });
  server.start();
  HttpRespond first;
  {
    RawSocket sock(server.port());
    sock.send_all("GET /later HTTP/1.1\r\nHost: x\r\n\r\n");
    first = handler.take();
    REQUIRE(first);
  }
  first(HttpResponse{});  // the client has left: the answer goes nowhere

  RawSocket sock(server.port());
  sock.send_all("GET /later HTTP/1.1\r\nHost: x\r\n\r\n");
  HttpRespond respond = handler.take();
  REQUIRE(respond);
  CHECK(fetch(server, "/still").status == 200);
  server.stop();
  respond(HttpResponse{});  // the server is gone: nothing happens
}

TEST_CASE("HEAD answers headers only", "[http_server]") {
  HttpServer server("127.0.0.1", 0, echo_handler);
  server.start();

  RawSocket sock(server.port());
  sock.send_all("HEAD /x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  std::string out;
  REQUIRE(sock.read_until_closed(&out));
  CHECK(out.rfind("HTTP/1.1 200 OK\r\n", 0) == 0);
  CHECK(contains(out, "Content-Length: 10\r\n"));  // "HEAD|/x|||" would be 10 bytes.
  CHECK(contains(out, "Connection: close\r\n"));
  CHECK(out.size() == out.find("\r\n\r\n") + 4);  // No body.
}

TEST_CASE("protocol errors get the right status and close the connection", "[http_server]") {
  HttpServerLimits limits;
  limits.max_body_bytes = 100;
  HttpServer server("127.0.0.1", 0, echo_handler, limits);
  server.start();

  struct Case {
    std::string request;
    std::string status_line;
  };
  const Case cases[] = {
      {"garbage\r\n\r\n", "HTTP/1.1 400 "},
      {"GET /a b HTTP/1.1\r\n\r\n", "HTTP/1.1 400 "},
      {"GET / HTTP/1.1\r\nBad Header: x\r\n\r\n", "HTTP/1.1 400 "},
      {"GET /%zz HTTP/1.1\r\n\r\n", "HTTP/1.1 400 "},
      {"GET / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", "HTTP/1.1 400 "},
      {"GET / HTTP/2.0\r\n\r\n", "HTTP/1.1 505 "},
      {"POST / HTTP/1.1\r\nContent-Length: 101\r\n\r\n", "HTTP/1.1 413 "},
      {"POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n", "HTTP/1.1 413 "},
      {"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", "HTTP/1.1 411 "},
  };
  for (const auto& c : cases) {
    INFO(c.request);
    RawSocket sock(server.port());
    sock.send_all(c.request);
    std::string out;
    REQUIRE(sock.read_until_closed(&out));
    CHECK(out.rfind(c.status_line, 0) == 0);
    CHECK(contains(out, "Connection: close\r\n"));
  }
}

TEST_CASE("413 reaches a client that is still uploading", "[http_server]") {
  HttpServerLimits limits;
  limits.max_body_bytes = 1000;
  HttpServer server("127.0.0.1", 0, echo_handler, limits);
  server.start();

  RawSocket sock(server.port());
  sock.send_all("POST /up HTTP/1.1\r\nContent-Length: 200000\r\n\r\n" + std::string(200000, 'u'));
  std::string out;
  REQUIRE(sock.read_until_closed(&out));
  CHECK(out.rfind("HTTP/1.1 413 ", 0) == 0);
}

TEST_CASE("HTTP/1.0 and Connection: close end the connection after the response", "[http_server]") {
  HttpServer server("127.0.0.1", 0, echo_handler);
  server.start();

  for (const std::string request : {"GET /a HTTP/1.0\r\n\r\n",
                                    "GET /a HTTP/1.1\r\nConnection: close\r\n\r\n"
                                    "GET /ignored HTTP/1.1\r\n\r\n"}) {
    RawSocket sock(server.port());
    sock.send_all(request);
    std::string out;
    REQUIRE(sock.read_until_closed(&out));
    CHECK(out.rfind("HTTP/1.1 200 OK\r\n", 0) == 0);
    CHECK(contains(out, "Connection: close\r\n"));
    CHECK(count_of(out, "HTTP/1.1 ") == 1);
  }

  // HTTP/1.0 may opt in to keep-alive.
  RawSocket sock(server.port());
  sock.send_all("GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
  std::string out;
  REQUIRE(sock.read_responses(1, &out));
  CHECK(contains(out, "Connection: keep-alive\r\n"));
  sock.send_all("GET /b HTTP/1.0\r\n\r\n");
  REQUIRE(sock.read_until_closed(&out));
  CHECK(contains(out, "GET|/b|||"));
}

TEST_CASE("connections beyond the limit are refused without harming existing ones",
          "[http_server]") {
  HttpServerLimits limits;
  limits.max_connections = 1;
  HttpServer server("127.0.0.1", 0, echo_handler, limits);
  server.start();

  RawSocket first(server.port());
  first.send_all("GET /a HTTP/1.1\r\n\r\n");
  std::string out;
  REQUIRE(first.read_responses(1, &out));  // Now certainly accepted and counted.

  RawSocket second(server.port());
  std::string refused;
  CHECK(second.read_until_closed(&refused));
  CHECK(refused.empty());

  first.send_all("GET /b HTTP/1.1\r\n\r\n");
  REQUIRE(first.read_responses(2, &out));
  CHECK(contains(out, "GET|/b|||"));
}

TEST_CASE("a port in use gives a clear runtime_error", "[http_server]") {
  HttpServer first("127.0.0.1", 0, echo_handler);
  try {
    HttpServer second("127.0.0.1", first.port(), echo_handler);
    FAIL("second server bound a port already in use");
  } catch (const std::runtime_error& e) {
    const std::string what = e.what();
    CHECK(contains(what, "address already in use"));
    CHECK(contains(what, "127.0.0.1:" + std::to_string(first.port())));
  }
}

TEST_CASE("a non-numeric host is rejected", "[http_server]") {
  CHECK_THROWS_AS(HttpServer("localhost", 0, echo_handler), std::runtime_error);
  CHECK_THROWS_AS(HttpServer("127.0.0.1", 70000, echo_handler), std::runtime_error);
}

TEST_CASE("IPv6 literals are accepted", "[http_server]") {
  std::unique_ptr<HttpServer> server;
  try {
    server = std::make_unique<HttpServer>("::1", 0, echo_handler);
  } catch (const std::runtime_error& e) {
    WARN("skipping, no IPv6 loopback: " << e.what());
    return;
  }
  server->start();
  Curl curl;
  const auto r = curl.perform("http://[::1]:" + std::to_string(server->port()) + "/v6");
  REQUIRE(r.code == CURLE_OK);
  CHECK(r.body == "GET|/v6|||");
}

TEST_CASE("stop() is idempotent and the destructor joins", "[http_server]") {
  SECTION("stop twice, then destroy") {
    HttpServer server("127.0.0.1", 0, echo_handler);
    server.start();
    CHECK(fetch(server, "/a").status == 200);
    server.stop();
    server.stop();
    CHECK_THROWS_AS(server.start(), std::logic_error);
    // The listener is gone.
    Curl curl;
    curl_easy_setopt(curl.get(), CURLOPT_CONNECTTIMEOUT_MS, 2000L);
    CHECK(curl.perform(url(server, "/a")).code != CURLE_OK);
  }
  SECTION("never started") {
    HttpServer server("127.0.0.1", 0, echo_handler);
    server.stop();
    server.stop();
  }
  SECTION("destroyed while running with open connections and pending writes") {
    auto server = std::make_unique<HttpServer>("127.0.0.1", 0, echo_handler);
    server->start();
    server->start();  // No-op.
    RawSocket idle(server->port());
    RawSocket hoarder(server->port());
    hoarder.send_all("GET /big HTTP/1.1\r\n\r\n");
    CHECK(fetch(*server, "/a").status == 200);
    server.reset();
    std::string out;
    CHECK(idle.read_until_closed(&out));
  }
  SECTION("the port is free again after stop") {
    int port = 0;
    {
      HttpServer server("127.0.0.1", 0, echo_handler);
      port = server.port();
      server.start();
    }
    HttpServer again("127.0.0.1", port, echo_handler);
    again.start();
    CHECK(fetch(again, "/a").status == 200);
  }
}

}  // namespace canaryd
