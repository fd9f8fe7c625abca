// Every default in one place. The escalation numbers live with the alerting
// section; these are the daemon's and the probes' own.
#pragma once

#include <chrono>
#include <string_view>

namespace canaryd::defaults {

using namespace std::chrono_literals;

inline constexpr std::string_view kListen = "127.0.0.1:9464";
inline constexpr std::chrono::milliseconds kInterval = 30s;
// The users' own "everything else" timeout is 60 s; a probe's timeout may not
// exceed its interval, so the default interval's timeout is 10 s and configs
// raise both together.
inline constexpr std::chrono::milliseconds kTimeout = 10s;
inline constexpr std::chrono::milliseconds kMinInterval = 100ms;
inline constexpr std::string_view kCategory = "default";
inline constexpr int kStateHistory = 20;
inline constexpr int kMaxStateHistory = 1000;
inline constexpr int kMaxWorkers = 64;
// retries.attempts at most: each attempt is a whole run against the target,
// and a probe that needs more than this to pass is failing.
inline constexpr int kMaxAttempts = 5;
// global.tracing.sampled: a canary run is rare next to user traffic and is
// looked up exactly when it failed, so its traces are worth keeping.
inline constexpr bool kTraceSampled = true;

}  // namespace canaryd::defaults
