#include "probes/redis/resp.h"

#include <fmt/format.h>

#include <charconv>

#include "base/secrets.h"

namespace canaryd {

namespace {

// Finds the CRLF-terminated line starting at `pos`.
RespParse read_line(std::string_view buf, size_t pos, std::string_view& line, size_t& next) {
  size_t cr = buf.find("\r\n", pos);
  if (cr == std::string_view::npos) {
    // A line longer than any reply we accept will never complete.
    return buf.size() - pos > kRespMaxBulk ? RespParse::kInvalid : RespParse::kIncomplete;
  }
  line = buf.substr(pos, cr - pos);
  next = cr + 2;
  return RespParse::kOk;
}

bool to_int(std::string_view s, int64_t& v) {
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  return ec == std::errc() && p == s.data() + s.size() && !s.empty();
}

RespParse parse_at(std::string_view buf, size_t pos, size_t& next, RespValue& out, int depth) {
  if (pos >= buf.size()) return RespParse::kIncomplete;
  if (depth > kRespMaxDepth) return RespParse::kInvalid;
  char kind = buf[pos];
  // A byte that starts no RESP value is known to be wrong before its line ends.
  if (std::string_view("+-:$*").find(kind) == std::string_view::npos) return RespParse::kInvalid;
  std::string_view line;
  size_t after = 0;
  RespParse r = read_line(buf, pos + 1, line, after);
  if (r != RespParse::kOk) return r;
  switch (kind) {
    case '+':
      out.type = RespValue::Type::kSimple;
      out.text = std::string(line);
      next = after;
      return RespParse::kOk;
    case '-':
      out.type = RespValue::Type::kError;
      out.text = std::string(line);
      next = after;
      return RespParse::kOk;
    case ':':
      out.type = RespValue::Type::kInteger;
      if (!to_int(line, out.integer)) return RespParse::kInvalid;
      next = after;
      return RespParse::kOk;
    case '$': {
      int64_t len = 0;
      if (!to_int(line, len) || len < -1 || len > static_cast<int64_t>(kRespMaxBulk))
        return RespParse::kInvalid;
      if (len == -1) {
        out.type = RespValue::Type::kNull;
        next = after;
        return RespParse::kOk;
      }
      size_t n = static_cast<size_t>(len);
      if (buf.size() < after + n + 2) return RespParse::kIncomplete;
      if (buf.substr(after + n, 2) != "\r\n") return RespParse::kInvalid;
      out.type = RespValue::Type::kBulk;
      out.text = std::string(buf.substr(after, n));
      next = after + n + 2;
      return RespParse::kOk;
    }
    case '*': {
      int64_t count = 0;
      if (!to_int(line, count) || count < -1 || count > static_cast<int64_t>(kRespMaxItems))
        return RespParse::kInvalid;
      if (count == -1) {
        out.type = RespValue::Type::kNull;
        next = after;
        return RespParse::kOk;
      }
      out.type = RespValue::Type::kArray;
      out.items.clear();
      size_t at = after;
      for (int64_t i = 0; i < count; ++i) {
        RespValue item;
        size_t item_next = 0;
        RespParse ir = parse_at(buf, at, item_next, item, depth + 1);
        if (ir != RespParse::kOk) return ir;
        out.items.push_back(std::move(item));
        at = item_next;
      }
      next = at;
      return RespParse::kOk;
    }
    default:
      return RespParse::kInvalid;
  }
}

}  // namespace

RespParse parse_resp(std::string_view buf, size_t& consumed, RespValue& out) {
  size_t next = 0;
  RespParse r = parse_at(buf, 0, next, out, 0);
  if (r == RespParse::kOk) consumed = next;
  return r;
}

std::string resp_command(const std::vector<std::string_view>& args) {
  std::string out = fmt::format("*{}\r\n", args.size());
  for (auto a : args) {
    out += fmt::format("${}\r\n", a.size());
    out.append(a);
    out += "\r\n";
  }
  return out;
}

std::string resp_brief(const RespValue& v) {
  std::string s;
  switch (v.type) {
    case RespValue::Type::kSimple:
    case RespValue::Type::kError:
    case RespValue::Type::kBulk:
      s = v.text;
      break;
    case RespValue::Type::kInteger:
      s = std::to_string(v.integer);
      break;
    case RespValue::Type::kNull:
      s = "(nil)";
      break;
    case RespValue::Type::kArray:
      s = fmt::format("(array of {})", v.items.size());
      break;
  }
  return target_text(s, 80);
}

}  // namespace canaryd
