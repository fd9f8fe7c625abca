// DNS peers for the dns probe tests, in the style of servers.h: a real dnsmasq and a hostile
// UDP resolver (tests/fixtures/hostile_dns.py), each started on 127.0.0.1 and stopped by the
// PID we started.
#ifndef CANARYD_TESTS_SUPPORT_DNS_SERVERS_H_
#define CANARYD_TESTS_SUPPORT_DNS_SERVERS_H_

#include <optional>
#include <string>
#include <vector>

#include "tests/support/harness.h"

namespace canaryd::test {

// dnsmasq on 127.0.0.1:<free port> (UDP and TCP), in the foreground as the current user, with
// no upstream servers, no /etc/hosts and no config file: it answers the records given as
// dnsmasq options (e.g. "--host-record=a.test,192.0.2.1", "--txt-record=t.test,hello") and,
// as the only authority for "test." (--local=/test/), NXDOMAIN for other names there. The
// constructor returns once dnsmasq logs that it started (it binds first) and throws
// std::runtime_error with its log if it exits first or is not ready within 30 s. A port lost
// to a parallel test is retried on a new one.
class DnsmasqServer {
 public:
  explicit DnsmasqServer(const std::vector<std::string>& records);

  int port() const { return port_; }
  std::string address() const;  // "127.0.0.1:PORT"
  Process& process() { return *process_; }

  // SIGTERM to our PID (SIGKILL after a grace period); the port is closed once it returns.
  // Idempotent.
  void stop();

 private:
  TempDir dir_;  // declared before process_: the pid file and logs outlive it
  int port_ = 0;
  std::optional<Process> process_;
};

// tests/fixtures/hostile_dns.py on a UDP port of 127.0.0.1 the kernel picks: it answers each
// query with the misbehaviour the query's first label names (see the script). The constructor
// returns once the script has written its ready file; the destructor stops it by PID.
class HostileDns {
 public:
  HostileDns();

  int port() const { return port_; }
  std::string address() const;  // "127.0.0.1:PORT"
  Process& process() { return *process_; }

 private:
  TempDir dir_;  // declared before process_: the ready file and logs outlive it
  int port_ = 0;
  std::optional<Process> process_;
};

}  // namespace canaryd::test

#endif  // CANARYD_TESTS_SUPPORT_DNS_SERVERS_H_
