// The JUnit XML report of `canaryd once --junit FILE`, for CI systems that
// show test reports (Jenkins, GitLab, GitHub actions): one testcase per probe.
//
// It is made from the very document `once --json` prints, so it shows exactly
// what that output shows and nothing more: messages and targets were redacted
// and sanitized before they were recorded, and nothing here reads a probe's
// settings. The shape is the ant/Jenkins one that tests/junit/junit.xsd
// describes (docs/deploy-gate.md).
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

namespace canaryd {

struct JunitSuite {
  std::string name;       // the testsuite's name, e.g. "canaryd once config.yaml"
  std::string timestamp;  // when the gate started, UTC: "2026-12-07T17:55:00"
  std::string hostname;
  double seconds = 0;  // the whole gate's wall time (probes run in parallel)
};

// `once_out` is `once --json`'s document: {"passed": …, "results": [{name,
// type, category, target, run_id, success, reason, message, duration_seconds,
// phases, details, …}]}.
std::string junit_xml(const nlohmann::ordered_json& once_out, const JunitSuite& suite);

// `text` as XML character data (or, with `attribute`, a double-quoted
// attribute value): markup characters escaped, invalid UTF-8 replaced by
// U+FFFD, and the characters XML 1.0 cannot carry at all (C0 controls but
// tab and line breaks, U+FFFE, U+FFFF) left out. In an attribute, tab and
// line breaks are written as character references so that a parser's
// attribute normalization keeps them.
std::string xml_text(std::string_view text, bool attribute = false);

// Writes `content` to `path` through a temporary file in the same folder and
// a rename, so a reader sees the old file or the whole new one, never a torn
// one. Returns an error text, or "" on success.
std::string write_file_atomically(const std::string& path, std::string_view content);

}  // namespace canaryd
