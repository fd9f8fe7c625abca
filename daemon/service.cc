#include "daemon/service.h"

#include <fmt/format.h>
#include <malloc.h>
#include <spdlog/spdlog.h>
#include <systemd/sd-daemon.h>
#include <uv.h>

#include <atomic>
#include <chrono>
#include <future>
#include <memory>
#include <mutex>

#include "daemon/config.h"
#include "daemon/engine.h"
#include "daemon/http_server.h"
#include "daemon/metrics.h"
#include "daemon/state_store.h"
#include "probes/common/guard.h"

#ifndef CANARYD_VERSION
#define CANARYD_VERSION "dev"
#endif

namespace canaryd {

namespace {

using namespace std::chrono_literals;

double unix_now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

struct ReloadOutcome {
  bool ok = false;
  std::string message;
};

// Everything the running daemon owns. Members are touched on the loop thread
// unless marked otherwise.
class Service {
 public:
  explicit Service(std::string config_path) : config_path_(std::move(config_path)) {}
  int run();

 private:
  // HTTP server thread.
  HttpResponse handle(const HttpRequest& req);
  ReloadOutcome request_reload_from_http();

  // Loop thread.
  void install(std::unique_ptr<Config> config, bool is_reload);
  void start_reload();
  void finish_reload(ConfigLoad load);
  void on_run_result(const RunRecord& rec);
  void housekeeping();
  void shutdown();

  std::shared_ptr<ProbeMetrics> probe_metrics() const {
    std::lock_guard lock(metrics_mu_);
    return probe_metrics_;
  }

  std::string config_path_;
  uv_loop_t loop_{};
  MonotonicClock clock_;
  std::unique_ptr<LoopServices> services_;
  std::unique_ptr<Engine> engine_;
  std::unique_ptr<HttpServer> server_;
  GlobalConfig global_;

  DaemonMetrics daemon_metrics_;
  mutable std::mutex metrics_mu_;
  std::shared_ptr<ProbeMetrics> probe_metrics_;  // swapped when global labels change
  StateStore state_;

  uv_signal_t sighup_{}, sigterm_{}, sigint_{};
  uv_async_t reload_async_{};
  uv_timer_t housekeeping_timer_{};
  uv_timer_t watchdog_timer_{};
  bool watchdog_ = false;

  // Reload requests from the HTTP thread wait on promises fulfilled on the loop.
  std::mutex reload_mu_;
  std::vector<std::promise<ReloadOutcome>> reload_waiters_;
  bool refuse_reloads_ = false;  // guarded by reload_mu_
  bool reload_running_ = false;
  bool reload_again_ = false;
  std::vector<std::promise<ReloadOutcome>> reload_current_;

