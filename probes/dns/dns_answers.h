// A DNS reply as the dns probe reads it: the response code from the header and
// the answers of the queried type as text, decoded by c-ares's own parsers.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace canaryd {

// The record types a dns probe may query, with their wire numbers.
enum class DnsRecord { kA = 1, kCname = 5, kMx = 15, kTxt = 16, kAaaa = 28, kSrv = 33 };

std::optional<DnsRecord> dns_record_from_name(std::string_view name);
std::string_view dns_record_name(DnsRecord record);

// RCODE names of RFC 1035 (0-5); others print as "RCODE<n>".
std::optional<int> dns_rcode_from_name(std::string_view name);
std::string dns_rcode_name(int rcode);

// The RCODE of a reply, nullopt when it is shorter than a DNS header.
std::optional<int> dns_reply_rcode(std::string_view reply);

// At most this many answers of one reply are kept.
inline constexpr size_t kMaxDnsAnswers = 64;

// The answers of `record` type in `reply`, as a user writes them:
//  A, AAAA: the address ("192.0.2.1", "2001:db8::1");
//  CNAME:   the name the alias chain ends at;
//  TXT:     each record's strings joined (as SPF and DKIM read them);
//  MX:      "PRIORITY HOST";  SRV: "PRIORITY WEIGHT PORT TARGET".
// Returns c-ares's status: ARES_SUCCESS, ARES_ENODATA (none of that type) or
// ARES_EBADRESP (malformed).
int dns_answers(DnsRecord record, std::string_view reply, std::vector<std::string>& answers);

}  // namespace canaryd
