// Strict reading of one YAML mapping: every key is either consumed by a typed
// getter or reported as unknown, and every error names file, line and key.
//
// The daemon reads the common probe fields with it, and each probe type reads
// its own section with it, so all of them report errors the same way.
#pragma once

#include <yaml-cpp/yaml.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "base/bounded_read.h"
#include "base/secrets.h"

namespace canaryd {

struct ConfigError {
  std::string file;
  int line = 0;  // 1-based; 0 when the error has no position (e.g. unreadable file)
  std::string key;
  std::string message;

  // "FILE:LINE: KEY: MESSAGE", the one format users and fixtures see.
  std::string str() const;
};

// Errors are collected rather than thrown, so one check-config run lists them all.
class ConfigErrors {
 public:
  void add(ConfigError error) { errors_.push_back(std::move(error)); }
  bool empty() const { return errors_.empty(); }
  size_t size() const { return errors_.size(); }
  const std::vector<ConfigError>& list() const { return errors_; }
  std::string str() const;  // one error per line

 private:
  std::vector<ConfigError> errors_;
};

// What every section of one file shares while it is being read.
struct ConfigReadContext {
  std::string file;
  ConfigErrors* errors = nullptr;
  Secrets* secrets = nullptr;  // expanded ${env:..}/${file:..} values are registered here
  // ${file:} reads share its deadline; null: each read gets the default budget.
  BoundedFileReader* files = nullptr;
};

using Duration = std::chrono::milliseconds;

// Parses "500ms", "30s", "2h", "1m30s", "1.5s". Units: ms, s, m, h, d.
std::optional<Duration> parse_duration(std::string_view text);
// Prints a duration the way a user would write it ("1m30s", "500ms").
std::string format_duration(Duration d);

class YamlSection {
 public:
  // `path` is the dotted key path of this mapping ("probes[0].http"), used in errors.
  YamlSection(YAML::Node node, std::string path, ConfigReadContext& ctx);

  const std::string& path() const { return path_; }
  std::string key_path(std::string_view key) const;
  int line() const;
  int line_of(std::string_view key) const;  // the key's own line, or this section's
  bool has(std::string_view key) const;
  ConfigReadContext& context() { return *ctx_; }

  // Typed getters: nullopt when the key is absent, or when its value is bad
  // (then an error has been recorded). Every getter marks the key as known.
  // Strings expand ${env:NAME} and ${file:PATH}; expanded values become secrets.
  std::optional<std::string> get_string(std::string_view key);
  std::optional<bool> get_bool(std::string_view key);
  std::optional<int64_t> get_int(std::string_view key, int64_t min, int64_t max);
  std::optional<Duration> get_duration(std::string_view key);
  // A number in [0, 1], e.g. a success-ratio threshold; "80%" is accepted too.
  std::optional<double> get_ratio(std::string_view key);
  std::optional<std::vector<std::string>> get_string_list(std::string_view key);
  std::optional<std::vector<int64_t>> get_int_list(std::string_view key, int64_t min, int64_t max);
  // Keys of the map must be plain scalars; values are expanded like strings.
  std::optional<std::vector<std::pair<std::string, std::string>>> get_string_map(
      std::string_view key);
  std::optional<YamlSection> get_section(std::string_view key);
  std::optional<std::vector<YamlSection>> get_section_list(std::string_view key);
  // The raw node, for values with a shape of their own (e.g. JSON expectations).
  // Walk it only with the non-throwing accessors (IsScalar(), Scalar(), ...).
  std::optional<YAML::Node> get_node(std::string_view key);
  // The value as JSON (a message template): plain scalars take their YAML
  // type (true, 12, 1.5, null), quoted ones stay strings. Keys must be plain
  // names and unique; aliases may not expand it past kMaxJsonNodes or nest it
  // deeper than kMaxJsonDepth (a self-referencing alias would never end).
  std::optional<nlohmann::json> get_json(std::string_view key);
  static constexpr size_t kMaxJsonNodes = 10'000;
  static constexpr int kMaxJsonDepth = 64;

  // Records an error at `key` (its line if present).
  void error(std::string_view key, std::string message);
  // An error about a value nested inside `key` (e.g. one item of a list).
  void error_at(const YAML::Node& node, std::string key_path, std::string message);
  // Reports every key no getter asked for. Call once, after reading.
  void finish();

 private:
  std::optional<YAML::Node> lookup(std::string_view key);
  std::optional<std::string> scalar(std::string_view key, const YAML::Node& node,
                                    std::string_view what);
  std::optional<std::string> expand(const std::string& raw, std::string& error);

  YAML::Node node_;
  std::string path_;
  ConfigReadContext* ctx_;
  std::set<std::string, std::less<>> used_;
};

// Expands ${env:NAME} and ${file:PATH} in `text`. Returns nullopt and sets
// `error` when a reference cannot be resolved; never puts a resolved value in
// `error`. Each resolved value is added to `secrets` (the surrounding text,
// e.g. "Bearer ", is not secret). ${file:} reads go through `files` (bounded
// in time); null means a reader of its own with the default budget.
std::optional<std::string> expand_references(std::string_view text, std::string& error,
                                             Secrets* secrets, BoundedFileReader* files = nullptr);

}  // namespace canaryd
