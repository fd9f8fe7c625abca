#include "base/trace_context.h"

#include <fmt/format.h>
#include <openssl/rand.h>

#include <algorithm>
#include <array>
#include <random>

namespace canaryd {

namespace {

// Random bytes that are not all zero, as lower-case hex.
template <size_t N>
std::string random_hex_id() {
  std::array<unsigned char, N> bytes{};
  for (;;) {
    if (RAND_bytes(bytes.data(), static_cast<int>(N)) != 1) {
      // OpenSSL's generator failed to seed (it practically never does after
      // boot): the kernel's, through the library, is as good for an id.
      std::random_device dev;
      for (auto& b : bytes) b = static_cast<unsigned char>(dev());
    }
    if (std::any_of(bytes.begin(), bytes.end(), [](unsigned char b) { return b != 0; })) break;
  }
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out(2 * N, '0');
  for (size_t i = 0; i < N; ++i) {
    out[2 * i] = kHex[bytes[i] >> 4];
    out[2 * i + 1] = kHex[bytes[i] & 0x0F];
  }
  return out;
}

bool lower_hex(std::string_view s) {
  return std::all_of(s.begin(), s.end(),
                     [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

}  // namespace

std::string new_trace_id() { return random_hex_id<16>(); }

std::string new_span_id() { return random_hex_id<8>(); }

std::string traceparent(std::string_view trace_id, std::string_view span_id, bool sampled) {
  return fmt::format("00-{}-{}-{}", trace_id, span_id, sampled ? "01" : "00");
}

bool is_trace_id(std::string_view id) {
  return id.size() == 32 && lower_hex(id) && id.find_first_not_of('0') != std::string_view::npos;
}

bool is_traceparent_header(std::string_view name) {
  return name.size() == kTraceparentHeader.size() &&
         std::equal(name.begin(), name.end(), kTraceparentHeader.begin(), [](char a, char b) {
           return (a >= 'A' && a <= 'Z' ? static_cast<char>(a - 'A' + 'a') : a) == b;
         });
}

}  // namespace canaryd
