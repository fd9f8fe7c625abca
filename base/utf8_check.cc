#include "base/utf8_check.h"

namespace canaryd {

bool Utf8Check::feed(std::string_view bytes) {
  for (char ch : bytes) {
    auto b = static_cast<unsigned char>(ch);
    if (need_ > 0) {
      if (b < lo_ || b > hi_) return false;
      --need_;
      lo_ = 0x80;
      hi_ = 0xBF;
      continue;
    }
    if (b < 0x80) continue;
    if (b >= 0xC2 && b <= 0xDF) {
      need_ = 1;
    } else if (b >= 0xE0 && b <= 0xEF) {
      need_ = 2;
      if (b == 0xE0) lo_ = 0xA0;  // overlong
      if (b == 0xED) hi_ = 0x9F;  // UTF-16 surrogates
    } else if (b >= 0xF0 && b <= 0xF4) {
      need_ = 3;
      if (b == 0xF0) lo_ = 0x90;  // overlong
      if (b == 0xF4) hi_ = 0x8F;  // beyond U+10FFFF
    } else {
      return false;
    }
  }
  return true;
}

}  // namespace canaryd
