#include "daemon/state_file.h"

#include <fmt/format.h>
#include <pthread.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sqlite3.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <set>

#include "daemon/probe_state_codec.h"

namespace canaryd {

namespace {

// "cnry": tells canaryd's file from any other SQLite database at that path.
constexpr int kApplicationId = 0x636e7279;
constexpr int kSchemaVersion = 1;
constexpr std::chrono::seconds kWritePeriod{1};
// The WAL is checkpointed into the file every 1,000 pages by SQLite; this
// bounds what it keeps on disk afterwards.
constexpr int kJournalSizeLimit = 4 * 1024 * 1024;

// Runs one statement with no result rows; false (and `error`) on failure.
bool exec(sqlite3* db, const char* sql, std::string& error) {
  char* message = nullptr;
  if (sqlite3_exec(db, sql, nullptr, nullptr, &message) == SQLITE_OK) return true;
  error = message != nullptr ? message : sqlite3_errmsg(db);
  sqlite3_free(message);
  return false;
}

// The one integer a PRAGMA such as user_version answers, or -1.
int pragma_int(sqlite3* db, const char* sql) {
  sqlite3_stmt* stmt = nullptr;
  int value = -1;
  if (sqlite3_prepare_v2(db, sql, -1, &stmt, nullptr) == SQLITE_OK &&
      sqlite3_step(stmt) == SQLITE_ROW)
    value = sqlite3_column_int(stmt, 0);
  sqlite3_finalize(stmt);
  return value;
}

// The text of the first row a PRAGMA such as quick_check answers, or "".
std::string pragma_text(sqlite3* db, const char* sql) {
  sqlite3_stmt* stmt = nullptr;
  std::string value;
  if (sqlite3_prepare_v2(db, sql, -1, &stmt, nullptr) == SQLITE_OK &&
      sqlite3_step(stmt) == SQLITE_ROW) {
    const auto* text = reinterpret_cast<const char*>(sqlite3_column_text(stmt, 0));
    if (text != nullptr) value = text;
  }
  sqlite3_finalize(stmt);
  return value;
}

// A statement prepared for the length of one write.
class Statement {
 public:
  Statement(sqlite3* db, const char* sql) { sqlite3_prepare_v2(db, sql, -1, &stmt_, nullptr); }
  ~Statement() { sqlite3_finalize(stmt_); }
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;
  sqlite3_stmt* get() const { return stmt_; }
  explicit operator bool() const { return stmt_ != nullptr; }
  void bind(int i, const std::string& text) {
    sqlite3_bind_text(stmt_, i, text.data(), static_cast<int>(text.size()), SQLITE_TRANSIENT);
  }
  bool run() {
    const int rc = sqlite3_step(stmt_);
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
    return rc == SQLITE_DONE;
  }

 private:
  sqlite3_stmt* stmt_ = nullptr;
};

}  // namespace

StateFile::StateFile(std::string path) : path_(std::move(path)) {}

std::unique_ptr<StateFile> StateFile::open(const std::string& path, std::string& error) {
  std::unique_ptr<StateFile> file(new StateFile(path));
  if (file->open_db(error)) return file;
  // Damaged, foreign or newer: keep it for a person to look at, start afresh.
  file->set_aside(error);
  error.clear();
  if (file->open_db(error)) return file;
  error = fmt::format("state_file {}: {}", path, error);
  return nullptr;
}

bool StateFile::open_db(std::string& error) {
  if (db_ != nullptr) {
    sqlite3_close(db_);
    db_ = nullptr;
  }
  saved_.clear();
  const int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX;
  if (sqlite3_open_v2(path_.c_str(), &db_, flags, nullptr) != SQLITE_OK) {
    error = db_ != nullptr ? sqlite3_errmsg(db_) : "cannot open";
    return false;
  }
  sqlite3_busy_timeout(db_, 2000);
  // The first read of a file that is not a database fails here.
  const int app_id = pragma_int(db_, "PRAGMA application_id");
  const int version = pragma_int(db_, "PRAGMA user_version");
  const int tables = pragma_int(db_, "SELECT count(*) FROM sqlite_master");
  if (app_id < 0 || version < 0 || tables < 0) {
    error = fmt::format("not a readable SQLite database ({})", sqlite3_errmsg(db_));
    return false;
  }
  if (tables > 0 && app_id != kApplicationId) {
    error = "a SQLite database that is not canaryd's state";
    return false;
  }
  if (version > kSchemaVersion) {
    error = fmt::format("written by a newer canaryd (schema {}, this one reads {})", version,
                        kSchemaVersion);
    return false;
  }
  if (pragma_text(db_, "PRAGMA quick_check") != "ok") {
    error = "damaged (quick_check failed)";
    return false;
  }
  const std::string setup = fmt::format(
      "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA journal_size_limit={};"
      "PRAGMA application_id={}; PRAGMA user_version={};"
      "CREATE TABLE IF NOT EXISTS probes (name TEXT PRIMARY KEY, fingerprint TEXT NOT NULL,"
      " state TEXT NOT NULL) WITHOUT ROWID;",
      kJournalSizeLimit, kApplicationId, kSchemaVersion);
  if (!exec(db_, setup.c_str(), error)) return false;
  Statement read(db_, "SELECT name, fingerprint, state FROM probes");
  if (!read) {
    error = sqlite3_errmsg(db_);
    return false;
  }
  int rc;
  while ((rc = sqlite3_step(read.get())) == SQLITE_ROW) {
    auto text = [&](int i) {
      const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(read.get(), i));
      return p != nullptr ? std::string(p, static_cast<size_t>(sqlite3_column_bytes(read.get(), i)))
                          : std::string();
    };
    saved_[text(0)] = {text(1), text(2)};
  }
  if (rc != SQLITE_DONE) {
    error = fmt::format("damaged ({})", sqlite3_errmsg(db_));
    return false;
  }
  return true;
}

