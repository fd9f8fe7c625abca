#include "tests/support/dns_servers.h"

#include <pwd.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>

namespace canaryd::test {

namespace {

using namespace std::chrono_literals;

constexpr auto kStartupTimeout = 30s;
// free_port() is free only *now*: a parallel test may take it first.
constexpr int kPortAttempts = 3;

std::string current_user() {
  passwd entry{};
  passwd* found = nullptr;
  std::vector<char> buf(16384);
  if (::getpwuid_r(::getuid(), &entry, buf.data(), buf.size(), &found) != 0 || found == nullptr) {
    throw std::runtime_error("DnsmasqServer: the current user has no name");
  }
  return entry.pw_name;
}

}  // namespace

DnsmasqServer::DnsmasqServer(const std::vector<std::string>& records) {
  for (int attempt = 1;; ++attempt) {
    port_ = free_port();
    std::vector<std::string> argv = {
        "dnsmasq", "--keep-in-foreground", "--log-facility=-", "--port=" + std::to_string(port_),
        "--listen-address=127.0.0.1", "--bind-interfaces", "--no-resolv", "--no-hosts",
        "--conf-file=/dev/null", "--local=/test/", "--pid-file=" + dir_.file("dnsmasq.pid"),
        // As root dnsmasq would switch to "nobody"; it stays the user we are.
        "--user=" + current_user()};
    argv.insert(argv.end(), records.begin(), records.end());
    process_.emplace(std::move(argv), std::vector<std::string>{}, dir_.path());
    auto started = [&] {
      return process_->stderr_text().find("started, version") != std::string::npos;
    };
    wait_until([&] { return started() || !process_->running(); }, kStartupTimeout);
    if (started() && process_->running()) return;
    bool port_taken = process_->stderr_text().find("in use") != std::string::npos;
    if (!port_taken || attempt == kPortAttempts) {
      throw std::runtime_error("dnsmasq did not start: " + process_->describe());
    }
  }
}

std::string DnsmasqServer::address() const { return "127.0.0.1:" + std::to_string(port_); }

void DnsmasqServer::stop() {
  if (process_) process_->stop();
}

HostileDns::HostileDns() {
  const std::string ready_file = dir_.file("ready.json");
  process_.emplace(
      std::vector<std::string>{python3(), source_dir() + "/tests/fixtures/hostile_dns.py",
                               "--ready-file", ready_file},
      std::vector<std::string>{"PYTHONDONTWRITEBYTECODE=1"}, dir_.path());
  auto ready = [&] {
    std::ifstream in(ready_file);
    std::stringstream text;
    text << in.rdbuf();
    const auto parsed = nlohmann::json::parse(text.str(), nullptr, /*allow_exceptions=*/false);
    if (!parsed.is_object() || !parsed.contains("port")) return false;
    port_ = parsed["port"].get<int>();
    return true;
  };
  if (!wait_until([&] { return ready() || !process_->running(); }, kStartupTimeout) || port_ == 0) {
    throw std::runtime_error("hostile_dns.py did not start: " + process_->describe());
  }
}

std::string HostileDns::address() const { return "127.0.0.1:" + std::to_string(port_); }

}  // namespace canaryd::test
