// DNS replies as a resolver sends them, decoded the way the dns probe reads
// them (probes/dns/dns_answers.*, over c-ares's parsers). Beyond not
// crashing: answers are capped, a reply with answers parsed OK, and every
// answer quoted through target_text() is one safe line.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "base/secrets.h"
#include "probes/dns/dns_answers.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  static constexpr canaryd::DnsRecord kTypes[] = {
      canaryd::DnsRecord::kA,   canaryd::DnsRecord::kAaaa, canaryd::DnsRecord::kCname,
      canaryd::DnsRecord::kTxt, canaryd::DnsRecord::kMx,   canaryd::DnsRecord::kSrv};
  canaryd::DnsRecord record = kTypes[data[0] % 6];
  std::string_view reply(reinterpret_cast<const char*>(data + 1), size - 1);
  auto rcode = canaryd::dns_reply_rcode(reply);
  if (rcode && (*rcode < 0 || *rcode > 15)) std::abort();
  (void)canaryd::dns_rcode_name(rcode.value_or(0));
  std::vector<std::string> answers;
  int status = canaryd::dns_answers(record, reply, answers);
  if (answers.size() > canaryd::kMaxDnsAnswers) std::abort();
  if (!answers.empty() && status != 0) std::abort();
  for (const auto& a : answers) {
    std::string safe = canaryd::target_text(a);
    for (unsigned char c : safe) {
      if (c < 0x20 || c == 0x7f) std::abort();
    }
  }
  return 0;
}
