// The DNS probe against a real dnsmasq and a hostile UDP resolver
// (tests/fixtures/hostile_dns.py), read through `canaryd once --json` and a
// running daemon's state.
#include <fmt/format.h>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "tests/support/dns_servers.h"
#include "tests/support/harness.h"

using namespace canaryd::test;
using namespace std::chrono_literals;
using nlohmann::json;

namespace {

std::string dns_probe(const std::string& name, const std::string& resolver, const std::string& body,
                      const std::string& timeout = "2s") {
  return fmt::format(
      "  - name: {}\n    type: dns\n    interval: 5s\n    timeout: {}\n    dns:\n"
      "      resolver: \"{}\"\n{}",
      name, timeout, resolver, body);
}

// The records every dnsmasq of these tests serves.
std::vector<std::string> test_records() {
  return {"--host-record=a.test,192.0.2.1", "--host-record=six.test,2001:db8::1",
          "--cname=alias.test,a.test",      "--txt-record=t.test,v=spf1 -all",
          "--mx-host=m.test,mail.test,10",  "--srv-host=_sip._tcp.s.test,sip.test,5060,10,5"};
}

// A result message a user reads: one line, no raw control characters.
void check_one_safe_line(const std::string& message) {
  INFO(message);
  CHECK(!message.empty());
  for (unsigned char c : message) {
    CHECK((c >= 0x20 && c != 0x7f));
  }
}

}  // namespace

TEST_CASE("dns: records, expectations and rcodes against dnsmasq", "[dns]") {
  DnsmasqServer dnsmasq(test_records());
  const std::string r = dnsmasq.address();
  std::string config =
      "probes:\n" +
      dns_probe("a", r, "      name: a.test\n      expect: {answers: [192.0.2.1]}\n") +
      dns_probe("a-regex", r,
                "      name: a.test\n      expect:\n        answers: [{regex: "
                "'192\\.0\\.2\\.\\d+'}]\n") +
      dns_probe("aaaa", r,
                "      name: six.test\n      record: AAAA\n"
                "      expect: {answers: ['2001:db8::1']}\n") +
      dns_probe(
          "cname", r,
          "      name: alias.test\n      record: CNAME\n      expect: {answers: [a.test]}\n") +
      dns_probe(
          "txt", r,
          "      name: t.test\n      record: TXT\n      expect: {answers: ['v=spf1 -all']}\n") +
      dns_probe(
          "mx", r,
          "      name: m.test\n      record: MX\n      expect: {answers: ['10 mail.test']}\n") +
      dns_probe("srv", r,
                "      name: _sip._tcp.s.test\n      record: SRV\n"
                "      expect: {answers: ['10 5 5060 sip.test']}\n") +
      dns_probe("tcp", r,
                "      name: a.test\n      transport: tcp\n"
                "      expect: {answers: [192.0.2.1]}\n") +
      dns_probe(
          "any-of", r,
          "      name: a.test\n      expect: {match: any, answers: [192.0.2.7, 192.0.2.1]}\n") +
      dns_probe(
          "all-of", r,
          "      name: a.test\n      expect: {match: all, answers: [192.0.2.7, 192.0.2.1]}\n") +
      dns_probe("wrong-answer", r, "      name: a.test\n      expect: {answers: [192.0.2.99]}\n") +
      dns_probe("nxdomain", r, "      name: missing.test\n") +
      dns_probe("nxdomain-expected", r,
                "      name: missing.test\n      expect: {rcode: NXDOMAIN}\n") +
      dns_probe("exists-but-nxdomain-expected", r,
                "      name: a.test\n      expect: {rcode: NXDOMAIN}\n") +
      dns_probe("no-aaaa", r, "      name: a.test\n      record: AAAA\n");
  int code = 0;
  json out = once_json(config, &code);
  CHECK(code == 1);
  for (const char* ok : {"a", "a-regex", "aaaa", "cname", "txt", "mx", "srv", "tcp", "any-of",
                         "nxdomain-expected"}) {
    INFO(ok << ": " << result_of(out, ok).dump());
    CHECK(once_reason(out, ok) == "ok");
  }
  CHECK(once_reason(out, "all-of") == "assertion");
  CHECK(once_reason(out, "wrong-answer") == "assertion");
  std::string wrong = result_of(out, "wrong-answer")["message"];
  CHECK(wrong.find("192.0.2.99") != std::string::npos);
  CHECK(wrong.find("\"192.0.2.1\"") != std::string::npos);
  CHECK(once_reason(out, "nxdomain") == "dns");
  CHECK(result_of(out, "nxdomain")["message"].get<std::string>().find("NXDOMAIN") !=
        std::string::npos);
  CHECK(once_reason(out, "exists-but-nxdomain-expected") == "assertion");
  CHECK(once_reason(out, "no-aaaa") == "dns");
  CHECK(result_of(out, "no-aaaa")["message"].get<std::string>().find("no answer") !=
        std::string::npos);
  json phases = result_of(out, "a")["phases"];
  CHECK(phases.contains("query"));
  CHECK(phases.contains("total"));

  // Nobody on the port any more: refused over TCP and UDP alike (ICMP port
  // unreachable), never a timeout.
  dnsmasq.stop();
  int down_code = 0;
  json down = once_json("probes:\n" + dns_probe("udp", r, "      name: a.test\n") +
                            dns_probe("tcp", r, "      name: a.test\n      transport: tcp\n"),
                        &down_code);
  CHECK(down_code == 1);
  CHECK(once_reason(down, "udp") == "connect_refused");
  CHECK(once_reason(down, "tcp") == "connect_refused");
}

