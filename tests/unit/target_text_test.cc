// target_text(): redact, then clip, then sanitize; and the redactor itself.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <string>

#include "base/secrets.h"
#include "daemon/state_store.h"
#include "tests/support/harness.h"

using canaryd::global_secrets;
using canaryd::kClipMarker;
using canaryd::LineBreaks;
using canaryd::Secrets;
using canaryd::target_text;
using canaryd::test::random_token;

namespace {

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// Whether any 4-byte piece of `secret` is in `text`.
bool shows_piece_of(const std::string& text, const std::string& secret) {
  for (size_t i = 0; i + 4 <= secret.size(); ++i)
    if (contains(text, secret.substr(i, 4))) return true;
  return false;
}

// Valid UTF-8 as nlohmann's strict serializer sees it.
bool valid_utf8(const std::string& text) {
  try {
    (void)nlohmann::json(text).dump();
    return true;
  } catch (const nlohmann::json::type_error&) {
    return false;
  }
}

}  // namespace

TEST_CASE("target_text: a secret is redacted before the clip could cut it", "[text]") {
  const std::string secret = random_token(20);
  global_secrets().add(secret);
  // The clip point falls at every position inside the secret in turn.
  for (size_t at = 0; at < 40; ++at) {
    const std::string raw = std::string(at, '.') + secret + std::string(200, '-');
    for (size_t max : {size_t{24}, size_t{30}, size_t{40}, size_t{64}}) {
      const std::string out = target_text(raw, max);
      INFO("offset " << at << ", max " << max << ": " << out);
      CHECK_FALSE(shows_piece_of(out, secret));
      CHECK(out.size() <= max);
      CHECK(contains(out, std::string(kClipMarker)));
    }
  }
  CHECK(target_text("key=" + secret) == "key=<redacted>");
}

TEST_CASE("target_text: a secret that starts near the end of the scanned window", "[text]") {
  const std::string secret = random_token(64);
  global_secrets().add(secret);
  // Long secrets shrink to kRedacted, so the window must grow to fill the
  // output; a secret straddling any window edge must still go whole.
  for (size_t at = 0; at < 100; at += 3) {
    std::string raw = std::string(at, 'x');
    for (int i = 0; i < 20; ++i) raw += secret + "|";
    const std::string out = target_text(raw, 128);
    INFO("offset " << at << ": " << out);
    CHECK_FALSE(shows_piece_of(out, secret));
    CHECK(out.size() <= 128);
    CHECK(contains(out, "<redacted>|"));
  }
}

TEST_CASE("target_text: overlapping and adjacent secrets go as one", "[text]") {
  global_secrets().add("OVERLAPabcd");
  global_secrets().add("abcdLAPPING");
  CHECK(target_text("[OVERLAPabcdLAPPING]") == "[<redacted>]");
  CHECK(global_secrets().redact("[OVERLAPabcdLAPPING]") == "[<redacted>]");
  CHECK(target_text("<OVERLAPabcdOVERLAPabcd>") == "<<redacted>>");
  Secrets local;
  local.add("aaaa");
  CHECK(local.redact("aaaaaa and aaa") == "<redacted> and aaa");
}

TEST_CASE("target_text: secrets holding bytes the sanitizer would change", "[text]") {
  const std::string with_controls = "pa\nss\x1b[w\xff" + random_token(6);
  global_secrets().add(with_controls);
  const std::string out = target_text("got '" + with_controls + "' back");
  CHECK(out == "got '<redacted>' back");
  CHECK(target_text(with_controls.substr(0, 5)) == "pa\\nss");  // a bare prefix is just text
}

TEST_CASE("target_text: clips at a character boundary with a visible marker", "[text]") {
  std::string raw;
  for (int i = 0; i < 200; ++i) raw += "\xc3\xa9\xe2\x82\xac\xf0\x9f\x90\xa6";  // é € 🐦
  for (size_t max = 12; max < 60; ++max) {
    const std::string out = target_text(raw, max);
    INFO("max " << max << ": " << out);
    CHECK(out.size() <= max);
    CHECK(valid_utf8(out));
    CHECK(out.size() >= kClipMarker.size());
    CHECK(out.substr(out.size() - kClipMarker.size()) == kClipMarker);
  }
  CHECK(target_text("short", 64) == "short");
  CHECK(target_text(std::string(64, 'a'), 64) == std::string(64, 'a'));
  const std::string clipped = target_text(std::string(65, 'a'), 64);
  CHECK(clipped == std::string(64 - kClipMarker.size(), 'a') + std::string(kClipMarker));
  // An escape is never cut in half either.
  const std::string escapes = target_text(std::string(100, '\x1b'), 30);
  CHECK(escapes == "\\x1b\\x1b\\x1b\\x1b" + std::string(kClipMarker));
}

