// Reading the config file and ${file:} secrets with a time limit.
//
// A read can block for ever: a FIFO that nobody writes, a terminal, a file on
// a hung network mount. Unbounded, that stalls check-config, `once` and every
// later reload. So a load's reads share one deadline (kReadBudget). Each read
// runs on a short-lived thread of its own: a FIFO is opened non-blocking and
// polled until the deadline, so that thread ends by itself; a read stuck in
// the kernel (a hung mount) cannot be interrupted, so its thread is abandoned
// and the read fails with a timeout. At most kMaxHungReads such threads may
// exist at once; past that, reads fail at once instead of piling up threads.
#pragma once

#include <atomic>
#include <chrono>
#include <map>
#include <optional>
#include <string>

namespace canaryd {

class BoundedFileReader {
 public:
  // All reads of one config load together take at most this long.
  static constexpr std::chrono::seconds kReadBudget{5};
  static constexpr size_t kMaxFileBytes = size_t{1} << 20;
  static constexpr int kMaxHungReads = 16;

  // `cancel`, when set and it turns true, ends a waiting read at once (the
  // daemon is shutting down). It must outlive the reader.
  explicit BoundedFileReader(std::chrono::milliseconds budget = kReadBudget,
                             const std::atomic<bool>* cancel = nullptr);

  // The whole file, or nullopt with `error` set to why not ("No such file or
  // directory", "timed out after 5s ..."). The error never quotes the file's
  // content. A path read before in this load answers as it did then.
  std::optional<std::string> read(const std::string& path, std::string& error);

 private:
  struct Outcome {
    std::optional<std::string> value;
    std::string error;
  };
  Outcome read_uncached(const std::string& path);

  std::chrono::milliseconds budget_;
  std::chrono::steady_clock::time_point deadline_;
  const std::atomic<bool>* cancel_;
  std::map<std::string, Outcome> done_;
};

}  // namespace canaryd
