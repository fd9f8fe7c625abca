// W3C Trace Context (https://www.w3.org/TR/trace-context/) for the requests a
// run makes: every run is one trace, its id the run's id, and every request
// in it a span of its own, so an SRE can go from a failed canary run to what
// the platform recorded of it.
#pragma once

#include <string>
#include <string_view>

namespace canaryd {

inline constexpr std::string_view kTraceparentHeader = "traceparent";

// 32 lower-case hex digits from a cryptographic generator, never all zeros
// (the spec's invalid value): a trace id must not collide with another
// system's, and ids guessed from a seeded generator would.
std::string new_trace_id();
// 16 lower-case hex digits, never all zeros.
std::string new_span_id();

// The header value, version 00: "00-<trace id>-<span id>-<flags>", flags 01
// when sampled (the platform should record the trace) and 00 otherwise.
std::string traceparent(std::string_view trace_id, std::string_view span_id, bool sampled);

// Whether `id` is a valid trace id: 32 lower-case hex digits, not all zeros.
bool is_trace_id(std::string_view id);

// Whether a configured header is named traceparent (names are
// case-insensitive): canaryd's own replaces it.
bool is_traceparent_header(std::string_view name);

}  // namespace canaryd
