#include "base/guard.h"

#include <spdlog/spdlog.h>

namespace canaryd::guard_detail {

void report(const RunFault& fail, std::string_view where, std::string_view what) noexcept {
  try {
    std::string text = fmt::format("{}: {}", where, what);
    if (fail) {
      fail(text);  // logged there, with the probe's name
    } else {
      spdlog::error("internal error in {}", text);
    }
  } catch (...) {
    // Out of memory while reporting: nothing more can be done safely here,
    // and unwinding further would reach the C library.
  }
}

}  // namespace canaryd::guard_detail
