// What of a probe's state survives a restart (global.state_file): its last
// result, since-times and history ring, as JSON. Counters are not kept:
// Prometheus reads a counter that starts over as a restart, as it should.
//
// The text read back is the daemon's own file, but a file on disk can be
// damaged or edited: decoding checks every field and refuses the whole
// entry rather than restore half of it.
#pragma once

#include <string>

#include "daemon/probe_book.h"

namespace canaryd {

// The lasting part of `entry` (its caller holds the entry's lock).
std::string encode_probe_state(const ProbeBook::Entry& entry);

// Sets the lasting part of `entry` from `json`. False, leaving `entry` as
// it was, when the text is not a state this version wrote.
bool decode_probe_state(const std::string& json, ProbeBook::Entry& entry);

// The probe's identity on disk: a SHA-256 of its fingerprint, so the file
// holds no digest of a secret that could be tried against guesses cheaply.
std::string fingerprint_hash(const ProbeSpec& spec);

}  // namespace canaryd
