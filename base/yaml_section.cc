#include "base/yaml_section.h"

#include <fmt/format.h>

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <nlohmann/json.hpp>

#include "base/json_path.h"

namespace canaryd {

std::string ConfigError::str() const {
  std::string out = file;
  if (line > 0) out += fmt::format(":{}", line);
  out += ": ";
  if (!key.empty()) out += key + ": ";
  out += message;
  return out;
}

std::string ConfigErrors::str() const {
  std::string out;
  for (const auto& e : errors_) out += e.str() + "\n";
  return out;
}

std::optional<Duration> parse_duration(std::string_view text) {
  if (text.empty()) return std::nullopt;
  double total_ms = 0;
  size_t i = 0;
  while (i < text.size()) {
    size_t start = i;
    while (i < text.size() && (std::isdigit(static_cast<unsigned char>(text[i])) || text[i] == '.'))
      ++i;
    if (i == start) return std::nullopt;
    std::string number(text.substr(start, i - start));
    if (std::count(number.begin(), number.end(), '.') > 1) return std::nullopt;
    double value = std::strtod(number.c_str(), nullptr);
    size_t unit_start = i;
    while (i < text.size() && std::isalpha(static_cast<unsigned char>(text[i]))) ++i;
    std::string_view unit = text.substr(unit_start, i - unit_start);
    double scale;
    if (unit == "ms") {
      scale = 1;
    } else if (unit == "s") {
      scale = 1000;
    } else if (unit == "m") {
      scale = 60'000;
    } else if (unit == "h") {
      scale = 3'600'000;
    } else if (unit == "d") {
      scale = 86'400'000;
    } else {
      return std::nullopt;
    }
    total_ms += value * scale;
  }
  // A year is far beyond any sane probe setting; the bound keeps the cast defined.
  if (!std::isfinite(total_ms) || total_ms > 366.0 * 86'400'000) return std::nullopt;
  return Duration(static_cast<int64_t>(std::llround(total_ms)));
}

std::string format_duration(Duration d) {
  int64_t ms = d.count();
  if (ms == 0) return "0s";
  if (ms % 1000 != 0) {
    if (ms < 1000) return fmt::format("{}ms", ms);
    // Every millisecond is printed ("{:g}" kept six digits: 2221911ms was "2221.91s").
    std::string frac = fmt::format("{:03}", ms % 1000);
    while (frac.back() == '0') frac.pop_back();
    return fmt::format("{}.{}s", ms / 1000, frac);
  }
  int64_t s = ms / 1000;
  std::string out;
  if (s >= 3600) {
    out += fmt::format("{}h", s / 3600);
    s %= 3600;
  }
  if (s >= 60) {
    out += fmt::format("{}m", s / 60);
    s %= 60;
  }
  if (s > 0) out += fmt::format("{}s", s);
  return out;
}

static std::optional<std::string> read_secret_file(const std::string& path, std::string& error,
                                                   BoundedFileReader& files) {
#ifdef FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION
  // Fuzz inputs name any path (/dev/stdin, /dev/zero, a FIFO): the fuzz build
  // reads no file at all, and a path naming "missing" takes the error branch.
  (void)files;
  if (path.find("missing") != std::string::npos) {
    error = fmt::format("cannot read secret file {}: No such file or directory", path);
    return std::nullopt;
  }
  return "fuzz-secret:" + path;
#endif
  std::string why;
  auto read = files.read(path, why);
  if (!read) {
    error = fmt::format("cannot read secret file {}: {}", path, why);
    return std::nullopt;
  }
  std::string value = std::move(*read);
  // Files written by editors and `echo` end in a newline that is not part of
  // the secret.
  while (!value.empty() && (value.back() == '\n' || value.back() == '\r')) value.pop_back();
  return value;
}

std::optional<std::string> expand_references(std::string_view text, std::string& error,
                                             Secrets* secrets, BoundedFileReader* files) {
  std::optional<BoundedFileReader> own_files;
  std::string out;
  size_t i = 0;
  while (i < text.size()) {
    size_t open = text.find("${", i);
    if (open == std::string_view::npos) {
      out.append(text.substr(i));
      break;
    }
    out.append(text.substr(i, open - i));
    size_t close = text.find('}', open);
    if (close == std::string_view::npos) {
      error = "unterminated ${...} reference";
      return std::nullopt;
    }
    std::string_view ref = text.substr(open + 2, close - open - 2);
    if (ref.rfind("env:", 0) == 0) {
      std::string name(ref.substr(4));
      if (name.empty()) {
        error = "empty environment variable name in ${env:}";
        return std::nullopt;
      }
      const char* value = std::getenv(name.c_str());
      if (value == nullptr) {
        error = fmt::format("environment variable {} is not set", name);
        return std::nullopt;
      }
      out.append(value);
      if (secrets != nullptr) secrets->add(value);
    } else if (ref.rfind("file:", 0) == 0) {
      std::string path(ref.substr(5));
      if (path.empty()) {
        error = "empty path in ${file:}";
        return std::nullopt;
      }
      if (files == nullptr) files = &own_files.emplace();
      auto value = read_secret_file(path, error, *files);
      if (!value) return std::nullopt;
      out.append(*value);
      if (secrets != nullptr) secrets->add(*value);
    } else {
      error = fmt::format("unknown reference ${{{}}}: use ${{env:NAME}} or ${{file:PATH}}",
                          std::string(ref.substr(0, ref.find(':'))));
      return std::nullopt;
    }
    i = close + 1;
  }
  return out;
}

YamlSection::YamlSection(YAML::Node node, std::string path, ConfigReadContext& ctx)
    : node_(std::move(node)), path_(std::move(path)), ctx_(&ctx) {}

std::string YamlSection::key_path(std::string_view key) const {
  if (path_.empty()) return std::string(key);
  return path_ + "." + std::string(key);
}

int YamlSection::line() const { return node_.Mark().line + 1; }

int YamlSection::line_of(std::string_view key) const {
  if (node_.IsMap()) {
    for (auto it = node_.begin(); it != node_.end(); ++it) {
      if (it->first.IsScalar() && it->first.Scalar() == key) return it->first.Mark().line + 1;
    }
  }
  return line();
}

bool YamlSection::has(std::string_view key) const {
  if (!node_.IsMap()) return false;
  for (auto it = node_.begin(); it != node_.end(); ++it) {
    if (it->first.IsScalar() && it->first.Scalar() == key) return true;
  }
  return false;
}

std::optional<YAML::Node> YamlSection::lookup(std::string_view key) {
  used_.insert(std::string(key));
  if (!node_.IsMap()) return std::nullopt;
  for (auto it = node_.begin(); it != node_.end(); ++it) {
    if (it->first.IsScalar() && it->first.Scalar() == key) return it->second;
  }
  return std::nullopt;
}

void YamlSection::error(std::string_view key, std::string message) {
  ctx_->errors->add(
      {ctx_->file, line_of(key), key.empty() ? path_ : key_path(key), std::move(message)});
}

void YamlSection::error_at(const YAML::Node& node, std::string key_path, std::string message) {
  ctx_->errors->add({ctx_->file, node.Mark().line + 1, std::move(key_path), std::move(message)});
}

void YamlSection::finish() {
  if (!node_.IsMap()) return;
  std::set<std::string, std::less<>> seen;
  for (auto it = node_.begin(); it != node_.end(); ++it) {
    if (!it->first.IsScalar()) {
      error_at(it->first, path_, "keys must be plain names");
      continue;
    }
    const std::string& key = it->first.Scalar();
    if (!seen.insert(key).second) {
      error_at(it->first, key_path(key), "duplicate key");
      continue;
    }
    if (!used_.count(key)) error_at(it->first, key_path(key), "unknown key");
  }
}

std::optional<std::string> YamlSection::scalar(std::string_view key, const YAML::Node& node,
                                               std::string_view what) {
  if (node.IsNull()) {
    error(key, fmt::format("missing value (expected {})", what));
    return std::nullopt;
  }
  if (!node.IsScalar()) {
    error(key, fmt::format("expected {}, got a {}", what, node.IsMap() ? "mapping" : "list"));
    return std::nullopt;
  }
  return node.Scalar();
}

std::optional<std::string> YamlSection::get_string(std::string_view key) {
  auto node = lookup(key);
  if (!node) return std::nullopt;
  auto raw = scalar(key, *node, "a string");
  if (!raw) return std::nullopt;
  std::string err;
  auto value = expand(*raw, err);
  if (!value) {
    error(key, err);
    return std::nullopt;
  }
  return value;
}

std::optional<bool> YamlSection::get_bool(std::string_view key) {
  auto node = lookup(key);
  if (!node) return std::nullopt;
  auto raw = scalar(key, *node, "true or false");
  if (!raw) return std::nullopt;
  if (*raw == "true") return true;
  if (*raw == "false") return false;
  error(key, fmt::format("expected true or false, got \"{}\"", *raw));
  return std::nullopt;
}

static std::optional<int64_t> parse_int(const std::string& text) {
  if (text.empty()) return std::nullopt;
  errno = 0;
  char* end = nullptr;
  long long v = std::strtoll(text.c_str(), &end, 10);
  if (errno != 0 || end == text.c_str() || *end != '\0') return std::nullopt;
  return v;
}

std::optional<int64_t> YamlSection::get_int(std::string_view key, int64_t min, int64_t max) {
  auto node = lookup(key);
  if (!node) return std::nullopt;
  auto raw = scalar(key, *node, "an integer");
  if (!raw) return std::nullopt;
  auto v = parse_int(*raw);
  if (!v && errno == ERANGE) {
    error(key, fmt::format("{} is out of range [{}, {}]", *raw, min, max));
    return std::nullopt;
  }
  if (!v) {
    error(key, fmt::format("expected an integer, got \"{}\"", *raw));
    return std::nullopt;
  }
  if (*v < min || *v > max) {
    error(key, fmt::format("{} is out of range [{}, {}]", *v, min, max));
    return std::nullopt;
  }
  return v;
}

std::optional<double> YamlSection::get_ratio(std::string_view key) {
  auto node = lookup(key);
  if (!node) return std::nullopt;
  auto raw = scalar(key, *node, "a ratio such as 0.8 or 80%");
  if (!raw) return std::nullopt;
  std::string text = *raw;
  bool percent = !text.empty() && text.back() == '%';
  if (percent) text.pop_back();
  char* end = nullptr;
  double v = std::strtod(text.c_str(), &end);
  if (text.empty() || end != text.c_str() + text.size()) {
    error(key, fmt::format("expected a ratio such as 0.8 or 80%, got \"{}\"", *raw));
    return std::nullopt;
  }
  if (percent) v /= 100;
  if (!(v >= 0 && v <= 1)) {
    error(key, fmt::format("{} is not between 0 and 1 (0% and 100%)", *raw));
    return std::nullopt;
  }
  return v;
}

std::optional<Duration> YamlSection::get_duration(std::string_view key) {
  auto node = lookup(key);
  if (!node) return std::nullopt;
  auto raw = scalar(key, *node, "a duration such as 500ms, 30s or 2h");
  if (!raw) return std::nullopt;
  auto d = parse_duration(*raw);
  if (!d) {
    error(key, fmt::format("invalid duration \"{}\" (use e.g. 500ms, 30s, 5m, 2h)", *raw));
    return std::nullopt;
  }
  return d;
}

std::optional<std::vector<std::string>> YamlSection::get_string_list(std::string_view key) {
  auto node = lookup(key);
  if (!node) return std::nullopt;
  if (!node->IsSequence()) {
    error(key, "expected a list of strings");
    return std::nullopt;
  }
  std::vector<std::string> out;
  bool ok = true;
  for (size_t i = 0; i < node->size(); ++i) {
    const YAML::Node item = (*node)[i];
    std::string item_path = fmt::format("{}[{}]", key_path(key), i);
    if (!item.IsScalar()) {
      error_at(item, item_path, "expected a string");
      ok = false;
      continue;
    }
    std::string err;
    auto value = expand(item.Scalar(), err);
    if (!value) {
      error_at(item, item_path, err);
      ok = false;
      continue;
    }
    out.push_back(std::move(*value));
  }
  if (!ok) return std::nullopt;
  return out;
}

std::optional<std::vector<int64_t>> YamlSection::get_int_list(std::string_view key, int64_t min,
                                                              int64_t max) {
  auto node = lookup(key);
  if (!node) return std::nullopt;
  if (!node->IsSequence()) {
    error(key, "expected a list of integers");
    return std::nullopt;
  }
  std::vector<int64_t> out;
  bool ok = true;
  for (size_t i = 0; i < node->size(); ++i) {
    const YAML::Node item = (*node)[i];
    std::string item_path = fmt::format("{}[{}]", key_path(key), i);
    auto v = item.IsScalar() ? parse_int(item.Scalar()) : std::nullopt;
    if (!v && item.IsScalar() && errno == ERANGE) {
      error_at(item, item_path,
               fmt::format("{} is out of range [{}, {}]", item.Scalar(), min, max));
      ok = false;
    } else if (!v) {
      error_at(item, item_path, "expected an integer");
      ok = false;
    } else if (*v < min || *v > max) {
      error_at(item, item_path, fmt::format("{} is out of range [{}, {}]", *v, min, max));
      ok = false;
    } else {
      out.push_back(*v);
    }
  }
  if (!ok) return std::nullopt;
  return out;
}

std::optional<std::vector<std::pair<std::string, std::string>>> YamlSection::get_string_map(
    std::string_view key) {
  auto node = lookup(key);
  if (!node) return std::nullopt;
  if (!node->IsMap()) {
    error(key, "expected a mapping of names to strings");
    return std::nullopt;
  }
  std::vector<std::pair<std::string, std::string>> out;
  bool ok = true;
  for (auto it = node->begin(); it != node->end(); ++it) {
    if (!it->first.IsScalar()) {
      error_at(it->first, key_path(key), "keys must be plain names");
      ok = false;
      continue;
    }
    std::string item_path = key_path(key) + "." + it->first.Scalar();
    if (!it->second.IsScalar()) {
      error_at(it->second, item_path, "expected a string");
      ok = false;
      continue;
    }
    std::string err;
    auto value = expand(it->second.Scalar(), err);
    if (!value) {
      error_at(it->second, item_path, err);
      ok = false;
      continue;
    }
    out.emplace_back(it->first.Scalar(), std::move(*value));
  }
  if (!ok) return std::nullopt;
  return out;
}

std::optional<YamlSection> YamlSection::get_section(std::string_view key) {
  auto node = lookup(key);
  if (!node) return std::nullopt;
  if (!node->IsMap()) {
    error(key, node->IsNull() ? "missing value (expected a mapping)" : "expected a mapping");
    return std::nullopt;
  }
  return YamlSection(*node, key_path(key), *ctx_);
}

std::optional<std::vector<YamlSection>> YamlSection::get_section_list(std::string_view key) {
  auto node = lookup(key);
  if (!node) return std::nullopt;
  if (!node->IsSequence()) {
    error(key, "expected a list");
    return std::nullopt;
  }
  std::vector<YamlSection> out;
  for (size_t i = 0; i < node->size(); ++i) {
    const YAML::Node item = (*node)[i];
    std::string item_path = fmt::format("{}[{}]", key_path(key), i);
    if (!item.IsMap()) {
      error_at(item, item_path, "expected a mapping");
      continue;
    }
    out.emplace_back(item, item_path, *ctx_);
  }
  // The good items are still returned so their own errors get reported too.
  return out;
}

std::optional<YAML::Node> YamlSection::get_node(std::string_view key) { return lookup(key); }

std::optional<std::string> YamlSection::expand(const std::string& raw, std::string& error) {
  return expand_references(raw, error, ctx_->secrets, ctx_->files);
}

namespace {

// One get_json() conversion: where errors go and how much is left.
struct JsonWalk {
  YamlSection& section;
  std::string root;  // the key's path: limits are reported there, not 64 levels down
  size_t nodes = 0;
};

// Recursion is bounded by kMaxJsonDepth: the YAML is the operator's, and the
// depth check also ends a self-referencing alias (&a [*a]).
bool to_json(JsonWalk& walk, const YAML::Node& node, const std::string& path, int depth,
             nlohmann::json& out) {
  if (++walk.nodes > YamlSection::kMaxJsonNodes) {
    walk.section.error_at(node, walk.root,
                          fmt::format("more than {} values (aliases count each time they are used)",
                                      YamlSection::kMaxJsonNodes));
    return false;
  }
  if (depth > YamlSection::kMaxJsonDepth) {
    walk.section.error_at(
        node, walk.root,
        fmt::format("nested deeper than {} levels (does an alias refer to itself?)",
                    YamlSection::kMaxJsonDepth));
    return false;
  }
  switch (node.Type()) {
    case YAML::NodeType::Map: {
      out = nlohmann::json::object();
      for (auto it = node.begin(); it != node.end(); ++it) {
        if (!it->first.IsScalar()) {
          walk.section.error_at(it->first, path, "keys must be plain names");
          return false;
        }
        const std::string& name = it->first.Scalar();
        std::string item_path = path + "." + name;
        if (out.contains(name)) {
          walk.section.error_at(it->first, item_path, "duplicate key");
          return false;
        }
        if (!to_json(walk, it->second, item_path, depth + 1, out[name])) return false;
      }
      return true;
    }
    case YAML::NodeType::Sequence: {
      out = nlohmann::json::array();
      size_t i = 0;
      for (auto it = node.begin(); it != node.end(); ++it, ++i) {
        out.push_back(nullptr);
        if (!to_json(walk, *it, fmt::format("{}[{}]", path, i), depth + 1, out.back()))
          return false;
      }
      return true;
    }
    case YAML::NodeType::Scalar:
      // Typed as the YAML spells it: plain 5 is a number, "5" a string.
      out = yaml_scalar_to_json(node.Scalar(), node.Tag() == "?");
      return true;
    default:
      out = nullptr;
      return true;
  }
}

}  // namespace

std::optional<nlohmann::json> YamlSection::get_json(std::string_view key) {
  auto node = lookup(key);
  if (!node) return std::nullopt;
  JsonWalk walk{*this, key_path(key)};
  nlohmann::json out;
  if (!to_json(walk, *node, walk.root, 0, out)) return std::nullopt;
  try {
    // Sent later as text: a byte that is not UTF-8 ("\xff" in YAML) would
    // only fail then, on every run.
    (void)out.dump();
  } catch (const nlohmann::json::exception&) {
    error(key, "contains text that is not valid UTF-8");
    return std::nullopt;
  }
  return out;
}

}  // namespace canaryd
