#include "probes/dns/dns.h"

#include <fmt/format.h>
#include <re2/re2.h>

#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "base/secrets.h"
#include "probes/common/ares_channel.h"
#include "probes/common/config_fields.h"
#include "probes/common/resolve.h"
#include "probes/dns/dns_answers.h"

namespace canaryd {

namespace {

constexpr int kClassIn = 1;
constexpr int kNoError = 0;
// How many answers a failure message lists before "and N more".
constexpr size_t kQuotedAnswers = 4;

// One entry of expect.answers: an exact text or a regular expression that
// must match the whole answer.
struct AnswerMatcher {
  std::string text;
  std::shared_ptr<RE2> regex;

  bool matches(const std::string& answer) const {
    return regex ? RE2::FullMatch(answer, *regex) : answer == text;
  }
  std::string describe() const {
    return regex ? fmt::format("regex \"{}\"", text) : fmt::format("\"{}\"", text);
  }
};

struct DnsOptions {
  std::string name;
  std::string servers;  // ares_set_servers_ports_csv form; empty: resolv.conf
  std::string resolver_text = "system resolver";
  DnsRecord record = DnsRecord::kA;
  bool tcp = false;
  std::vector<AnswerMatcher> answers;
  bool match_all = false;
  int rcode = kNoError;
};

class DnsProbe : public Probe {
 public:
  explicit DnsProbe(DnsOptions opts) : opts_(std::move(opts)) {}

  // Probe
  void start(RunContext& ctx, Done done) override;
  CancelInfo cancel() override;
  std::string target() const override {
    return fmt::format("{} {} @{} ({})", dns_record_name(opts_.record), opts_.name,
                       opts_.resolver_text, opts_.tcp ? "tcp" : "udp");
  }

 private:
  void on_reply(int status, const std::string& reply);
  ProbeResult judge(int status, const std::string& reply);
  ProbeResult check_answers(const std::vector<std::string>& answers);
  std::string quote(const std::vector<std::string>& answers) const;
  void finish(ProbeResult result);

