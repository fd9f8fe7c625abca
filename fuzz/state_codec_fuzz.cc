// A probe's saved state as global.state_file holds it (daemon/probe_state_codec.h):
// the daemon's own file, but a disk, an editor or another version can leave
// anything in it. Beyond not crashing: what decodes, encodes to a text that
// decodes to the very same state, and a refused text leaves the entry alone.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "daemon/probe_state_codec.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  canaryd::ProbeBook::Entry entry;
  entry.history_limit = 50;
  const std::string before = canaryd::encode_probe_state(entry);
  if (!canaryd::decode_probe_state(text, entry)) {
    if (canaryd::encode_probe_state(entry) != before) std::abort();
    return 0;
  }
  if (entry.history.size() > entry.history_limit) std::abort();
  const std::string once = canaryd::encode_probe_state(entry);
  canaryd::ProbeBook::Entry again;
  again.history_limit = 50;
  if (!canaryd::decode_probe_state(once, again)) std::abort();
  if (canaryd::encode_probe_state(again) != once) std::abort();
  return 0;
}
