// The few pieces of RESP (the Redis protocol) the Redis probe needs: encoding
// a command and parsing one reply, incrementally and with hard limits, because
// the bytes come from a target that may be broken or hostile.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace canaryd {

struct RespValue {
  enum class Type { kSimple, kError, kInteger, kBulk, kNull, kArray };
  Type type = Type::kNull;
  std::string text;  // simple, error and bulk strings
  int64_t integer = 0;
  std::vector<RespValue> items;  // arrays
};

enum class RespParse { kIncomplete, kOk, kInvalid };

// Parses one reply from the front of `buf`. On kOk, `consumed` is its length.
// kInvalid means the bytes are not RESP or exceed the limits below.
RespParse parse_resp(std::string_view buf, size_t& consumed, RespValue& out);

// Encodes a command as an array of bulk strings.
std::string resp_command(const std::vector<std::string_view>& args);

// A reply for a message, through target_text(): redacted, clipped, one line.
std::string resp_brief(const RespValue& v);

// The most of one reply the Redis probe buffers. A bulk string or line longer
// than that can never complete, so its header alone is invalid: waiting for
// it would turn a hostile announcement into a timeout.
inline constexpr size_t kRespMaxReplyBytes = 64 * 1024;
inline constexpr size_t kRespMaxBulk = kRespMaxReplyBytes;
inline constexpr size_t kRespMaxItems = 1024;
inline constexpr int kRespMaxDepth = 4;

}  // namespace canaryd