  DnsOptions opts_;
  Done done_;
  std::unique_ptr<AresChannel> channel_;
  PhaseTimer phases_;
};

void DnsProbe::start(RunContext& ctx, Done done) {
  done_ = std::move(done);
  phases_.start();
  AresChannel::Options o;
  o.servers = opts_.servers;
  o.tcp = opts_.tcp;
  std::string error;
  channel_ = AresChannel::create(ctx.loop, o, ctx.fail, error);
  if (!channel_) {
    finish(ProbeResult::failure(Reason::kDns, target_text(error)));
    return;
  }
  channel_->query(opts_.name, kClassIn, static_cast<int>(opts_.record),
                  [this](int status, std::string reply) { on_reply(status, reply); });
}

void DnsProbe::on_reply(int status, const std::string& reply) {
  const uint64_t now = uv_hrtime();
  phases_.end("query", now);
  phases_.end_run(now);
  finish(judge(status, reply));
}

ProbeResult DnsProbe::judge(int status, const std::string& reply) {
  std::optional<int> rcode = dns_reply_rcode(reply);
  if (!rcode) {
    // No reply to read: c-ares gave up on the server.
    switch (status) {
      case ARES_ETIMEOUT: {
        auto r =
            ProbeResult::failure(Reason::kTimeout, "the resolver did not answer", phases_.phases());
        r.details.timeout_phase = "query";
        return r;
      }
      case ARES_ECONNREFUSED:
        return ProbeResult::failure(
            Reason::kConnectRefused,
            opts_.tcp ? "the resolver refused the connection"
                      // A TC reply makes c-ares ask again over TCP.
                      : "the resolver's port is closed (or it asked for TCP, which is refused)",
            phases_.phases());
      case ARES_ENOMEM:
      case ARES_EBADNAME:
      case ARES_EBADQUERY:
        return ProbeResult::failure(Reason::kInternal,
                                    fmt::format("query not sent: {}", ares_strerror(status)),
                                    phases_.phases());
      default:
        return ProbeResult::failure(Reason::kDns,
                                    fmt::format("no usable reply: {}", ares_strerror(status)),
                                    phases_.phases());
    }
  }
  if (*rcode != opts_.rcode) {
    // A server-side failure is a DNS failure whatever was expected; a
    // NOERROR where NXDOMAIN was expected is the content being wrong.
    Reason why = *rcode == kNoError ? Reason::kAssertion : Reason::kDns;
    return ProbeResult::failure(
        why,
        fmt::format("{} {}: {}, expected {}", dns_record_name(opts_.record), opts_.name,
                    dns_rcode_name(*rcode), dns_rcode_name(opts_.rcode)),
        phases_.phases());
  }
  if (opts_.rcode != kNoError) return ProbeResult::ok(phases_.phases());
  std::vector<std::string> answers;
  int parsed = dns_answers(opts_.record, reply, answers);
  if (parsed == ARES_ENODATA) {
    return ProbeResult::failure(
        Reason::kDns, fmt::format("{} {}: no answer", dns_record_name(opts_.record), opts_.name),
        phases_.phases());
  }
  if (parsed != ARES_SUCCESS) {
    return ProbeResult::failure(
        Reason::kDns,
        fmt::format("{} {}: malformed reply ({})", dns_record_name(opts_.record), opts_.name,
                    ares_strerror(parsed)),
        phases_.phases());
  }
  return check_answers(answers);
}

ProbeResult DnsProbe::check_answers(const std::vector<std::string>& answers) {
  size_t found = 0;
  const AnswerMatcher* missing = nullptr;
  for (const auto& want : opts_.answers) {
    bool seen = false;
    for (const auto& a : answers) seen = seen || want.matches(a);
    if (seen) {
      ++found;
    } else if (missing == nullptr) {
      missing = &want;
    }
  }
  bool ok = opts_.answers.empty() || (opts_.match_all ? missing == nullptr : found > 0);
  if (ok) return ProbeResult::ok(phases_.phases());
  std::string expected = opts_.match_all || opts_.answers.size() == 1
                             ? fmt::format("no answer matches {}", missing->describe())
                             : "no answer matches any expected one";
  return ProbeResult::failure(Reason::kAssertion,
                              fmt::format("{} {}: {}; got {}", dns_record_name(opts_.record),
                                          opts_.name, expected, quote(answers)),
                              phases_.phases());
}

std::string DnsProbe::quote(const std::vector<std::string>& answers) const {
  // Answers are the target's text: each one made safe on its own, and only a few.
  std::string out;
  for (size_t i = 0; i < answers.size() && i < kQuotedAnswers; ++i) {
    if (i > 0) out += ", ";
    out += '"';
    out += target_text(answers[i], kTargetTextBytes / kQuotedAnswers);
    out += '"';
  }
  if (answers.size() > kQuotedAnswers) {
    out += fmt::format(" and {} more", answers.size() - kQuotedAnswers);
  }
  return out;
}

void DnsProbe::finish(ProbeResult result) {
  Done done = std::move(done_);
  done_ = nullptr;
  // Destroying the channel here is safe: AresChannel hands answers over only
  // once c-ares has returned.
  channel_.reset();
  if (done) done(std::move(result));
}

CancelInfo DnsProbe::cancel() {
  CancelInfo info;
  info.phase = "query";
  info.phases = phases_.phases();
  done_ = nullptr;
  channel_.reset();
  return info;
}

}  // namespace

static std::vector<Reason> dns_probe_reasons() {
  return {Reason::kTimeout, Reason::kDns, Reason::kConnectRefused, Reason::kAssertion,
          Reason::kInternal};
}

static std::vector<std::string_view> dns_probe_phases() { return {"query", "total"}; }

// A name c-ares can put in a query: 1-253 printable characters without spaces.
static bool valid_query_name(const std::string& name) {
  if (name.empty() || name.size() > 253) return false;
  for (unsigned char c : name) {
    if (c <= 0x20 || c >= 0x7f) return false;
  }
  return true;
}

static void read_resolver(YamlSection& s, DnsOptions& o) {
  auto text = s.get_string("resolver");
  if (!text) return;
  std::string host = *text;
  int port = 53;
  if (auto hp = split_host_port(*text)) {
    host = hp->first;
    port = hp->second;
  }
  auto addr = numeric_address(host, port);
  if (!addr) {
    s.error("resolver",
            fmt::format("expected an IP address with an optional port, got \"{}\"", *text));
    return;
  }
  bool v6 = addr->storage.ss_family == AF_INET6;
  o.servers = v6 ? fmt::format("[{}]:{}", addr->ip, port) : fmt::format("{}:{}", addr->ip, port);
  o.resolver_text = o.servers;
}

static void read_expect(YamlSection& expect, DnsOptions& o) {
  if (auto rcode = expect.get_string("rcode")) {
    if (auto n = dns_rcode_from_name(*rcode)) {
      o.rcode = *n;
    } else {
      expect.error("rcode", fmt::format("expected NOERROR, FORMERR, SERVFAIL, NXDOMAIN, NOTIMP or "
                                        "REFUSED, got \"{}\"",
                                        *rcode));
    }
  }
  if (auto match = expect.get_string("match")) {
    if (*match != "all" && *match != "any") {
      expect.error("match", fmt::format("expected all or any, got \"{}\"", *match));
    }
    o.match_all = *match == "all";
  }
  auto list = expect.get_node("answers");
  if (!list) return;
  std::string path = expect.key_path("answers");
  if (!list->IsSequence() || list->size() == 0) {
    expect.error("answers", "expected a non-empty list of answers or {regex: ...}");
    return;
  }
  for (size_t i = 0; i < list->size(); ++i) {
    YAML::Node item = (*list)[i];
    std::string item_path = fmt::format("{}[{}]", path, i);
    if (item.IsScalar()) {
      o.answers.push_back({item.Scalar(), nullptr});
      continue;
    }
    if (!item.IsMap()) {
      expect.error_at(item, item_path, "expected an answer or {regex: ...}");
      continue;
    }
    YamlSection entry(item, item_path, expect.context());
    if (auto compiled = read_regex(entry, "regex")) {
      o.answers.push_back({compiled->pattern(), std::move(compiled)});
    } else if (!entry.has("regex")) {
      entry.error("", "missing required key regex");
    }
    entry.finish();
  }
  if (o.rcode != kNoError && !o.answers.empty()) {
    expect.error("answers",
                 fmt::format("answers need rcode NOERROR, not {}", dns_rcode_name(o.rcode)));
  }
}

static ProbePtr make_dns_probe(const ProbeSpec& /*spec*/, YamlSection& s) {
  DnsOptions o;
  size_t errors_before = s.context().errors->size();
  if (auto name = s.get_string("name")) {
    if (!valid_query_name(*name)) {
      s.error("name", "expected a domain name (1-253 characters, no spaces)");
    }
    o.name = *name;
  } else if (!s.has("name")) {
    s.error("", "missing required key name");
  }
  read_resolver(s, o);
  if (auto record = s.get_string("record")) {
    if (auto r = dns_record_from_name(*record)) {
      o.record = *r;
    } else {
      s.error("record",
              fmt::format("expected A, AAAA, CNAME, TXT, MX or SRV, got \"{}\"", *record));
    }
  }
  if (auto transport = s.get_string("transport")) {
    if (*transport != "udp" && *transport != "tcp") {
      s.error("transport", fmt::format("expected udp or tcp, got \"{}\"", *transport));
    }
    o.tcp = *transport == "tcp";
  }
  if (auto expect = s.get_section("expect")) {
    read_expect(*expect, o);
    expect->finish();
  }
  s.finish();
  if (s.context().errors->size() != errors_before) return nullptr;
  return std::make_unique<DnsProbe>(std::move(o));
}

ProbeType dns_probe_type() {
  return {.name = "dns",
          .reasons = dns_probe_reasons(),
          .phases = dns_probe_phases(),
          .make = &make_dns_probe,
          .latency_baseline = true};
}

}  // namespace canaryd
