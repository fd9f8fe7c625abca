// The one guard at every boundary where a C library (libuv, libcurl,
// libwebsockets, libpq) calls back into canaryd.
//
// A C++ exception that unwinds into C frames ends in std::terminate (or
// leaves the library half-way through an update of its own state). So every
// function handed to a C library runs its body through guarded(): an
// exception stops there, is logged, and is reported to whoever owns the
// callback:
//  - a probe's callback reports to its run (RunContext::fail), which ends
//    that run as `internal`;
//  - the daemon's own callbacks (signals, timers, the HTTP server) pass no
//    run: the exception is logged and the daemon runs on.
#pragma once

#include <exception>
#include <functional>
#include <string>
#include <string_view>
#include <utility>

namespace canaryd {

// Ends one run as `internal`; `what` says where and what was thrown. Set by the engine for each
// run (RunContext::fail); safe to call from inside any library callback, any
// number of times, and after the run is over (then it does nothing).
using RunFault = std::function<void(std::string_view what)>;

namespace guard_detail {
// Out of line: the template below stays small at each of its many sites.
void report(const RunFault& fail, std::string_view where, std::string_view what) noexcept;
}  // namespace guard_detail

// Runs fn(); returns true if it returned normally. On an exception, logs it
// with `where` (a short name of the callback), reports it to `fail` if set,
// and returns false: the caller then gives the C library its error value.
template <class Fn>
bool guarded(const RunFault& fail, std::string_view where, Fn&& fn) noexcept {
  try {
    std::forward<Fn>(fn)();
    return true;
  } catch (const std::exception& e) {
    guard_detail::report(fail, where, e.what());
  } catch (...) {
    guard_detail::report(fail, where, "unknown exception");
  }
  return false;
}

// The daemon's own callbacks: nothing to fail but the log line.
template <class Fn>
bool guarded(std::string_view where, Fn&& fn) noexcept {
  static const RunFault kNone;
  return guarded(kNone, where, std::forward<Fn>(fn));
}

}  // namespace canaryd
