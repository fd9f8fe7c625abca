// Validation of UTF-8 that arrives in pieces (WebSocket text messages).
#pragma once

#include <string_view>

namespace canaryd {

// Incremental UTF-8 validation (RFC 3629: no overlongs, no surrogates, at
// most U+10FFFF) of a text message that arrives in pieces split anywhere.
class Utf8Check {
 public:
  void reset() {
    need_ = 0;
    lo_ = 0x80;
    hi_ = 0xBF;
  }
  // False at the first byte that cannot be part of valid UTF-8.
  bool feed(std::string_view bytes);
  // No character is left unfinished.
  bool complete() const { return need_ == 0; }

 private:
  int need_ = 0;                         // continuation bytes still expected
  unsigned char lo_ = 0x80, hi_ = 0xBF;  // the range of the next continuation byte
};

}  // namespace canaryd
