// ${env:NAME} and ${file:PATH} in config values (expand_references, in
// base/yaml_section.h): what a value becomes, which parts become secrets, and
// the errors a user sees, none of which may quote a secret.
#include <stdlib.h>

#include <catch2/catch.hpp>
#include <optional>
#include <string>
#include <utility>

#include "base/bounded_read.h"
#include "base/secrets.h"
#include "base/yaml_section.h"
#include "tests/support/harness.h"

using namespace canaryd;

namespace {

// Sets an environment variable for one test and removes it afterwards.
class ScopedEnv {
 public:
  ScopedEnv(std::string name, const std::string& value) : name_(std::move(name)) {
    REQUIRE(setenv(name_.c_str(), value.c_str(), 1) == 0);
  }
  ~ScopedEnv() { unsetenv(name_.c_str()); }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  std::string name_;
};

struct Expanded {
  std::optional<std::string> value;
  std::string error;
  Secrets secrets;
};

Expanded expand(const std::string& text) {
  Expanded e;
  e.value = expand_references(text, e.error, &e.secrets);
  return e;
}

}  // namespace

TEST_CASE("${env:NAME} becomes the variable's value, and only the value is a secret", "[expand]") {
  ScopedEnv key("CANARYD_EXPAND_KEY", "env-secret-9a8b7c");
  auto e = expand("Bearer ${env:CANARYD_EXPAND_KEY}");
  REQUIRE(e.value);
  CHECK(*e.value == "Bearer env-secret-9a8b7c");
  CHECK(e.error.empty());
  CHECK(e.secrets.size() == 1);
  CHECK(e.secrets.redact(*e.value) == "Bearer <redacted>");
}

TEST_CASE("${file:PATH} becomes the file's content without its trailing line breaks", "[expand]") {
  test::TempDir dir;
  const std::string unix_file = dir.write_file("unix", "file-secret-1\n");
  const std::string dos_file = dir.write_file("dos", "file-secret-2\r\n\r\n");
  const std::string inner_file = dir.write_file("inner", "line one\nline two\n");
  auto e = expand("${file:" + unix_file + "}:${file:" + dos_file + "}");
  REQUIRE(e.value);
  CHECK(*e.value == "file-secret-1:file-secret-2");
  CHECK(e.secrets.redact(*e.value) == "<redacted>:<redacted>");
  // Only trailing breaks go: a multi-line secret keeps its inner ones.
  auto inner = expand("${file:" + inner_file + "}");
  REQUIRE(inner.value);
  CHECK(*inner.value == "line one\nline two");
}

TEST_CASE("text without a complete reference is left as it is", "[expand]") {
  for (const std::string text : {"", "plain", "cost: $5", "{env:HOME}", "$env:HOME", "a$", "}"}) {
    INFO(text);
    auto e = expand(text);
    REQUIRE(e.value);
    CHECK(*e.value == text);
    CHECK(e.secrets.size() == 0);
  }
}

TEST_CASE("a value is not expanded again: a secret that looks like a reference stays literal",
          "[expand]") {
  ScopedEnv outer("CANARYD_EXPAND_OUTER", "${env:CANARYD_EXPAND_INNER}");
  ScopedEnv inner("CANARYD_EXPAND_INNER", "must-not-appear");
  auto e = expand("x=${env:CANARYD_EXPAND_OUTER}");
  REQUIRE(e.value);
  CHECK(*e.value == "x=${env:CANARYD_EXPAND_INNER}");
}

TEST_CASE("references do not nest: ${env:${env:X}} is an error, not a half expansion", "[expand]") {
  ScopedEnv name("CANARYD_EXPAND_NAME", "CANARYD_EXPAND_TARGET");
  ScopedEnv target("CANARYD_EXPAND_TARGET", "nested-secret-value");
  auto e = expand("${env:${env:CANARYD_EXPAND_NAME}}");
  CHECK_FALSE(e.value);
  CHECK(e.error == "environment variable ${env:CANARYD_EXPAND_NAME is not set");
  CHECK(e.error.find("nested-secret-value") == std::string::npos);
}