TEST_CASE("dns: a hostile resolver gets a classified reason and a safe message", "[dns]") {
  HostileDns hostile;
  const std::string r = hostile.address();
  std::string config =
      "probes:\n" + dns_probe("short", r, "      name: short.hostile.test\n") +
      dns_probe("junk", r, "      name: junk.hostile.test\n") +
      dns_probe("garbage", r, "      name: garbage.hostile.test\n", "1s") +
      dns_probe("wrong-id", r, "      name: wrongid.hostile.test\n", "1s") +
      dns_probe("flood", r,
                "      name: flood.hostile.test\n      expect: {answers: [192.0.2.1]}\n") +
      dns_probe("truncated", r, "      name: tc.hostile.test\n") +
      dns_probe("txt-control", r,
                "      name: txtcontrol.hostile.test\n      record: TXT\n"
                "      expect: {answers: [nothing-like-this]}\n") +
      dns_probe("huge-label", r, "      name: hugelabel.hostile.test\n");
  int code = 0;
  json out = once_json(config, &code);
  CHECK(code == 1);
  CHECK(once_reason(out, "short") == "dns");
  CHECK(once_reason(out, "junk") == "dns");
  // A reply that matches no query in flight is dropped, as a resolver
  // client must (it could be spoofed): the query runs out of time.
  CHECK(once_reason(out, "garbage") == "timeout");
  CHECK(once_reason(out, "wrong-id") == "timeout");
  CHECK(once_reason(out, "flood") == "ok");
  // TC: c-ares asks again over TCP, which nobody serves there.
  CHECK(once_reason(out, "truncated") == "connect_refused");
  CHECK(once_reason(out, "txt-control") == "assertion");
  CHECK(once_reason(out, "huge-label") == "dns");
  for (const auto& result : out["results"]) {
    INFO(result.dump());
    CHECK(result["reason"] != "internal");
    if (result["reason"] != "ok") check_one_safe_line(result["message"].get<std::string>());
  }
  std::string txt = result_of(out, "txt-control")["message"];
  CHECK(txt.find("\\x1b[31mred") != std::string::npos);
  CHECK(txt.find("level=error msg=forged") != std::string::npos);
  CHECK(detail(result_of(out, "wrong-id"), "timeout_phase") == "query");
  CHECK(hostile.process().running());
}

TEST_CASE("dns: a daemon keeps probing a silent resolver and a good one", "[dns][daemon]") {
  DnsmasqServer dnsmasq(test_records());
  HostileDns hostile;
  std::string config =
      "global:\n  listen: \"{{listen}}\"\nprobes:\n" +
      dns_probe("silent", hostile.address(), "      name: wrongid.hostile.test\n", "500ms") +
      dns_probe("good", dnsmasq.address(), "      name: a.test\n", "500ms");
  // Faster than dns_probe's 5 s interval, so the runs pile up quickly.
  size_t pos = 0;
  while ((pos = config.find("interval: 5s", pos)) != std::string::npos) {
    config.replace(pos, 12, "interval: 600ms");
  }
  Daemon d(config);
  auto runs = [&](const std::string& p) {
    auto v = metric_value(d.metrics(), "canary_probe_runs_total", {{"probe", p}});
    return v ? *v : 0.0;
  };
  REQUIRE(wait_until([&] { return runs("silent") >= 4 && runs("good") >= 4; }, 30s));
  std::string m = d.metrics();
  CHECK(metric_value(m, "canary_probe_failures_total",
                     {{"probe", "silent"}, {"reason", "timeout"}}) == runs("silent"));
  CHECK(metric_value(m, "canary_probe_success", {{"probe", "good"}}) == 1.0);
  for (const char* reason : {"dns", "connect_refused", "assertion", "internal"}) {
    INFO(reason);
    CHECK(metric_value(m, "canary_probe_failures_total",
                       {{"probe", "silent"}, {"reason", reason}}) == 0.0);
  }
  json state = d.state("silent");
  CHECK(state["last"]["reason"] == "timeout");
  CHECK(state["last"]["details"]["timeout_phase"] == "query");
}
