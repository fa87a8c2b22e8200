// The kill history on disk: every OOM kill on the node (the kernel's and oomguard's), one JSON object per
// line in <dir>/kills.jsonl, readable while the daemon is down (`oomguard history`).
//
// Crash-safe: each record is one write(2) of one whole line to an O_APPEND descriptor, so the daemon's
// death (SIGKILL, its own OOM kill) loses nothing written: the page cache outlives it. Against the node's
// crash, the caller makes the records durable (sync(), an fdatasync) when it chooses: never in the kill
// path, since a sync can take seconds under memory pressure. A crash leaves at most a torn last line,
// which readers skip (and the next append starts on a line of its own). One writer: the journal holds
// an exclusive lock (flock on <dir>/lock), so a second daemon on the same directory gets none. Bounded: when an append would take the file past max_bytes, the file is renamed
// to kills.jsonl.1 (replacing the older one) and a new one begun, so the history holds the newest
// max_bytes to 2 * max_bytes of records.
//
// Beside it, kmsg.position ("<boot_id> <sequence>") says how far the daemon had read /dev/kmsg, written
// by rename so it is never torn: a restart resumes after it and can tell records the kernel's ring buffer
// dropped while the daemon was down.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "cgroupfs/result.hpp"

namespace oomguard::guardian::io {

inline constexpr const char* kKillJournalFile = "kills.jsonl";
inline constexpr const char* kKillJournalOldFile = "kills.jsonl.1";
inline constexpr const char* kKmsgPositionFile = "kmsg.position";

class KillJournal {
 public:
  // Creates `dir` (mode 0750, and its parents) if it is missing, and opens the journal for appending.
  static cgroupfs::Result<std::unique_ptr<KillJournal>> open(const std::string& dir, uint64_t max_bytes);
  KillJournal(std::string dir, int fd, int lock_fd, uint64_t size_bytes, uint64_t max_bytes);
  ~KillJournal();
  KillJournal(const KillJournal&) = delete;
  KillJournal& operator=(const KillJournal&) = delete;

  // Appends `record` as one line (invalid UTF-8 in its strings replaced, see text::jsonText).
  cgroupfs::Result<bool> append(const nlohmann::ordered_json& record);
  // Makes every record appended so far durable (fdatasync), if any is not yet.
  cgroupfs::Result<bool> sync();
  [[nodiscard]] const std::string& dir() const { return dir_; }

 private:
  cgroupfs::Result<bool> rotate();
  std::string dir_;
  int fd_ = -1;
  int lock_fd_ = -1;
  uint64_t size_bytes_ = 0;
  uint64_t max_bytes_ = 0;
  bool unsynced_ = false;
};

struct KillJournalRead {
  std::vector<nlohmann::ordered_json> records;  // oldest first: kills.jsonl.1, then kills.jsonl
  size_t skipped_lines = 0;                     // torn or unparsable lines (a crash mid-write)
};
// Every whole record under `dir`, oldest first, one at a time (memory: one record); returns how many
// lines were torn or unparsable. A missing journal is an empty history, not an error.
cgroupfs::Result<size_t> forEachKillRecord(const std::string& dir,
                                           const std::function<void(const nlohmann::ordered_json&)>& each);
// All of them at once (tests, small journals).
cgroupfs::Result<KillJournalRead> readKillJournal(const std::string& dir);

struct KmsgPosition {
  std::string boot_id;
  uint64_t sequence = 0;  // the last kmsg record read
  bool operator==(const KmsgPosition&) const = default;
};
std::optional<KmsgPosition> readKmsgPosition(const std::string& dir);
cgroupfs::Result<bool> writeKmsgPosition(const std::string& dir, const KmsgPosition& position);

}  // namespace oomguard::guardian::io
