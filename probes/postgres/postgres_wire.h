// What a PostgreSQL server sent, as far as canaryd reads it itself: libpq
// tells a server's faults only in text, and computes a SCRAM challenge of any
// size inside PQconnectPoll.
#pragma once

#include <libpq-fe.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace canaryd {

// The most SCRAM-SHA-256 iterations canaryd computes. The server picks the
// count, and libpq computes it inside PQconnectPoll with no way to stop it:
// 2^31-1 is a quarter of an hour of a core, past any deadline, on a pool
// thread that other probes then lack. PostgreSQL's default is 4,096.
inline constexpr uint64_t kMaxScramIterations = 100'000;

// libpq's words (C locale) for a server that does not speak the protocol.
bool libpq_says_protocol(std::string_view msg);

// Takes the SQLSTATE out of a PQERRORS_VERBOSE message (returned, or empty)
// and drops its LOCATION lines.
std::string take_sqlstate(std::string& msg);

// Why the server's pending SCRAM challenge is refused, or nullopt. Peeks at
// the socket; plain connections only.
std::optional<std::string> absurd_scram_challenge(PGconn* conn);

}  // namespace canaryd
