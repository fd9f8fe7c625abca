#include "daemon/junit.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <optional>

namespace canaryd {

namespace {

// The next code point of `s` at `i` (advanced past it), or nullopt for a byte
// that does not start a valid UTF-8 sequence (RFC 3629: no overlongs, no
// surrogates, at most U+10FFFF); `i` then moves past that one byte.
std::optional<char32_t> next_code_point(std::string_view s, size_t& i) {
  const auto b = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char c = b(i);
  if (c < 0x80) {
    ++i;
    return c;
  }
  int need = 0;
  char32_t cp = 0;
  unsigned char lo = 0x80, hi = 0xBF;
  if (c >= 0xC2 && c <= 0xDF) {
    need = 1;
    cp = c & 0x1F;
  } else if (c >= 0xE0 && c <= 0xEF) {
    need = 2;
    cp = c & 0x0F;
    if (c == 0xE0) lo = 0xA0;
    if (c == 0xED) hi = 0x9F;
  } else if (c >= 0xF0 && c <= 0xF4) {
    need = 3;
    cp = c & 0x07;
    if (c == 0xF0) lo = 0x90;
    if (c == 0xF4) hi = 0x8F;
  } else {
    ++i;
    return std::nullopt;
  }
  if (s.size() - i <= static_cast<size_t>(need)) {  // cut short
    ++i;
    return std::nullopt;
  }
  for (int k = 1; k <= need; ++k) {
    const unsigned char cc = b(i + static_cast<size_t>(k));
    if (cc < lo || cc > hi) {
      ++i;
      return std::nullopt;
    }
    lo = 0x80;
    hi = 0xBF;
    cp = (cp << 6) | (cc & 0x3F);
  }
  i += static_cast<size_t>(need) + 1;
  return cp;
}

void append_utf8(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

// XML 1.0's Char production.
bool xml_char(char32_t cp) {
  return cp == 0x9 || cp == 0xA || cp == 0xD || (cp >= 0x20 && cp <= 0xD7FF) ||
         (cp >= 0xE000 && cp <= 0xFFFD) || (cp >= 0x10000 && cp <= 0x10FFFF);
}

const nlohmann::ordered_json& member(const nlohmann::ordered_json& j, const char* key) {
  static const nlohmann::ordered_json kNull;
  if (!j.is_object()) return kNull;
  auto it = j.find(key);
  return it == j.end() ? kNull : *it;
}

std::string string_of(const nlohmann::ordered_json& j, const char* key) {
  const auto& v = member(j, key);
  return v.is_string() ? v.get<std::string>() : std::string();
}

double number_of(const nlohmann::ordered_json& j, const char* key) {
  const auto& v = member(j, key);
  return v.is_number() ? v.get<double>() : 0.0;
}

std::string seconds_text(double s) { return fmt::format("{:.3f}", s >= 0 ? s : 0.0); }

std::string dump(const nlohmann::ordered_json& j) {
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

// What a reader of the report needs to find the run on the target's side:
// the trace id (the platform's traces carry it), the target and the phases.
std::string run_facts(const nlohmann::ordered_json& r) {
  std::string out =
      fmt::format("trace_id: {}\ntarget: {}\n", string_of(r, "run_id"), string_of(r, "target"));
  const auto& phases = member(r, "phases");
  if (phases.is_object() && !phases.empty()) {
    out += "phases:";
    for (const auto& [name, v] : phases.items())
      out += fmt::format(" {} {}s", name, v.is_number() ? seconds_text(v.get<double>()) : "?");
    out += "\n";
  }
  const auto& details = member(r, "details");
  if (details.is_object() && !details.empty()) out += "details: " + dump(details) + "\n";
  return out;
}

}  // namespace

std::string xml_text(std::string_view text, bool attribute) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size();) {
    const std::optional<char32_t> cp = next_code_point(text, i);
    if (!cp) {
      out += "\xEF\xBF\xBD";  // U+FFFD
      continue;
    }
    if (!xml_char(*cp)) continue;
    switch (*cp) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";  // "]]>" may not appear in character data
        break;
      case '"':
        out += attribute ? "&quot;" : "\"";
        break;
      case '\t':
        out += attribute ? "&#9;" : "\t";
        break;
      case '\n':
        out += attribute ? "&#10;" : "\n";
        break;
      case '\r':
        out += "&#13;";  // a raw CR would be read back as LF
        break;
      default:
        append_utf8(out, *cp);
    }
  }
  return out;
}

