#include "daemon/reload_worker.h"

#include <fmt/format.h>

#include <exception>

namespace canaryd {

void reload_worker(std::shared_ptr<ReloadChannel> ch, std::string path) noexcept {
  ConfigLoad load;
  try {
    load = load_config_file(path, ConfigParts::kAll, &ch->cancel);
  } catch (const std::exception& e) {
    load = ConfigLoad{};
    load.errors.add({path, 0, "", fmt::format("reload failed: {}", e.what())});
  } catch (...) {
    load = ConfigLoad{};
    load.errors.add({path, 0, "", "reload failed"});
  }
  {
    std::lock_guard lock(ch->mu);
    if (ch->async != nullptr) {
      ch->result = std::move(load);
      uv_async_send(ch->async);
    }
  }
  load = ConfigLoad{};  // a config nobody took is freed before the worker says it is done
  {
    std::lock_guard lock(ch->mu);
    ch->busy = false;
  }
  ch->idle.notify_all();
}

}  // namespace canaryd
