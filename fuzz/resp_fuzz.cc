// RESP replies as a Redis target sends them. The probe parses its receive
// buffer after every read, so beyond not crashing: a reply that parses must
// have been kIncomplete (never kInvalid, never a different reply) at every
// shorter length, or a reply split across two reads would fail the run.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "probes/redis/resp.h"

namespace {

bool same(const canaryd::RespValue& a, const canaryd::RespValue& b) {
  if (a.type != b.type || a.text != b.text || a.integer != b.integer ||
      a.items.size() != b.items.size())
    return false;
  for (size_t i = 0; i < a.items.size(); ++i)
    if (!same(a.items[i], b.items[i])) return false;
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view buf(reinterpret_cast<const char*>(data), size);
  // Replies are pipelined: parse one after another, as the probe does.
  for (int replies = 0; !buf.empty() && replies < 64; ++replies) {
    canaryd::RespValue v;
    size_t used = 0;
    canaryd::RespParse r = canaryd::parse_resp(buf, used, v);
    if (r != canaryd::RespParse::kOk) break;
    if (used == 0 || used > buf.size()) std::abort();
    (void)canaryd::resp_brief(v);
    // Two cut points per reply keep the check linear in the input.
    for (size_t cut : {used - 1, used / 2}) {
      canaryd::RespValue part;
      size_t part_used = 0;
      if (canaryd::parse_resp(buf.substr(0, cut), part_used, part) !=
          canaryd::RespParse::kIncomplete)
        std::abort();
    }
    // Re-parsing the exact bytes gives the same reply.
    canaryd::RespValue again;
    size_t again_used = 0;
    if (canaryd::parse_resp(buf.substr(0, used), again_used, again) != canaryd::RespParse::kOk ||
        again_used != used || !same(v, again))
      std::abort();
    buf.remove_prefix(used);
  }
  return 0;
}