std::string junit_xml(const nlohmann::ordered_json& once_out, const JunitSuite& suite) {
  const auto& results = member(once_out, "results");
  size_t tests = 0, failures = 0, errors = 0;
  std::string cases;
  if (results.is_array()) {
    for (const auto& r : results) {
      ++tests;
      const std::string type = string_of(r, "type"), category = string_of(r, "category");
      // Jenkins reads the classname's last dot as package.class: a category
      // groups its probes, each type a class in it.
      const std::string classname = category.empty() ? type : category + "." + type;
      cases += fmt::format("    <testcase name=\"{}\" classname=\"{}\" time=\"{}\">\n",
                           xml_text(string_of(r, "name"), true), xml_text(classname, true),
                           seconds_text(number_of(r, "duration_seconds")));
      const bool success = member(r, "success").is_boolean() && member(r, "success").get<bool>();
      if (!success) {
        const std::string reason = string_of(r, "reason"), message = string_of(r, "message");
        // `internal` is canaryd's own bug, not the target's failure: JUnit
        // tells the two apart as error and failure.
        const bool error = reason == "internal";
        (error ? errors : failures) += 1;
        const char* element = error ? "error" : "failure";
        cases += fmt::format("      <{} message=\"{}\" type=\"{}\">{}: {}\n{}</{}>\n", element,
                             xml_text(message, true), xml_text(reason, true), xml_text(reason),
                             xml_text(message), xml_text(run_facts(r)), element);
      }
      cases += fmt::format("      <system-out>{}</system-out>\n", xml_text(run_facts(r)));
      cases += "    </testcase>\n";
    }
  }
  const std::string counts =
      fmt::format("tests=\"{}\" failures=\"{}\" errors=\"{}\" skipped=\"0\" time=\"{}\"", tests,
                  failures, errors, seconds_text(suite.seconds));
  std::string out = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";
  out += fmt::format("<testsuites name=\"{}\" {}>\n", xml_text(suite.name, true), counts);
  out += fmt::format("  <testsuite name=\"{}\" {} timestamp=\"{}\" hostname=\"{}\">\n",
                     xml_text(suite.name, true), counts, xml_text(suite.timestamp, true),
                     xml_text(suite.hostname.empty() ? "localhost" : suite.hostname, true));
  out += cases;
  out += "  </testsuite>\n</testsuites>\n";
  return out;
}

std::string write_file_atomically(const std::string& path, std::string_view content) {
  std::string tmp = path + ".tmp.XXXXXX";
  const int fd = mkstemp(tmp.data());
  if (fd < 0) return fmt::format("cannot create a file next to {}: {}", path, std::strerror(errno));
  // mkstemp makes it 0600; a report is for CI to read, like any file we write.
  const mode_t mask = umask(0);
  umask(mask);
  fchmod(fd, 0666 & ~mask);
  std::string error;
  for (size_t done = 0; done < content.size() && error.empty();) {
    const ssize_t n = write(fd, content.data() + done, content.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      error = fmt::format("cannot write {}: {}", tmp, std::strerror(errno));
    } else {
      done += static_cast<size_t>(n);
    }
  }
  if (error.empty() && fsync(fd) != 0)
    error = fmt::format("cannot write {}: {}", tmp, std::strerror(errno));
  if (close(fd) != 0 && error.empty())
    error = fmt::format("cannot write {}: {}", tmp, std::strerror(errno));
  if (error.empty() && rename(tmp.c_str(), path.c_str()) != 0)
    error = fmt::format("cannot rename {} to {}: {}", tmp, path, std::strerror(errno));
  if (!error.empty()) unlink(tmp.c_str());
  return error;
}

}  // namespace canaryd
