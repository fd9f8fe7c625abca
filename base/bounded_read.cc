#include "base/bounded_read.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <poll.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <memory>
#include <mutex>
#include <system_error>
#include <thread>

#include "base/yaml_section.h"

namespace canaryd {

namespace {

using Clock = std::chrono::steady_clock;

// Reader threads that have not finished yet, abandoned ones included.
std::atomic<int> g_running_reads{0};

std::string timeout_text(std::chrono::milliseconds budget) {
  return fmt::format("timed out after {} (a FIFO nobody writes, or a hung mount?)",
                     format_duration(budget));
}

struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) close(fd);
  }
};

// Runs on the reader thread. Only a kernel that blocks in open() or read()
// (a hung mount) keeps it past `deadline`.
std::optional<std::string> read_until(const std::string& path, Clock::time_point deadline,
                                      std::chrono::milliseconds budget, std::string& error) {
  // O_NONBLOCK: opening a FIFO does not wait for a writer, and reading one
  // returns EAGAIN instead of waiting; regular files ignore it.
  Fd f{open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY)};
  if (f.fd < 0) {
    error = std::strerror(errno);
    return std::nullopt;
  }
  struct stat st {};
  if (fstat(f.fd, &st) != 0) {
    error = std::strerror(errno);
    return std::nullopt;
  }
  if (S_ISDIR(st.st_mode)) {
    error = std::strerror(EISDIR);
    return std::nullopt;
  }
  // A FIFO opened before its writer reads as empty at once; wait for data or
  // for the writer to hang up instead. Linux reports no POLLHUP until a writer
  // has come and gone, so poll() waits for the writer.
  const bool wait_first = !S_ISREG(st.st_mode);
  std::string out;
  char buf[16384];
  bool readable = !wait_first;
  for (;;) {
    if (!readable) {
      auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now());
      if (left.count() <= 0) {
        error = timeout_text(budget);
        return std::nullopt;
      }
      pollfd p{f.fd, POLLIN, 0};
      int r = poll(&p, 1, static_cast<int>(std::min<int64_t>(left.count(), 1 << 30)));
      if (r < 0 && errno != EINTR) {
        error = std::strerror(errno);
        return std::nullopt;
      }
      readable = r > 0;
      continue;
    }
    ssize_t n = ::read(f.fd, buf, sizeof buf);
    if (n > 0) {
      if (out.size() + static_cast<size_t>(n) > BoundedFileReader::kMaxFileBytes) {
        error = fmt::format("larger than {} bytes", BoundedFileReader::kMaxFileBytes);
        return std::nullopt;
      }
      out.append(buf, static_cast<size_t>(n));
      readable = !wait_first;
      continue;
    }
    if (n == 0) return out;
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      readable = false;
      continue;
    }
    error = std::strerror(errno);
    return std::nullopt;
  }
}

// What the reader thread and the waiting caller share; whoever finishes last
// frees it.
struct ReadJob {
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  std::optional<std::string> value;
  std::string error;
};

}  // namespace

BoundedFileReader::BoundedFileReader(std::chrono::milliseconds budget,
                                     const std::atomic<bool>* cancel)
    : budget_(budget), deadline_(Clock::now() + budget), cancel_(cancel) {}

std::optional<std::string> BoundedFileReader::read(const std::string& path, std::string& error) {
  auto it = done_.find(path);
  if (it == done_.end()) it = done_.emplace(path, read_uncached(path)).first;
  if (!it->second.value) error = it->second.error;
  return it->second.value;
}

BoundedFileReader::Outcome BoundedFileReader::read_uncached(const std::string& path) {
  if (cancel_ != nullptr && cancel_->load()) return {std::nullopt, "cancelled: shutting down"};
  if (Clock::now() >= deadline_) return {std::nullopt, timeout_text(budget_)};
  if (g_running_reads.load() >= kMaxHungReads)
    return {std::nullopt, fmt::format("{} earlier file reads are still hung; not starting another",
                                      kMaxHungReads)};
  auto job = std::make_shared<ReadJob>();
  ++g_running_reads;
  try {
    std::thread([job, path, deadline = deadline_, budget = budget_] {
      std::string error;
      auto value = read_until(path, deadline, budget, error);
      {
        std::lock_guard lock(job->mu);
        job->value = std::move(value);
        job->error = std::move(error);
        job->done = true;
      }
      job->cv.notify_all();
      --g_running_reads;
    }).detach();
  } catch (const std::system_error& e) {
    --g_running_reads;
    return {std::nullopt, fmt::format("cannot start a reader thread: {}", e.what())};
  }
  std::unique_lock lock(job->mu);
  for (;;) {
    // Short slices, so a shutdown does not wait out the whole budget.
    auto slice = std::min(deadline_, Clock::now() + std::chrono::milliseconds(100));
    if (job->cv.wait_until(lock, slice, [&] { return job->done; }))
      return {std::move(job->value), std::move(job->error)};
    if (cancel_ != nullptr && cancel_->load()) return {std::nullopt, "cancelled: shutting down"};
    if (Clock::now() >= deadline_) return {std::nullopt, timeout_text(budget_)};
  }
}

}  // namespace canaryd
