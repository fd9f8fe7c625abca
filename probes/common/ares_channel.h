// A c-ares channel driven by a libuv loop: DNS on the loop itself, no thread.
//
// c-ares tells us which sockets it wants watched (ARES_OPT_SOCK_STATE_CB);
// each gets a uv_poll_t, and one uv_timer_t runs ares_timeout()'s deadline.
// Answers are handed over only after c-ares has returned from processing, so
// a callback may destroy the channel (c-ares must not be destroyed from
// inside its own callbacks).
#pragma once

#include <ares.h>
#include <sys/socket.h>
#include <uv.h>

#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "base/guard.h"

namespace canaryd {

// Thread-safety: loop thread only.
class AresChannel {
 public:
  struct Options {
    // "host:port,host" as ares_set_servers_ports_csv takes it; empty: the
    // servers of /etc/resolv.conf.
    std::string servers;
    bool tcp = false;           // ARES_FLAG_USEVC: every query over TCP
    int try_timeout_ms = 1000;  // c-ares doubles it on each retry round; 0: resolv.conf's
    int tries = 4;              // 0: resolv.conf's
    // ARES_FLAG_NOCHECKRESP: a SERVFAIL or REFUSED reply comes back as it
    // is rather than being retried elsewhere (what the dns probe reports).
    bool refusal_is_answer = true;
  };

  // The raw reply (empty when there is none) and c-ares's status. With
  // ARES_FLAG_NOCHECKRESP a SERVFAIL or REFUSED reply comes back as it is
  // rather than being retried elsewhere.
  using Callback = std::function<void(int status, std::string reply)>;
  // Every address of a name (ports unset), in c-ares's order: RFC 6724's
  // sort, IPv6 and IPv4 mixed.
  using AddressCallback = std::function<void(int status, std::vector<sockaddr_storage> found)>;

  // nullptr and `error` set when c-ares cannot build the channel (e.g. an
  // unusable resolv.conf or server list). `fail` ends the run whose
  // callback threw.
  static std::unique_ptr<AresChannel> create(uv_loop_t* loop, const Options& opts, RunFault fail,
                                             std::string& error);

  // Releases everything synchronously: no callback runs afterwards. The uv
  // handles finish closing on the loop.
  ~AresChannel();
  AresChannel(const AresChannel&) = delete;
  AresChannel& operator=(const AresChannel&) = delete;

  // One query (no search domains, exactly `name`); `cb` runs once, on the
  // loop, never from inside query().
  void query(const std::string& name, int dns_class, int type, Callback cb);

  // A name's IPv4 and IPv6 addresses the way getaddrinfo finds them: the
  // lookups order of resolv.conf / nsswitch.conf (files, then DNS:
  // /etc/hosts is honoured), search domains included. `cb` runs once, on the
  // loop, never from inside resolve().
  void resolve(const std::string& name, AddressCallback cb);

 private:
  struct Watch;
  template <class Cb>
  struct Pending {
    AresChannel* owner;
    Cb cb;
  };
  // An answer's callback with its arguments bound, run after c-ares returns.
  using Ready = std::function<void()>;

  AresChannel(uv_loop_t* loop, RunFault fail);
  static void on_sock_state(void* data, ares_socket_t fd, int readable, int writable);
  static void on_answer(void* arg, int status, int timeouts, unsigned char* abuf, int alen);
  static void on_addresses(void* arg, int status, int timeouts, ares_addrinfo* result);
  void deliver_soon();
  static void on_poll(uv_poll_t* handle, int status, int events);
  static void on_timer(uv_timer_t* timer);
  void watch(ares_socket_t fd, bool readable, bool writable);
  void unwatch(ares_socket_t fd);
  // Re-arms the timer, then delivers ready answers; `this` may be gone after.
  void after_processing();

  uv_loop_t* loop_;
  RunFault fail_;
  ares_channel channel_ = nullptr;
  uv_timer_t* timer_ = nullptr;  // heap: it outlives us until its close callback
  std::map<ares_socket_t, Watch*> watches_;
  std::deque<Ready> ready_;
  bool destroying_ = false;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace canaryd
