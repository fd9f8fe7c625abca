#include "probes/dns/dns_answers.h"

#include <ares.h>
#include <arpa/inet.h>
#include <fmt/format.h>
#include <netdb.h>

#include <array>
#include <cstring>

namespace canaryd {

namespace {

struct RecordName {
  DnsRecord record;
  std::string_view name;
};
constexpr std::array<RecordName, 6> kRecords{{{DnsRecord::kA, "A"},
                                              {DnsRecord::kAaaa, "AAAA"},
                                              {DnsRecord::kCname, "CNAME"},
                                              {DnsRecord::kTxt, "TXT"},
                                              {DnsRecord::kMx, "MX"},
                                              {DnsRecord::kSrv, "SRV"}}};

constexpr std::array<std::string_view, 6> kRcodes{"NOERROR",  "FORMERR", "SERVFAIL",
                                                  "NXDOMAIN", "NOTIMP",  "REFUSED"};

const unsigned char* bytes(std::string_view reply) {
  return reinterpret_cast<const unsigned char*>(reply.data());
}

int length(std::string_view reply) { return static_cast<int>(reply.size()); }

int addresses(int family, std::string_view reply, std::vector<std::string>& out) {
  char text[INET6_ADDRSTRLEN];
  if (family == AF_INET) {
    std::array<ares_addrttl, kMaxDnsAnswers> found{};
    int n = static_cast<int>(found.size());
    int rc = ares_parse_a_reply(bytes(reply), length(reply), nullptr, found.data(), &n);
    if (rc != ARES_SUCCESS) return rc;
    for (int i = 0; i < n; ++i) {
      if (inet_ntop(AF_INET, &found[i].ipaddr, text, sizeof text)) out.emplace_back(text);
    }
  } else {
    std::array<ares_addr6ttl, kMaxDnsAnswers> found{};
    int n = static_cast<int>(found.size());
    int rc = ares_parse_aaaa_reply(bytes(reply), length(reply), nullptr, found.data(), &n);
    if (rc != ARES_SUCCESS) return rc;
    for (int i = 0; i < n; ++i) {
      if (inet_ntop(AF_INET6, &found[i].ip6addr, text, sizeof text)) out.emplace_back(text);
    }
  }
  return out.empty() ? ARES_ENODATA : ARES_SUCCESS;
}

int canonical_name(std::string_view reply, std::vector<std::string>& out) {
  // c-ares has no CNAME parser; its A parser follows the alias chain and
  // names where it ends (h_name), with or without addresses there.
  hostent* host = nullptr;
  int rc = ares_parse_a_reply(bytes(reply), length(reply), &host, nullptr, nullptr);
  if (host == nullptr) return rc == ARES_SUCCESS ? ARES_ENODATA : rc;
  bool aliased = host->h_aliases != nullptr && host->h_aliases[0] != nullptr;
  if (aliased && host->h_name != nullptr) out.emplace_back(host->h_name);
  ares_free_hostent(host);
  return out.empty() ? ARES_ENODATA : ARES_SUCCESS;
}

int texts(std::string_view reply, std::vector<std::string>& out) {
  ares_txt_ext* list = nullptr;
  int rc = ares_parse_txt_reply_ext(bytes(reply), length(reply), &list);
  if (rc != ARES_SUCCESS) return rc;
  for (ares_txt_ext* t = list; t != nullptr; t = t->next) {
    if (t->record_start || out.empty()) {
      if (out.size() == kMaxDnsAnswers) break;
      out.emplace_back();
    }
    out.back().append(reinterpret_cast<const char*>(t->txt), t->length);
  }
  ares_free_data(list);
  return out.empty() ? ARES_ENODATA : ARES_SUCCESS;
}

int mail_exchangers(std::string_view reply, std::vector<std::string>& out) {
  ares_mx_reply* list = nullptr;
  int rc = ares_parse_mx_reply(bytes(reply), length(reply), &list);
  if (rc != ARES_SUCCESS) return rc;
  for (ares_mx_reply* m = list; m != nullptr && out.size() < kMaxDnsAnswers; m = m->next) {
    out.push_back(fmt::format("{} {}", m->priority, m->host));
  }
  ares_free_data(list);
  return out.empty() ? ARES_ENODATA : ARES_SUCCESS;
}

int services(std::string_view reply, std::vector<std::string>& out) {
  ares_srv_reply* list = nullptr;
  int rc = ares_parse_srv_reply(bytes(reply), length(reply), &list);
  if (rc != ARES_SUCCESS) return rc;
  for (ares_srv_reply* s = list; s != nullptr && out.size() < kMaxDnsAnswers; s = s->next) {
    out.push_back(fmt::format("{} {} {} {}", s->priority, s->weight, s->port, s->host));
  }
  ares_free_data(list);
  return out.empty() ? ARES_ENODATA : ARES_SUCCESS;
}

}  // namespace

std::optional<DnsRecord> dns_record_from_name(std::string_view name) {
  for (const auto& r : kRecords) {
    if (r.name == name) return r.record;
  }
  return std::nullopt;
}

std::string_view dns_record_name(DnsRecord record) {
  for (const auto& r : kRecords) {
    if (r.record == record) return r.name;
  }
  return "?";
}

std::optional<int> dns_rcode_from_name(std::string_view name) {
  for (size_t i = 0; i < kRcodes.size(); ++i) {
    if (kRcodes[i] == name) return static_cast<int>(i);
  }
  return std::nullopt;
}

std::string dns_rcode_name(int rcode) {
  if (rcode >= 0 && static_cast<size_t>(rcode) < kRcodes.size()) {
    return std::string(kRcodes[static_cast<size_t>(rcode)]);
  }
  return fmt::format("RCODE{}", rcode);
}

std::optional<int> dns_reply_rcode(std::string_view reply) {
  constexpr size_t kHeaderBytes = 12;
  if (reply.size() < kHeaderBytes) return std::nullopt;
  return static_cast<unsigned char>(reply[3]) & 0x0f;
}

int dns_answers(DnsRecord record, std::string_view reply, std::vector<std::string>& answers) {
  answers.clear();
  switch (record) {
    case DnsRecord::kA:
      return addresses(AF_INET, reply, answers);
    case DnsRecord::kAaaa:
      return addresses(AF_INET6, reply, answers);
    case DnsRecord::kCname:
      return canonical_name(reply, answers);
    case DnsRecord::kTxt:
      return texts(reply, answers);
    case DnsRecord::kMx:
      return mail_exchangers(reply, answers);
    case DnsRecord::kSrv:
      return services(reply, answers);
  }
  return ARES_EBADRESP;
}

}  // namespace canaryd
