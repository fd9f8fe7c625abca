// The status page's HTML pieces (daemon/status_page.h puts them together):
// escaping, links to a probe, the strip of recent results and the latency
// sparkline. Pure functions, so tests can feed them anything a target sends.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

namespace canaryd {

// The one escape for every text on the page, in element content and in
// attribute values (always written in double quotes) alike: & < > " ' become
// entities. A target's text reaches the page already through target_text()
// (valid UTF-8, no control characters), so this is all HTML needs.
std::string html_escape(std::string_view text);

// A path segment with everything but RFC 3986's unreserved characters
// percent-encoded, for the link to a probe's page.
std::string percent_encode(std::string_view text);

// The href of a probe's page: "/status/probe/<name, percent-encoded>".
std::string probe_href(std::string_view name);

// The polyline points (e.g. "2.0,26.0 14.0,4.0") of `values` drawn left to
// right in a width x height box with `pad` units inside each edge, the
// smallest value at the bottom and the largest at the top. Values that are not
// finite numbers are left out. One value, or values all equal, draw a flat
// line across the middle; no value draws nothing ("").
std::string sparkline_points(const std::vector<double>& values, double width, double height,
                             double pad);

// The strip of recent results: one coloured cell for each of the newest
// `most` entries of a state API "history" array (newest first), drawn oldest
// to newest, each with a title saying its time, result, reason, latency and
// message. Its label counts them in words, so the colours are not the only
// way to read it.
std::string history_strip(const nlohmann::ordered_json& history, size_t most);

// An inline SVG sparkline of the latencies of the newest `most` entries of a
// "history" array, oldest to newest, with a dot on the newest; "" when there
// is none.
std::string latency_sparkline(const nlohmann::ordered_json& history, size_t most, int width,
                              int height);

// Reads of the state API's objects that never throw: the page is rendered on
// the endpoint server's thread, and a missing or odd member reads as absent.
const nlohmann::ordered_json& member(const nlohmann::ordered_json& j, const char* key);
std::string string_member(const nlohmann::ordered_json& j, const char* key);
// A number member, or NaN when absent or not a number.
double number_member(const nlohmann::ordered_json& j, const char* key);
// A JSON value as a person reads it: a string as itself, anything else as JSON.
std::string value_text(const nlohmann::ordered_json& v);

}  // namespace canaryd