TEST_CASE("target_text: control characters become visible escapes", "[text]") {
  CHECK(target_text("a\nb\rc\td\x1b[2Je\x7f\x01") == "a\\nb\\rc\\td\\x1b[2Je\\x7f\\x01");
  CHECK(target_text("forged\n2030-01-01T00:00:00.000Z info  probe X recovered") ==
        "forged\\n2030-01-01T00:00:00.000Z info  probe X recovered");
  CHECK(target_text("c1 \xc2\x9b"
                    "31m") == "c1 \\u009b31m");  // 8-bit CSI
  CHECK(target_text("ls \xe2\x80\xa8 ps \xe2\x80\xa9") == "ls \\u2028 ps \\u2029");
  CHECK(target_text("bidi \xe2\x80\xae"
                    "cba") == "bidi \\u202ecba");
  CHECK(target_text("tab\tok", 64, LineBreaks::kSpace) == "tab ok");
  CHECK(target_text("one\r\n\ttwo\nthree\rfour", 64, LineBreaks::kSpace) == "one two three\\rfour");
}

TEST_CASE("target_text: invalid UTF-8 becomes U+FFFD, valid text stays", "[text]") {
  const std::string fffd = "\xef\xbf\xbd";
  CHECK(target_text("a\xff"
                    "b") == "a" + fffd + "b");
  CHECK(target_text("overlong \xc0\xaf") == "overlong " + fffd + fffd);
  CHECK(target_text("surrogate \xed\xa0\x80") == "surrogate " + fffd + fffd + fffd);
  CHECK(target_text("cut \xe2\x82") == "cut " + fffd + fffd);
  CHECK(target_text("too big \xf4\x90\x80\x80") == "too big " + fffd + fffd + fffd + fffd);
  CHECK(target_text("caf\xc3\xa9 \xf0\x9f\x90\xa6") == "caf\xc3\xa9 \xf0\x9f\x90\xa6");
  std::string all_bytes;
  for (int i = 0; i < 256; ++i) all_bytes += static_cast<char>(i);
  const std::string out = target_text(all_bytes, 4096);
  CHECK(valid_utf8(out));
  CHECK(out.find_first_of(std::string("\n\r\x1b\0", 4)) == std::string::npos);
}

TEST_CASE("target_text: bounded output for any input, and stable when applied again", "[text]") {
  std::string huge(1024 * 1024, 'A');
  huge[100] = '\n';
  const std::string out = target_text(huge, 256);
  CHECK(out.size() <= 256);
  CHECK(contains(out, "\\n"));
  for (const std::string& raw :
       {huge, std::string("a\xff\x1b\n\xe2\x82"), std::string(300, '\x1b'), std::string("plain"),
        std::string("\xf0\x9f\x90\xa6") + std::string(500, 'x')}) {
    for (size_t max : {size_t{16}, size_t{64}, size_t{256}, size_t{1024}}) {
      const std::string once = target_text(raw, max);
      CHECK(target_text(once, max) == once);
      CHECK(target_text(once, 4 * max) == once);
      CHECK(once.size() <= max);
    }
  }
}

TEST_CASE("format_unix_time: far-future and hostile expiry values", "[text]") {
  CHECK(canaryd::format_unix_time(253402300799.0) == "9999-12-31T23:59:59.000Z");
  CHECK(canaryd::format_unix_time(1e300).rfind("9999-12-31T23:59:59.", 0) == 0);
  CHECK(canaryd::format_unix_time(-5) == "1970-01-01T00:00:00.000Z");
  CHECK(canaryd::format_unix_time(1700000000.25) == "2023-11-14T22:13:20.250Z");
}