void StateFile::set_aside(const std::string& why) {
  if (db_ != nullptr) {
    sqlite3_close(db_);
    db_ = nullptr;
  }
  const auto now = std::chrono::duration_cast<std::chrono::seconds>(
                       std::chrono::system_clock::now().time_since_epoch())
                       .count();
  const std::string aside = fmt::format("{}.bad-{}", path_, now);
  std::rename(path_.c_str(), aside.c_str());
  for (const char* suffix : {"-wal", "-shm"}) {
    const std::string side = path_ + suffix;
    std::rename(side.c_str(), (aside + suffix).c_str());
  }
  spdlog::warn("state_file {}: {}; set aside as {}, starting with no saved state", path_, why,
               aside);
}

void StateFile::start(std::vector<const ProbeBook*> books) {
  books_ = std::move(books);
  // The writer and its signals: none of the daemon's (SIGTERM, SIGHUP) may land here.
  sigset_t all, saved;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, &saved);
  writer_ = std::thread([this] {
#ifdef __GLIBC__
    pthread_setname_np(pthread_self(), "canaryd-state");
#endif
    run();
  });
  pthread_sigmask(SIG_SETMASK, &saved, nullptr);
}

StateFile::~StateFile() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (writer_.joinable()) writer_.join();
  if (!books_.empty()) flush();
  if (db_ != nullptr) sqlite3_close(db_);
}

void StateFile::run() {
  std::unique_lock lock(mu_);
  while (!wake_.wait_for(lock, kWritePeriod, [this] { return stopping_; })) {
    lock.unlock();
    flush();
    lock.lock();
  }
}

void StateFile::flush() {
  std::lock_guard write_lock(write_mu_);
  write_changes();
}

void StateFile::write_changes() {
  // Encoded under each entry's lock, written after: the disk never holds a probe lock.
  struct Row {
    std::string name, fingerprint, state;
    uint64_t runs;
  };
  std::vector<Row> rows;
  std::set<std::string, std::less<>> current;
  for (const ProbeBook* book : books_) {
    book->for_each([&](const ProbeBook::Entry& e) {
      current.insert(e.spec.name);
      if (e.runs == 0) return;  // nothing new: a pending probe, or one restored and not run yet
      auto it = written_.find(e.spec.name);
      if (it != written_.end() && it->second == e.runs) return;
      rows.push_back({e.spec.name, fingerprint_hash(e.spec), encode_probe_state(e), e.runs});
    });
  }
  std::vector<std::string> gone;
  for (const auto& [name, row] : saved_)
    if (!current.count(name)) gone.push_back(name);
  for (const auto& [name, runs] : written_)
    if (!current.count(name) && !saved_.count(name)) gone.push_back(name);
  if (rows.empty() && gone.empty()) return;

  std::string error;
  if (!exec(db_, "BEGIN IMMEDIATE", error)) {
    spdlog::warn("state_file {}: cannot write: {}", path_, error);
    return;
  }
  Statement upsert(db_,
                   "INSERT INTO probes (name, fingerprint, state) VALUES (?1, ?2, ?3) "
                   "ON CONFLICT(name) DO UPDATE SET fingerprint=excluded.fingerprint, "
                   "state=excluded.state");
  Statement remove(db_, "DELETE FROM probes WHERE name = ?1");
  bool ok = upsert && remove;
  for (auto& row : rows) {
    if (!ok) break;
    upsert.bind(1, row.name);
    upsert.bind(2, row.fingerprint);
    upsert.bind(3, row.state);
    ok = upsert.run();
  }
  for (const auto& name : gone) {
    if (!ok) break;
    remove.bind(1, name);
    ok = remove.run();
  }
  if (!ok || !exec(db_, "COMMIT", error)) {
    if (error.empty()) error = sqlite3_errmsg(db_);
    exec(db_, "ROLLBACK", error);
    spdlog::warn("state_file {}: write failed, the next one tries again: {}", path_, error);
    return;
  }
  for (const auto& row : rows) written_[row.name] = row.runs;
  for (const auto& name : gone) {
    written_.erase(name);
    saved_.erase(name);
  }
}

}  // namespace canaryd
