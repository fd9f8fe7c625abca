// The secret set (base/secrets.h): what redact() hides from every message,
// log line and page, and how long a value stays hidden once it is no longer
// configured or in use. Reloads across many configs are in
// secrets_reload_test.cc; ${env:}/${file:} expansion is in expand_test.cc.
#include "base/secrets.h"

#include <catch2/catch.hpp>
#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

using namespace canaryd;

namespace {

Secrets with(std::initializer_list<std::string> values) {
  Secrets s;
  for (const auto& v : values) s.add(v);
  return s;
}

const std::string kRedactedText(kRedacted);

}  // namespace

TEST_CASE("redact hides every occurrence and keeps the text around it", "[secrets]") {
  auto s = with({"hunter22"});
  CHECK(s.redact("user=bob pass=hunter22 again hunter22.") ==
        "user=bob pass=<redacted> again <redacted>.");
  CHECK(s.redact("nothing here") == "nothing here");
  CHECK(s.redact("") == "");
  CHECK(s.contains_secret("xhunter22x"));
  CHECK_FALSE(s.contains_secret("hunter2"));
}

TEST_CASE("overlapping and adjacent secrets become a single <redacted>, no part left showing",
          "[secrets]") {
  // Two values that overlap: "abcdef" and "cdefgh" in "abcdefgh".
  auto overlap = with({"abcdef", "cdefgh"});
  CHECK(overlap.redact("<<abcdefgh>>") == "<<" + kRedactedText + ">>");
  // One value overlapping itself.
  auto self = with({"aaaa"});
  CHECK(self.redact("xaaaaaay") == "x" + kRedactedText + "y");
  // Adjacent occurrences of two values.
  auto adjacent = with({"tokenAAAA", "tokenBBBB"});
  CHECK(adjacent.redact("tokenAAAAtokenBBBB!") == kRedactedText + "!");
  // Merged ranges are reported the same way.
  CHECK(overlap.secret_ranges("..abcdefgh..", 100) ==
        std::vector<std::pair<size_t, size_t>>{{2, 10}});
}

TEST_CASE("a secret that contains another is hidden whole, whatever order they were added in",
          "[secrets]") {
  // Were the short one replaced first, "-and-more" would show.
  for (bool short_first : {true, false}) {
    Secrets s;
    if (short_first) s.add("password");
    s.add("password-and-more");
    if (!short_first) s.add("password");
    INFO("short first: " << short_first);
    CHECK(s.redact("[password-and-more]") == "[" + kRedactedText + "]");
    CHECK(s.redact("[password]") == "[" + kRedactedText + "]");
    CHECK(s.longest() == std::string("password-and-more").size());
  }
}

TEST_CASE("values shorter than kMinLength are not secrets: the output stays readable",
          "[secrets]") {
  Secrets s;
  s.add("abc");
  s.add_transient("xyz");
  auto pin = s.pin("123");
  CHECK(s.size() == 0);
  CHECK(s.transient_size() == 0);
  CHECK(s.redact("abc xyz 123") == "abc xyz 123");
  CHECK(s.longest() == 0);
  s.add(std::string(Secrets::kMinLength, 'k'));
  CHECK(s.redact("kkkk") == kRedactedText);
  // Adding a value twice keeps one copy.
  s.add("kkkk");
  CHECK(s.size() == 1);
}

TEST_CASE("released run-time secrets stay hidden until kMaxTransient newer ones replace them",
          "[secrets]") {
  Secrets s;
  s.add_transient("token-oldest");
  for (size_t i = 1; i < Secrets::kMaxTransient; ++i) s.add_transient("token-" + std::to_string(i));
  CHECK(s.transient_size() == Secrets::kMaxTransient);
  CHECK(s.redact("token-oldest") == kRedactedText);  // the newest kMaxTransient include it
  s.add_transient("token-newest");
  CHECK(s.transient_size() == Secrets::kMaxTransient);
  CHECK(s.redact("token-oldest") == "token-oldest");  // pushed out by the newest
  CHECK(s.redact("token-1") == kRedactedText);
}

TEST_CASE("a run-time secret seen again becomes the newest, so it is not dropped early",
          "[secrets]") {
  Secrets s;
  s.add_transient("token-reused");
  for (size_t i = 1; i < Secrets::kMaxTransient; ++i) s.add_transient("token-" + std::to_string(i));
  s.add_transient("token-reused");  // a later run issued the same value again
  s.add_transient("token-newest");
  CHECK(s.redact("token-reused") == kRedactedText);
  CHECK(s.redact("token-1") == "token-1");  // now the oldest went instead
  CHECK(s.transient_size() == Secrets::kMaxTransient);
}

TEST_CASE("a pinned secret outlives any number of released ones, then ages like them",
          "[secrets]") {
  Secrets s;
  Secrets::Pin moved;
  {
    auto pin = s.pin("session-token-1");
    moved = std::move(pin);  // the pin travels with its owner; the moved-from one is inert
  }
  for (size_t i = 0; i < 2 * Secrets::kMaxTransient; ++i)
    s.add_transient("other-token-" + std::to_string(i));
  CHECK(s.redact("session-token-1") == kRedactedText);
  CHECK(s.transient_size() == Secrets::kMaxTransient + 1);
  moved.reset();
  moved.reset();  // a second reset does nothing
  CHECK(s.redact("session-token-1") == kRedactedText);
  for (size_t i = 0; i < Secrets::kMaxTransient; ++i)
    s.add_transient("later-token-" + std::to_string(i));
  CHECK(s.redact("session-token-1") == "session-token-1");
}

TEST_CASE("a reload moves values no longer configured to the released ones", "[secrets]") {
  Secrets global = with({"kept-secret", "removed-secret"});
  global.replace_configured(with({"kept-secret", "added-secret"}));
  CHECK(global.size() == 2);            // configured: kept and added
  CHECK(global.transient_size() == 1);  // released: removed
  CHECK(global.redact("kept-secret added-secret removed-secret") ==
        "<redacted> <redacted> <redacted>");
  // The kept value was never released, so it does not age out.
  for (size_t i = 0; i < Secrets::kMaxTransient; ++i)
    global.add_transient("run-token-" + std::to_string(i));
  CHECK(global.redact("kept-secret") == kRedactedText);
  CHECK(global.redact("removed-secret") == "removed-secret");
}

TEST_CASE("the digest changes when a configured value changes, and only then", "[secrets]") {
  const auto before = with({"api-key-v1", "db-password"}).digest();
  CHECK(with({"api-key-v1", "db-password"}).digest() == before);
  CHECK(with({"api-key-v2", "db-password"}).digest() != before);
  CHECK(with({"api-key-v1"}).digest() != before);
  CHECK(Secrets().digest() != before);
  // Run-time tokens are not configuration: a probe is not restarted for them.
  Secrets s = with({"api-key-v1", "db-password"});
  s.add_transient("issued-token");
  auto pin = s.pin("pinned-token");
  CHECK(s.digest() == before);
  // A copy carries the configured values (not the run-time ones) and so the digest.
  Secrets copy(s);
  CHECK(copy.digest() == before);
  CHECK(copy.transient_size() == 0);
}

TEST_CASE("merge adds the other set's configured values", "[secrets]") {
  Secrets a = with({"alpha-secret"});
  a.merge(with({"beta-secret", "alpha-secret"}));
  CHECK(a.size() == 2);
  CHECK(a.redact("alpha-secret beta-secret") == "<redacted> <redacted>");
}
