#include "daemon/service.h"

#include <fmt/format.h>
#include <malloc.h>
#include <spdlog/spdlog.h>
#include <systemd/sd-daemon.h>
#include <uv.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <optional>
#include <system_error>
#include <thread>

#include "base/guard.h"
#include "daemon/config.h"
#include "daemon/daemon_metrics.h"
#include "daemon/engine.h"
#include "daemon/http_server.h"
#include "daemon/probe_book.h"
#include "daemon/probe_metrics.h"
#include "daemon/reload_worker.h"
#include "daemon/state_file.h"
#include "daemon/state_store.h"
#include "daemon/status_page.h"
#include "daemon/web_security.h"
#include "daemon/worker.h"

#ifndef CANARYD_VERSION
#define CANARYD_VERSION "dev"
#endif

namespace canaryd {

namespace {

using namespace std::chrono_literals;

double unix_now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// How long POST /-/reload waits for the outcome before it answers 202. The
// reload's file reads are bounded well below it (BoundedFileReader), so only
// a reload queued behind another, or a huge config, takes longer.
constexpr uint64_t kReloadWaitNs = 9'000'000'000;
// After SIGTERM, how long the exit waits for a reload worker to notice.
constexpr auto kWorkerExitWait = 2s;
// How long installing a config waits for each probe loop to take its share.
constexpr auto kLoopApplyWait = std::chrono::milliseconds(5000);

HttpResponse text_response(int status, std::string body) {
  HttpResponse r;
  r.status = status;
  r.body = std::move(body);
  return r;
}

// A POST /-/reload waiting for its answer.
struct ReloadWaiter {
  HttpRespond respond;
  uint64_t deadline_ns;
};

// Everything the running daemon owns. Members are touched on the loop thread
// unless marked otherwise.
class Service {
 public:
  Service(std::string config_path, ServiceOptions options)
      : config_path_(std::move(config_path)), options_(options) {}
  int run();

 private:
  // HTTP server thread.
  HttpResponse handle(const HttpRequest& req);
  void queue_reload_request(HttpRespond respond);

  // Loop thread.
  void install(std::unique_ptr<Config> config, bool is_reload);
  void start_reload();
  void finish_reload(ConfigLoad load);
  void answer_overdue_reload_requests();
  void wait_for_reload_worker();
  void on_run_result(const RunRecord& rec, ProbeBook::Transition transition);
  void housekeeping();
  void shutdown();

  std::string config_path_;
  const ServiceOptions options_;
  uv_loop_t loop_{};
  // The probe loops, made at startup with global.workers of the first
  // config; a reload keeps their number, so it never moves a probe between
  // loops.
  std::vector<std::unique_ptr<ProbeWorker>> workers_;
  std::unique_ptr<WebSecurity> web_;       // --web.config.file; outlives the server that uses it
  std::unique_ptr<StateFile> state_file_;  // global.state_file; reads the workers' books
  std::unique_ptr<HttpServer> server_;
  GlobalConfig global_;

  DaemonMetrics daemon_metrics_;
  std::vector<const ProbeBook*> books_;  // the workers': /metrics and the state API read them
  StateStore state_;

  uv_signal_t sighup_{}, sigterm_{}, sigint_{};
  uv_async_t reload_async_{};
  uv_async_t reload_done_async_{};
  uv_timer_t housekeeping_timer_{};
  uv_timer_t watchdog_timer_{};
  bool watchdog_ = false;
  uint64_t watchdog_ns_ = 0;

  // Reload requests from the HTTP thread, answered from the loop. reload_waiters_
  // wait for the next reload to start, reload_current_ for the running one.
  std::mutex reload_mu_;
  std::vector<ReloadWaiter> reload_waiters_;  // guarded by reload_mu_
  std::vector<ReloadWaiter> reload_current_;  // guarded by reload_mu_
  bool refuse_reloads_ = false;               // guarded by reload_mu_
  bool reload_running_ = false;
  bool reload_again_ = false;
  std::shared_ptr<ReloadChannel> reload_channel_ = std::make_shared<ReloadChannel>();

