// The JUnit XML report (`once --junit`): escaping of hostile text, the
// counts, and validity against tests/junit/junit.xsd as xmllint reads it.
#include "daemon/junit.h"

#include <sys/stat.h>

#include <catch2/catch.hpp>
#include <fstream>
#include <sstream>

#include "tests/support/harness.h"

using namespace canaryd;
using canaryd::test::run_command;
using canaryd::test::source_dir;
using canaryd::test::TempDir;
using nlohmann::ordered_json;

namespace {

ordered_json result(const std::string& name, bool success, const std::string& reason,
                    const std::string& message) {
  ordered_json r;
  r["name"] = name;
  r["type"] = "http";
  r["category"] = "infrastructure";
  r["target"] = "GET http://127.0.0.1:1/health";
  r["run_id"] = "4bf92f3577b34da6a3ce929d0e0e4736";
  r["success"] = success;
  r["reason"] = reason;
  r["message"] = message;
  r["duration_seconds"] = 0.25;
  r["phases"] = {{"connect", 0.001}, {"total", 0.25}};
  r["details"] = ordered_json::object();
  return r;
}

const JunitSuite kSuite{"canaryd once c.yaml", "2026-12-07T17:55:00", "host", 1.5};

// xmllint's verdict on `xml` against the repository's schema: "" if valid.
std::string schema_errors(const std::string& xml) {
  TempDir dir;
  const std::string path = dir.write_file("report.xml", xml);
  auto r = run_command(
      {"xmllint", "--noout", "--schema", source_dir() + "/tests/junit/junit.xsd", path});
  return r.exit_code == 0 ? "" : r.err + r.out;
}

}  // namespace

TEST_CASE("junit: xml_text escapes markup and drops what XML 1.0 cannot carry", "[junit]") {
  CHECK(xml_text("a<b>&c\"d'") == "a&lt;b&gt;&amp;c\"d'");
  CHECK(xml_text("a\"b", true) == "a&quot;b");
  CHECK(xml_text("]]>") == "]]&gt;");
  // C0 controls (NUL, ESC, BEL) and the non-characters U+FFFE/U+FFFF go.
  CHECK(xml_text(std::string("x\0y\x1b[31mz\x07", 10)) == "xy[31mz");
  CHECK(xml_text("a\xEF\xBF\xBE\xEF\xBF\xBF"
                 "b") == "ab");
  // Line breaks and tabs stay; in an attribute as references, which survive
  // attribute-value normalization. A CR is always a reference.
  CHECK(xml_text("a\tb\nc\rd") == "a\tb\nc&#13;d");
  CHECK(xml_text("a\tb\nc", true) == "a&#9;b&#10;c");
  // Invalid UTF-8 (a stray continuation, an overlong, a surrogate, a cut
  // sequence) becomes U+FFFD; valid text passes as it is.
  CHECK(xml_text("\x80") == "\xEF\xBF\xBD");
  CHECK(xml_text("\xC0\xAF") == "\xEF\xBF\xBD\xEF\xBF\xBD");
  CHECK(xml_text("\xED\xA0\x80") == "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");
  CHECK(xml_text("ok\xE2\x82") == "ok\xEF\xBF\xBD\xEF\xBF\xBD");
  CHECK(xml_text("caf\xC3\xA9 \xF0\x9F\x90\xA6") == "caf\xC3\xA9 \xF0\x9F\x90\xA6");
}

TEST_CASE("junit: one testcase per probe, failures and errors counted apart", "[junit]") {
  ordered_json out;
  out["passed"] = false;
  out["results"] = ordered_json::array();
  out["results"].push_back(result("backend-health", true, "ok", ""));
  out["results"].push_back(result("api-500", false, "http_status", "HTTP 500 (expected 2xx)"));
  out["results"].push_back(result("bug", false, "internal", "internal error: boom"));
  const std::string xml = junit_xml(out, kSuite);
  INFO(xml);
  CHECK(schema_errors(xml) == "");
  CHECK(xml.find("<testsuite name=\"canaryd once c.yaml\" tests=\"3\" failures=\"1\" "
                 "errors=\"1\" skipped=\"0\" time=\"1.500\" timestamp=\"2026-12-07T17:55:00\"") !=
        std::string::npos);
  CHECK(xml.find("<testcase name=\"api-500\" classname=\"infrastructure.http\" time=\"0.250\">") !=
        std::string::npos);
  CHECK(xml.find("<failure message=\"HTTP 500 (expected 2xx)\" type=\"http_status\">") !=
        std::string::npos);
  CHECK(xml.find("<error message=\"internal error: boom\" type=\"internal\">") !=
        std::string::npos);
  CHECK(xml.find("trace_id: 4bf92f3577b34da6a3ce929d0e0e4736") != std::string::npos);

  // Nothing to report is still a valid report.
  ordered_json none;
  none["passed"] = true;
  none["results"] = ordered_json::array();
  CHECK(schema_errors(junit_xml(none, kSuite)) == "");
}

TEST_CASE("junit: hostile text in every field still makes a valid report", "[junit]") {
  static const char kRaw[] = "<x a=\"1\">]]>&amp;\0\x01\x1b[2J\x7f\xC0\x80\r\n\t";
  const std::string hostile = std::string(kRaw, sizeof kRaw - 1) + "\xEF\xBF\xBF</testcase>";
  ordered_json out;
  auto r = result(hostile, false, hostile, hostile);
  r["type"] = hostile;
  r["category"] = hostile;
  r["target"] = hostile;
  r["run_id"] = hostile;
  r["details"] = {{"body", hostile}};
  out["results"] = ordered_json::array({r});
  JunitSuite suite = kSuite;
  suite.name = hostile;
  suite.hostname = hostile;
  const std::string xml = junit_xml(out, suite);
  INFO(xml);
  CHECK(schema_errors(xml) == "");
  CHECK(xml.find('\x1b') == std::string::npos);
  CHECK(xml.find(std::string(1, '\0')) == std::string::npos);
}

TEST_CASE("junit: the report replaces the file whole, readable by others", "[junit]") {
  TempDir dir;
  const std::string path = dir.write_file("report.xml", "old");
  CHECK(write_file_atomically(path, "new contents") == "");
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  CHECK(ss.str() == "new contents");
  struct stat st {};
  REQUIRE(stat(path.c_str(), &st) == 0);
  CHECK((st.st_mode & 0044) != 0);
  // No temporary file is left behind, and an unwritable place is an error.
  auto ls = run_command({"ls", "-A", dir.path()});
  CHECK(ls.out == "report.xml\n");
  CHECK(write_file_atomically(dir.file("missing/report.xml"), "x").find("cannot create") == 0);
}