  std::atomic<bool> ready_{false};
  std::atomic<uint64_t> loop_heartbeat_ns_{0};  // read by the HTTP thread for /-/healthy
  bool stopping_ = false;
};

void Service::on_run_result(const RunRecord& rec) {
  if (auto m = probe_metrics()) m->record(rec);
  auto transition = state_.record(rec);
  daemon_metrics_.set_in_flight(engine_->in_flight());
  // Log changes, not every run: a probe starting to fail should stand out.
  const auto& r = rec.result;
  if (transition == StateStore::Transition::kFirstFailure) {
    spdlog::warn("probe {} is failing: {}: {}", rec.spec.name, reason_name(r.reason), r.message);
  } else if (transition == StateStore::Transition::kRecovered) {
    spdlog::info("probe {} recovered ({:.3f}s)", rec.spec.name, rec.duration_seconds);
  } else if (r.success) {
    spdlog::debug("probe {} ok in {:.3f}s", rec.spec.name, rec.duration_seconds);
  } else {
    spdlog::debug("probe {} failed: {}: {}", rec.spec.name, reason_name(r.reason), r.message);
  }
}

void Service::install(std::unique_ptr<Config> config, bool is_reload) {
  global_secrets().replace_configured(config->secrets);
  if (is_reload && config->global.listen.str() != global_.listen.str()) {
    spdlog::warn("global.listen changed to {}; the listener moves only on restart",
                 config->global.listen.str());
    config->global.listen = global_.listen;
  }
  {
    std::lock_guard lock(metrics_mu_);
    if (!probe_metrics_ || probe_metrics_->global_labels() != config->global.labels)
      probe_metrics_ = std::make_shared<ProbeMetrics>(config->global.labels);
  }
  global_ = config->global;
  engine_->apply(std::move(config->probes));
  auto probes = engine_->probes();
  probe_metrics()->sync_probes(probes);
  state_.sync_probes(probes, global_.state_history);
  daemon_metrics_.set_configured(probes);
  daemon_metrics_.reload_result(true, unix_now(), is_reload);
  state_.set_config_status(config_path_, true, "");
  spdlog::info("{} {} probes from {}", is_reload ? "reloaded" : "loaded", probes.size(),
               config_path_);
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
    reload_current_ = std::move(reload_waiters_);
    reload_waiters_.clear();
  }
  sd_notify(0, "RELOADING=1");
  // Parsing reads files (the config, ${file:} secrets): off the loop, on
  // libuv's thread pool, so probes keep their schedule meanwhile.
  struct Work {
    uv_work_t req;
    Service* self;
    ConfigLoad load;
  };
  auto* work = new Work{{}, this, {}};
  work->req.data = work;
  uv_queue_work(
      &loop_, &work->req,
      [](uv_work_t* req) {
        auto* w = static_cast<Work*>(req->data);
        guarded("a config load", [w] { w->load = load_config_file(w->self->config_path_); });
      },
      [](uv_work_t* req, int /*status*/) {
        std::unique_ptr<Work> w(static_cast<Work*>(req->data));
        guarded("a config reload", [&w] { w->self->finish_reload(std::move(w->load)); });
      });
}

void Service::finish_reload(ConfigLoad load) {
  ReloadOutcome outcome;
  if (stopping_) {
    outcome.message = "shutting down";
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
    outcome.message = errors;
  } else {
    install(std::move(load.config), true);
    outcome.ok = true;
    outcome.message = "config reloaded";
  }
  sd_notify(0, "READY=1");
  for (auto& p : reload_current_) p.set_value(outcome);
  reload_current_.clear();
  reload_running_ = false;
  if (reload_again_) {
    reload_again_ = false;
    start_reload();
  }
}

ReloadOutcome Service::request_reload_from_http() {
  std::promise<ReloadOutcome> promise;
  auto future = promise.get_future();
  {
    std::lock_guard lock(reload_mu_);
    if (refuse_reloads_) return {false, "shutting down"};
    reload_waiters_.push_back(std::move(promise));
  }
  uv_async_send(&reload_async_);
  if (future.wait_for(60s) != std::future_status::ready)
    return {false, "reload did not finish within 60s"};
  return future.get();
}

HttpResponse Service::handle(const HttpRequest& req) {
  auto json_response = [](int status, const nlohmann::ordered_json& j) {
    HttpResponse r;
    r.status = status;
    r.content_type = "application/json";
    r.body = j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
    return r;
  };
  auto text = [](int status, std::string body) {
    HttpResponse r;
    r.status = status;
    r.body = std::move(body);
    return r;
  };
  const std::string& path = req.path;
  bool read = req.method == "GET" || req.method == "HEAD";
  if (path == "/-/reload") {
    if (req.method != "POST" && req.method != "PUT") {
      auto r = text(405, "use POST to reload the config\n");
      r.headers.emplace_back("Allow", "POST");
      return r;
    }
    auto outcome = request_reload_from_http();
    return text(outcome.ok ? 200 : 500, outcome.message + "\n");
  }
  if (!read) {
    auto r = text(405, "method not allowed\n");
    r.headers.emplace_back("Allow", "GET, HEAD");
    return r;
  }
  if (path == "/metrics") {
    auto probes = probe_metrics();
    HttpResponse r;
    r.content_type = "text/plain; version=0.0.4; charset=utf-8";
    r.body = render_metrics(daemon_metrics_, probes.get());
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
  if (path == "/") {
    HttpResponse r;
    r.content_type = "text/html; charset=utf-8";
    r.body = "<html><head><title>canaryd</title></head><body><h1>canaryd " CANARYD_VERSION
             "</h1><ul><li><a href=\"/metrics\">/metrics</a></li>"
             "<li><a href=\"/api/v1/state\">/api/v1/state</a></li>"
             "<li><a href=\"/-/healthy\">/-/healthy</a></li>"
             "<li><a href=\"/-/ready\">/-/ready</a></li></ul></body></html>\n";
    return r;
  }
  return text(404, "not found\n");
}

void Service::housekeeping() {
  loop_heartbeat_ns_.store(uv_hrtime());
  daemon_metrics_.set_in_flight(engine_->in_flight());
  daemon_metrics_.set_skipped_total(engine_->skipped_total());
}

void Service::shutdown() {
  if (stopping_) return;
  stopping_ = true;
  ready_ = false;
  sd_notify(0, "STOPPING=1");
  spdlog::info("shutting down");
  engine_->stop();
  services_->shutdown();
  for (auto* h :
       {reinterpret_cast<uv_handle_t*>(&sighup_), reinterpret_cast<uv_handle_t*>(&sigterm_),
        reinterpret_cast<uv_handle_t*>(&sigint_), reinterpret_cast<uv_handle_t*>(&reload_async_),
        reinterpret_cast<uv_handle_t*>(&housekeeping_timer_),
        reinterpret_cast<uv_handle_t*>(&watchdog_timer_)}) {
    if (!uv_is_closing(h)) uv_close(h, nullptr);
  }
  // Anyone still waiting on a reload gets an answer instead of a timeout, and
  // no new request can wait on a loop that is going away.
  std::lock_guard lock(reload_mu_);
  refuse_reloads_ = true;
  for (auto& p : reload_waiters_) p.set_value({false, "shutting down"});
  reload_waiters_.clear();
  for (auto& p : reload_current_) p.set_value({false, "shutting down"});
  reload_current_.clear();
}

int Service::run() {
  ConfigLoad load = load_config_file(config_path_);
  if (!load.config) {
    fmt::print(stderr, "{}", global_secrets().redact(load.errors.str()));
    fmt::print(stderr, "canaryd: {} has {} error(s); not starting\n", config_path_,
               load.errors.size());
    return 1;
  }
  uv_loop_init(&loop_);
  services_ = std::make_unique<LoopServices>(&loop_);
  engine_ = std::make_unique<Engine>(&loop_, *services_, clock_);
  engine_->on_result([this](const RunRecord& rec) { on_run_result(rec); });
  engine_->on_lag([this](double s) { daemon_metrics_.observe_lag(s); });

  const ListenAddress listen = load.config->global.listen;
  try {
    HttpServerLimits limits;
    // /metrics of ten thousand probes is well over 100 MB; it must still go out.
    limits.max_pending_write_bytes = size_t{1} << 30;
    server_ = std::make_unique<HttpServer>(
        listen.host, listen.port, [this](const HttpRequest& r) { return handle(r); }, limits);
  } catch (const std::exception& e) {
    fmt::print(stderr, "canaryd: {}\n", e.what());
    engine_->stop();
    services_->shutdown();
    uv_run(&loop_, UV_RUN_DEFAULT);
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
  uv_timer_init(&loop_, &housekeeping_timer_);
  housekeeping_timer_.data = this;
  uv_timer_start(
      &housekeeping_timer_,
      [](uv_timer_t* h) {
        guarded("housekeeping", [h] { static_cast<Service*>(h->data)->housekeeping(); });
      },
      0, 1000);
  uv_timer_init(&loop_, &watchdog_timer_);
  uint64_t watchdog_usec = 0;
  if (sd_watchdog_enabled(0, &watchdog_usec) > 0 && watchdog_usec > 0) {
    // Pinged from the loop itself: a stalled loop stops the pings and systemd
    // restarts the daemon.
    uv_timer_start(
        &watchdog_timer_, [](uv_timer_t*) { sd_notify(0, "WATCHDOG=1"); }, 0,
        std::max<uint64_t>(1, watchdog_usec / 2000));
  }

  install(std::move(load.config), false);
  server_->start();
  ready_ = true;
  sd_notify(0, "READY=1");
  spdlog::info("canaryd {} listening on http://{}", CANARYD_VERSION,
               listen_address_to_string(listen.host, server_->port()));

  uv_run(&loop_, UV_RUN_DEFAULT);
  server_->stop();
  engine_.reset();
  services_.reset();
  uv_run(&loop_, UV_RUN_DEFAULT);  // finish close callbacks of the torn-down handles
  uv_loop_close(&loop_);
  spdlog::info("stopped");
  return 0;
}

}  // namespace

int run_service(const std::string& config_path) {
  Service service(config_path);
  return service.run();
}

}  // namespace canaryd