  std::atomic<bool> ready_{false};
  std::atomic<uint64_t> loop_heartbeat_ns_{0};  // read by the HTTP thread for /-/healthy
  bool stopping_ = false;
};

// On the probe's worker thread.
void Service::on_run_result(const RunRecord& rec, ProbeBook::Transition transition) {
  // Log changes, not every run: a probe starting to fail should stand out.
  const auto& r = rec.result;
  if (transition == ProbeBook::Transition::kFirstFailure) {
    spdlog::warn("probe {} is failing: {}: {} (trace_id {})", rec.spec.name, reason_name(r.reason),
                 r.message, rec.run_id);
  } else if (transition == ProbeBook::Transition::kRecovered) {
    spdlog::info("probe {} recovered ({:.3f}s)", rec.spec.name, rec.duration_seconds);
  } else if (r.success) {
    spdlog::debug("probe {} ok in {:.3f}s", rec.spec.name, rec.duration_seconds);
  } else {
    spdlog::debug("probe {} failed: {}: {} (trace_id {})", rec.spec.name, reason_name(r.reason),
                  r.message, rec.run_id);
  }
}

void Service::install(std::unique_ptr<Config> config, bool is_reload) {
  global_secrets().replace_configured(config->secrets);
  for (const auto& w : config->warnings)
    spdlog::warn("config: {}", global_secrets().redact(w.str()));
  if (options_.listen) config->global.listen = *options_.listen;
  if (is_reload && config->global.listen.str() != global_.listen.str()) {
    spdlog::warn("global.listen changed to {}; the listener moves only on restart",
                 config->global.listen.str());
    config->global.listen = global_.listen;
  }
  if (is_reload && config->global.state_file != global_.state_file) {
    spdlog::warn("global.state_file changed to \"{}\"; the state file changes only on restart",
                 config->global.state_file);
    config->global.state_file = global_.state_file;
  }
  if (is_reload) {
    if (config->global.workers != global_.workers)
      spdlog::warn(
          "global.workers changed to {}; the number of probe loops changes only on "
          "restart",
          config->global.workers);
    config->global.workers = global_.workers;
  }
  global_ = config->global;
  // Every shard reads the whole config and keeps its own share, spread over
  // the workers.
  std::vector<std::string> configured_types, assigned_types;
  std::vector<std::vector<ConfiguredProbe>> share(workers_.size());
  for (auto& p : config->probes) {
    configured_types.push_back(p.spec.type);
    if (!options_.shard.owns(p.spec.name)) continue;
    assigned_types.push_back(p.spec.type);
    share[worker_of(p.spec.name, static_cast<int>(workers_.size()))].push_back(std::move(p));
  }
  for (size_t i = 0; i < workers_.size(); ++i) {
    if (!workers_[i]->apply(std::move(share[i]), global_.labels, global_.state_history,
                            kLoopApplyWait))
      spdlog::warn("probe loop {} has not taken the new probes within {}s; it will when it can", i,
                   std::chrono::duration_cast<std::chrono::seconds>(kLoopApplyWait).count());
  }
  const size_t probes = assigned_types.size();
  daemon_metrics_.set_probe_counts(global_.labels, options_.shard, configured_types,
                                   assigned_types);
  daemon_metrics_.reload_result(true, unix_now(), is_reload);
  state_.set_config_status(config_path_, true, "");
  if (options_.shard.total > 1) {
    spdlog::info("{} {} of {} probes from {} (shard {} of {})", is_reload ? "reloaded" : "loaded",
                 probes, configured_types.size(), config_path_, options_.shard.index,
                 options_.shard.total);
  } else {
    spdlog::info("{} {} probes from {}", is_reload ? "reloaded" : "loaded", probes, config_path_);
  }
  // Parsing a large config (yaml-cpp's node tree, on a pool thread with its
  // own malloc arena) leaves megabytes free but resident; hand them back.
  malloc_trim(0);
}

void Service::start_reload() {
  if (stopping_) return;
  if (reload_running_) {
    reload_again_ = true;
    return;
  }
  reload_running_ = true;
  {
    std::lock_guard lock(reload_mu_);
    for (auto& w : reload_waiters_) reload_current_.push_back(std::move(w));
    reload_waiters_.clear();
  }
  sd_notify(0, "RELOADING=1");
  // Parsing reads files (the config, ${file:} secrets), within a time bound:
  // off the loop, so probes keep their schedule meanwhile.
  {
    std::lock_guard lock(reload_channel_->mu);
    reload_channel_->busy = true;
  }
  try {
    std::thread(reload_worker, reload_channel_, config_path_).detach();
  } catch (const std::system_error& e) {
    {
      std::lock_guard lock(reload_channel_->mu);
      reload_channel_->busy = false;
    }
    ConfigLoad failed;
    failed.errors.add({config_path_, 0, "", fmt::format("cannot start a reload: {}", e.what())});
    finish_reload(std::move(failed));
  }
}

void Service::finish_reload(ConfigLoad load) {
  bool ok = false;
  std::string message;
  if (stopping_) {
    message = "shutting down";
  } else if (!load.config) {
    // The old config keeps running; the failure is exported and logged.
    std::string errors = global_secrets().redact(load.errors.str());
    while (!errors.empty() && errors.back() == '\n') errors.pop_back();
    // One log line per error: a line never holds a line break.
    spdlog::error("config reload failed, keeping the running config ({} error(s)):",
                  load.errors.size());
    for (const auto& e : load.errors.list()) spdlog::error("  {}", e.str());
    daemon_metrics_.reload_result(false, unix_now(), true);
    state_.set_config_status(config_path_, false, errors);
    message = errors;
  } else {
    install(std::move(load.config), true);
    ok = true;
    message = "config reloaded";
  }
  sd_notify(0, "READY=1");
  {
    std::lock_guard lock(reload_mu_);
    for (auto& w : reload_current_) w.respond(text_response(ok ? 200 : 500, message + "\n"));
    reload_current_.clear();
  }
  reload_running_ = false;
  if (reload_again_) {
    reload_again_ = false;
    start_reload();
  }
}

// The HTTP client gets an answer within kReloadWaitNs whatever the reload is
// doing; the outcome still lands in the metrics and the state API.
void Service::answer_overdue_reload_requests() {
  const uint64_t now = uv_hrtime();
  std::lock_guard lock(reload_mu_);
  for (auto* list : {&reload_waiters_, &reload_current_}) {
    std::erase_if(*list, [&](ReloadWaiter& w) {
      if (w.deadline_ns > now) return false;
      w.respond(text_response(
          202, fmt::format("the reload is still running after {}s; its outcome will show in "
                           "canary_config_last_reload_successful and /api/v1/state\n",
                           kReloadWaitNs / 1'000'000'000)));
      return true;
    });
  }
}

void Service::queue_reload_request(HttpRespond respond) {
  std::lock_guard lock(reload_mu_);
  if (refuse_reloads_) {
    respond(text_response(503, "shutting down\n"));
    return;
  }
  reload_waiters_.push_back({std::move(respond), uv_hrtime() + kReloadWaitNs});
  uv_async_send(&reload_async_);
}

HttpResponse Service::handle(const HttpRequest& req) {
  auto json_response = [](int status, const nlohmann::ordered_json& j) {
    HttpResponse r;
    r.status = status;
    r.content_type = "application/json";
    r.body = j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
    return r;
  };
  auto text = text_response;
  const std::string& path = req.path;
  bool read = req.method == "GET" || req.method == "HEAD";
  if (path == "/-/reload") {
    if (req.method != "POST" && req.method != "PUT") {
      auto r = text(405, "use POST to reload the config\n");
      r.headers.emplace_back("Allow", "POST");
      return r;
    }
    if (!options_.enable_lifecycle) {
      return text(403,
                  "POST /-/reload is disabled: start canaryd with --web.enable-lifecycle, or "
                  "send SIGHUP\n");
    }
    // Answered when the reload ends (or after kReloadWaitNs): meanwhile the
    // server thread goes on serving /metrics and /-/healthy.
    HttpResponse r;
    r.deferred = [this](HttpRespond respond) { queue_reload_request(std::move(respond)); };
    return r;
  }
  if (!read) {
    auto r = text(405, "method not allowed\n");
    r.headers.emplace_back("Allow", "GET, HEAD");
    return r;
  }
  if (path == "/metrics") {
    HttpResponse r;
    r.content_type = "text/plain; version=0.0.4; charset=utf-8";
    r.body = render_metrics(daemon_metrics_, books_);
    return r;
  }
  if (path == "/api/v1/state" || path == "/api/v1/state/") {
    HttpResponse r;
    r.content_type = "application/json";
    r.body = state_.all_text(std::chrono::system_clock::now());
    return r;
  }
  constexpr std::string_view kStatePrefix = "/api/v1/state/";
  if (path.rfind(kStatePrefix, 0) == 0) {
    std::string name = path.substr(kStatePrefix.size());
    if (auto p = state_.probe(name, std::chrono::system_clock::now()))
      return json_response(200, *p);
    return json_response(404, {{"error", "no probe named " + name}});
  }
  if (path == "/-/healthy") {
    uint64_t beat = loop_heartbeat_ns_.load();
    uint64_t age_ns = uv_hrtime() - beat;
    // The loop beats every second; ten without a beat means probes are stalled.
    if (beat == 0 || age_ns < 10'000'000'000ull) return text(200, "canaryd is healthy\n");
    return text(503, fmt::format("probe loop stalled for {:.1f}s\n", age_ns / 1e9));
  }
  if (path == "/-/ready") {
    if (ready_.load()) return text(200, "canaryd is ready\n");
    return text(503, "canaryd is starting\n");
  }
  // "/", "/status" and "/status/probe/<name>": the status page for people.
  if (auto page = status_page_response(state_, path, std::chrono::system_clock::now()))
    return std::move(*page);
  return text(404, "not found\n");
}

void Service::housekeeping() {
  answer_overdue_reload_requests();
  // The oldest heartbeat of any loop: /-/healthy and the watchdog fail when
  // one probe loop stalls, not only when they all do.
  uint64_t beat = uv_hrtime();
  size_t in_flight = 0;
  std::array<uint64_t, kSkipCauseCount> skipped{};
  for (const auto& w : workers_) {
    const auto& st = w->stats();
    beat = std::min(beat, st.heartbeat_ns.load());
    in_flight += st.in_flight;
    for (size_t i = 0; i < skipped.size(); ++i) skipped[i] += st.skipped[i];
    daemon_metrics_.set_loop(w->index(), st.saturation, st.probes);
  }
  loop_heartbeat_ns_.store(beat);
  daemon_metrics_.set_in_flight(in_flight);
  for (SkipCause cause : kSkipCauses)
    daemon_metrics_.set_skipped(cause, skipped[static_cast<size_t>(cause)]);
}

void Service::shutdown() {
  if (stopping_) return;
  stopping_ = true;
  ready_ = false;
  sd_notify(0, "STOPPING=1");
  spdlog::info("shutting down");
  {
    // A running reload is abandoned: its waiting reads end, its result is dropped.
    std::lock_guard lock(reload_channel_->mu);
    reload_channel_->cancel = true;
    reload_channel_->async = nullptr;
    reload_channel_->result.reset();
  }
  // Every loop's runs stop before any loop tears down its services (StopGate).
  auto gate = std::make_shared<StopGate>(workers_.size(), kLoopApplyWait);
  for (auto& w : workers_) w->request_stop(gate);
  for (auto& w : workers_) w->stop();
  for (auto* h :
       {reinterpret_cast<uv_handle_t*>(&sighup_), reinterpret_cast<uv_handle_t*>(&sigterm_),
        reinterpret_cast<uv_handle_t*>(&sigint_), reinterpret_cast<uv_handle_t*>(&reload_async_),
        reinterpret_cast<uv_handle_t*>(&reload_done_async_),
        reinterpret_cast<uv_handle_t*>(&housekeeping_timer_),
        reinterpret_cast<uv_handle_t*>(&watchdog_timer_)}) {
    if (!uv_is_closing(h)) uv_close(h, nullptr);
  }
  // Anyone still waiting on a reload gets an answer instead of a timeout, and
  // no new request can wait on a loop that is going away.
  std::lock_guard lock(reload_mu_);
  refuse_reloads_ = true;
  for (auto* list : {&reload_waiters_, &reload_current_}) {
    for (auto& w : *list) w.respond(text_response(503, "shutting down\n"));
    list->clear();
  }
}

// Called after the loop has ended. The worker was told to stop waiting on
// reads; if it is still busy (parsing a huge file), exit without it rather
// than hang: its result would be dropped anyway.
void Service::wait_for_reload_worker() {
  std::unique_lock lock(reload_channel_->mu);
  if (reload_channel_->idle.wait_for(lock, kWorkerExitWait, [&] { return !reload_channel_->busy; }))
    return;
  lock.unlock();
  spdlog::warn("a config reload is still running; exiting without it");
  spdlog::shutdown();
  // Static destructors would race the worker thread still using them.
  std::_Exit(0);
}

int Service::run() {
  ConfigLoad load = load_config_file(config_path_);
  if (!load.config) {
    fmt::print(stderr, "{}", global_secrets().redact(load.errors.str()));
    fmt::print(stderr, "canaryd: {} has {} error(s); not starting\n", config_path_,
               load.errors.size());
    return 1;
  }
  if (!options_.web_config_file.empty()) {
    std::string error;
    web_ = WebSecurity::open(options_.web_config_file, error);
    if (!web_) {
      fmt::print(stderr, "{}\ncanaryd: the web config {} cannot be used; not starting\n", error,
                 options_.web_config_file);
      return 1;
    }
  }
  if (!load.config->global.state_file.empty()) {
    std::string error;
    state_file_ = StateFile::open(load.config->global.state_file, error);
    // The state is a convenience, never a reason not to monitor.
    if (!state_file_) spdlog::error("{}; running without saved state", error);
  }
  uv_loop_init(&loop_);
  // global.workers: by default one loop per CPU the process may use.
  const int workers = std::max(1, load.config->global.workers);
  uint64_t watchdog_usec = 0;
  if (sd_watchdog_enabled(0, &watchdog_usec) <= 0) watchdog_usec = 0;
  // The watchdog pings every half period while every loop's heartbeat is
  // younger than that: eight beats a period keep a live loop well inside it
  // (a 1 s beat would stop the pings of a WatchdogSec= under about 3 s).
  const auto beat = std::chrono::milliseconds(
      watchdog_usec ? std::clamp<uint64_t>(watchdog_usec / 8000, 10, 1000) : 1000);
  std::optional<DebugStall> stall;
  if (options_.debug_stall) {
    auto ms = [](double s) { return std::chrono::milliseconds(static_cast<int64_t>(s * 1000)); };
    stall = DebugStall{ms(options_.debug_stall->first), ms(options_.debug_stall->second)};
  }
  for (int i = 0; i < workers; ++i) {
    workers_.push_back(std::make_unique<ProbeWorker>(
        i, workers, daemon_metrics_.lag(i),
        [this](const RunRecord& rec, ProbeBook::Transition t) { on_run_result(rec, t); }, beat,
        i == 0 ? stall : std::nullopt));
    books_.push_back(&workers_.back()->book());
  }
  state_.set_books(books_);

  if (options_.listen) load.config->global.listen = *options_.listen;
  const ListenAddress listen = load.config->global.listen;
  try {
    HttpServerLimits limits;
    // /metrics of ten thousand probes is well over 100 MB; it must still go out.
    limits.max_pending_write_bytes = size_t{1} << 30;
    // Every endpoint sits behind the web config's users, as in Prometheus.
    auto handler = [this](const HttpRequest& r) {
      if (web_) {
        if (auto refusal = web_->refuse(r)) return std::move(*refusal);
      }
      return handle(r);
    };
    TlsSessionFactory tls;
    if (web_ && web_->tls()) tls = [this] { return web_->new_session(); };
    server_ = std::make_unique<HttpServer>(listen.host, listen.port, handler, limits, tls);
  } catch (const std::exception& e) {
    fmt::print(stderr, "canaryd: {}\n", e.what());
    for (auto& w : workers_) w->stop();
    uv_loop_close(&loop_);
    return 1;
  }
  global_.listen = listen;

  uv_signal_init(&loop_, &sighup_);
  sighup_.data = this;
  uv_signal_start(
      &sighup_,
      [](uv_signal_t* h, int) {
        guarded("SIGHUP", [h] { static_cast<Service*>(h->data)->start_reload(); });
      },
      SIGHUP);
  for (uv_signal_t* s : {&sigterm_, &sigint_}) {
    uv_signal_init(&loop_, s);
    s->data = this;
  }
  auto on_stop = [](uv_signal_t* h, int) {
    guarded("a stop signal", [h] { static_cast<Service*>(h->data)->shutdown(); });
  };
  uv_signal_start(&sigterm_, on_stop, SIGTERM);
  uv_signal_start(&sigint_, on_stop, SIGINT);
  uv_async_init(&loop_, &reload_async_, [](uv_async_t* h) {
    guarded("a reload request", [h] { static_cast<Service*>(h->data)->start_reload(); });
  });
  reload_async_.data = this;
  uv_async_init(&loop_, &reload_done_async_, [](uv_async_t* h) {
    guarded("a config reload", [h] {
      auto* self = static_cast<Service*>(h->data);
      std::optional<ConfigLoad> result;
      {
        std::lock_guard lock(self->reload_channel_->mu);
        result.swap(self->reload_channel_->result);
      }
      if (result) self->finish_reload(std::move(*result));
    });
  });
  reload_done_async_.data = this;
  {
    std::lock_guard lock(reload_channel_->mu);
    reload_channel_->async = &reload_done_async_;
  }
  uv_timer_init(&loop_, &housekeeping_timer_);
  housekeeping_timer_.data = this;
  uv_timer_start(
      &housekeeping_timer_,
      [](uv_timer_t* h) {
        guarded("housekeeping", [h] { static_cast<Service*>(h->data)->housekeeping(); });
      },
      0, 1000);
  uv_timer_init(&loop_, &watchdog_timer_);
  if (watchdog_usec > 0) {
    // Pinged from the loop itself: a stalled loop stops the pings and systemd
    // restarts the daemon.
    watchdog_ns_ = watchdog_usec * 1000;
    watchdog_timer_.data = this;
    uv_timer_start(
        &watchdog_timer_,
        [](uv_timer_t* h) {
          auto* self = static_cast<Service*>(h->data);
          // Only while every probe loop still beats: a stalled one stops the
          // pings, and systemd restarts the daemon.
          const uint64_t now = uv_hrtime();
          for (const auto& w : self->workers_)
            if (now - w->stats().heartbeat_ns.load() > self->watchdog_ns_ / 2) return;
          sd_notify(0, "WATCHDOG=1");
        },
        0, std::max<uint64_t>(1, watchdog_usec / 2000));
  }

  if (state_file_) {
    auto saved = std::make_shared<const SavedProbeStates>(state_file_->saved());
    for (auto& w : workers_) w->book().restore_from(saved);
    spdlog::info("state_file {}: {} saved probe states", load.config->global.state_file,
                 saved->size());
  }
  install(std::move(load.config), false);
  if (state_file_) state_file_->start(books_);
  server_->start();
  ready_ = true;
  sd_notify(0, "READY=1");
  spdlog::info("canaryd {} listening on {}://{}", CANARYD_VERSION,
               web_ && web_->tls() ? "https" : "http",
               listen_address_to_string(listen.host, server_->port()));

  uv_run(&loop_, UV_RUN_DEFAULT);
  server_->stop();
  wait_for_reload_worker();
  state_file_.reset();  // a last write, while the books are still there
  workers_.clear();
  uv_run(&loop_, UV_RUN_DEFAULT);  // finish close callbacks of the torn-down handles
  uv_loop_close(&loop_);
  spdlog::info("stopped");
  return 0;
}

}  // namespace

int run_service(const std::string& config_path, const ServiceOptions& options) {
  Service service(config_path, options);
  return service.run();
}

}  // namespace canaryd