TEST_CASE("a missing variable or file is an error that names it", "[expand]") {
  unsetenv("CANARYD_EXPAND_UNSET");
  auto env = expand("key=${env:CANARYD_EXPAND_UNSET}");
  CHECK_FALSE(env.value);
  CHECK(env.error == "environment variable CANARYD_EXPAND_UNSET is not set");

  test::TempDir dir;
  const std::string missing = dir.file("no-such-file");
  auto file = expand("${file:" + missing + "}");
  CHECK_FALSE(file.value);
  CHECK(file.error == "cannot read secret file " + missing + ": No such file or directory");

  auto directory = expand("${file:" + dir.path() + "}");
  CHECK_FALSE(directory.value);
  CHECK(directory.error == "cannot read secret file " + dir.path() + ": Is a directory");
}

TEST_CASE("empty, unknown and unterminated references are errors that say how to write one",
          "[expand]") {
  CHECK(expand("${env:}").error == "empty environment variable name in ${env:}");
  CHECK(expand("${file:}").error == "empty path in ${file:}");
  CHECK(expand("${HOME}").error == "unknown reference ${HOME}: use ${env:NAME} or ${file:PATH}");
  CHECK(expand("${env:HOME").error == "unterminated ${...} reference");
  CHECK(expand("ok ${").error == "unterminated ${...} reference");
  // An unknown scheme's argument may be a secret pasted in by mistake: it is not quoted.
  auto vault = expand("${vault:s3cr3t-pasted-here}");
  CHECK_FALSE(vault.value);
  CHECK(vault.error == "unknown reference ${vault}: use ${env:NAME} or ${file:PATH}");
}

TEST_CASE("an error never quotes a value already expanded in the same text", "[expand]") {
  ScopedEnv set("CANARYD_EXPAND_SET", "first-secret-4d5e6f");
  unsetenv("CANARYD_EXPAND_UNSET");
  auto e = expand("${env:CANARYD_EXPAND_SET}/${env:CANARYD_EXPAND_UNSET}");
  CHECK_FALSE(e.value);
  CHECK(e.error == "environment variable CANARYD_EXPAND_UNSET is not set");
  // What was resolved before the failure is still registered, so a later message that
  // quotes it is redacted.
  CHECK(e.secrets.contains_secret("first-secret-4d5e6f"));
}

TEST_CASE("a secret file larger than the limit is refused without quoting it", "[expand]") {
  test::TempDir dir;
  const std::string secret_line = "huge-file-secret-7g8h9i\n";
  std::string content;
  while (content.size() <= BoundedFileReader::kMaxFileBytes) content += secret_line;
  const std::string too_big = dir.write_file("too-big", content);
  auto e = expand("${file:" + too_big + "}");
  CHECK_FALSE(e.value);
  CHECK(e.error == "cannot read secret file " + too_big + ": larger than " +
                       std::to_string(BoundedFileReader::kMaxFileBytes) + " bytes");
  CHECK(e.error.find("huge-file-secret") == std::string::npos);

  // At the limit it is read whole.
  const std::string at_limit =
      dir.write_file("at-limit", std::string(BoundedFileReader::kMaxFileBytes, 's'));
  auto ok = expand("${file:" + at_limit + "}");
  REQUIRE(ok.value);
  CHECK(ok.value->size() == BoundedFileReader::kMaxFileBytes);
}

TEST_CASE("values too short to be secrets are expanded but not redacted", "[expand]") {
  ScopedEnv port("CANARYD_EXPAND_PORT", "443");
  auto e = expand("https://example.test:${env:CANARYD_EXPAND_PORT}/");
  REQUIRE(e.value);
  CHECK(*e.value == "https://example.test:443/");
  CHECK(e.secrets.size() == 0);
  CHECK(e.secrets.redact(*e.value) == *e.value);
}
