// global.state_file: each probe's last result, since-times and history kept
// on disk, so that a restart or an upgrade does not forget "failing for 3h".
//
// SQLite in WAL mode does the hard part (a crash or a SIGKILL mid-write
// leaves the old state or the new one, never a torn file); canaryd writes no
// file format of its own. A writer thread of its own looks at the probe books
// once a second and writes, in one transaction, the probes whose state
// changed since: no probe loop ever waits on the disk, and a burst of results
// costs one write per probe per second at most. The file holds one row per
// configured probe, so its size is bounded by the config (history included).
//
// A file that is not canaryd's, is damaged, or was written by a newer
// version is set aside (renamed, with a warning) and a fresh one started:
// the state is a convenience, never a reason not to start.
#pragma once

#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "daemon/probe_book.h"

struct sqlite3;

namespace canaryd {

class StateFile {
 public:
  // Opens (or creates) the file and reads what it holds. Null, with `error`
  // set, only when no file can be used at all (its folder is not writable).
  static std::unique_ptr<StateFile> open(const std::string& path, std::string& error);
  ~StateFile();  // stops the writer after a last write
  StateFile(const StateFile&) = delete;
  StateFile& operator=(const StateFile&) = delete;

  // What the file held at open().
  const SavedProbeStates& saved() const { return saved_; }

  // Starts writing the books' probes once a second. Call once; the books must
  // outlive this object.
  void start(std::vector<const ProbeBook*> books);

  // Writes what changed now, on the caller's thread (tests, shutdown).
  void flush();

 private:
  explicit StateFile(std::string path);
  bool open_db(std::string& error);
  void set_aside(const std::string& why);
  void write_changes();
  void run();

  const std::string path_;
  sqlite3* db_ = nullptr;
  SavedProbeStates saved_;
  std::vector<const ProbeBook*> books_;
  // Writer thread state: what each probe's row holds (its runs count at the
  // last write), so unchanged probes are not written again.
  std::map<std::string, uint64_t, std::less<>> written_;
  std::mutex write_mu_;  // one write at a time: the thread's and flush()'s
  std::mutex mu_;
  std::condition_variable wake_;
  bool stopping_ = false;
  std::thread writer_;
};

}  // namespace canaryd
