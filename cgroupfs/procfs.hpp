// Reading /proc (or a copy of it under another root, e.g. /host/proc or a fixture tree).
#pragma once

#include <sys/types.h>

#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "cgroupfs/file_reader.hpp"
#include "cgroupfs/result.hpp"
#include "cgroupfs/types.hpp"

namespace oomguard::cgroupfs {

// What a bulk read skipped. Vanished entries are normal churn; malformed ones are kept as errors.
struct ReadCounters {
  uint64_t vanished = 0;
  uint64_t malformed = 0;
  uint64_t failed = 0;         // other I/O errors (EACCES, ...)
  std::vector<Error> errors;   // the first few malformed/failed ones, for reporting

  void record(const Error& error);
  // The first recorded read that failed for a reason other than a vanished process or cgroup (the
  // first kept error, or a generic one past them); nullopt when none failed.
  [[nodiscard]] std::optional<Error> firstFailure() const;
};

// The start time (field 22 of /proc/<pid>/stat, clock ticks since boot). The comm (field 2) may hold
// any bytes, ')' and spaces included: fields are counted after the last ')'.
Result<uint64_t> parseStatStartTime(std::string_view text);

class ProcFs {
 public:
  explicit ProcFs(std::string root);
  [[nodiscard]] const std::string& root() const { return root_; }

  // The numeric entries of the root (processes; threads are not listed there).
  Result<std::vector<pid_t>> listPids() const;
  // The same, each with its directory's inode number. A /proc/<pid> inode is made when its dentry is
  // (procfs numbers them as it goes), and a new process under a recycled pid gets a new dentry: the same
  // pid with another inode is another process. The same inode is the same process, unless the kernel
  // dropped the dentry under memory pressure (then the inode changes too: a needless re-read, never a
  // stale one). Unsorted.
  struct PidEntry {
    pid_t pid = 0;
    uint64_t inode = 0;
  };
  Result<std::vector<PidEntry>> listPidEntries() const;
  // status and oom_score_adj (and, when asked, cgroup and the kernel's oom_score), each opened as
  // <pid>/<file> under the root. A process that exits between two of them fails the later open (ESRCH
  // or ENOENT: vanished). Files of two different processes are never mixed in practice: a pid is reused
  // only after the kernel's cyclic allocation has gone round pid_max (32,768 at least), not within the
  // microseconds between two opens. An unreadable oom_score leaves kernel_oom_score empty.
  Result<ProcessSnapshot> readProcess(pid_t pid, bool with_cgroup, bool with_oom_score = false);
  Result<std::string> readCgroupPath(pid_t pid);
  Result<int> readOomScoreAdj(pid_t pid);
  Result<long> readOomScore(pid_t pid);
  // /proc/<pid>/stat field 22: when the process started, in clock ticks since boot.
  Result<uint64_t> readStartTimeTicks(pid_t pid);
  // The first `max_bytes` of /proc/<pid>/cmdline, as they are (a NUL after each argument; empty for a
  // kernel thread or a zombie), in one read. The kernel takes the process's mmap lock to produce it.
  Result<std::string> readCmdline(pid_t pid, size_t max_bytes);
  Result<MemInfo> readMemInfo();
  // /proc/vmstat's pgalloc_* counters summed: every page the host has allocated since boot.
  Result<uint64_t> readAllocatedPages();
  // resource: "memory", "cpu" or "io".
  Result<Pressure> readPressure(std::string_view resource);
  // A numeric sysctl by its path under sys/, e.g. "vm/panic_on_oom".
  Result<long> readSysctl(std::string_view name);
  Result<KernelVersion> readKernelVersion();
  Result<std::vector<BuddyZone>> readBuddyInfo();
  // Any file under the root, as text (e.g. "sys/kernel/core_pattern", "swaps").
  Result<std::string> readText(std::string_view relative);

  // Exactly the processes of `pids` (none when it is empty), in that order, skipping those that vanish
  // or do not parse (counted).
  std::vector<ProcessSnapshot> readProcesses(std::span<const pid_t> pids, bool with_cgroup,
                                             ReadCounters& counters, bool with_oom_score = false);

 private:
  Result<std::string_view> readFile(std::string_view relative);

  // `file` of `pid` ("status"), opened relative to the root's handle (opened at the first read): two
  // path components to walk instead of the whole path, and no path built unless the read fails.
  Result<std::string_view> readOfPid(pid_t pid, const char* file);
  // root_ opened as a directory (once; kept), for the reads relative to it.
  Result<int> rootFd();

  // A /proc file the level watch reads several times a second, and every 5 ms under pressure (vmstat,
  // meminfo, pressure/memory): kept open after its first read and read again from offset 0
  // (FileReader::readFromStart), as lmkd reads its /proc files. That saves the open's path walk and file
  // set-up and the close: a warm read here of /proc/meminfo takes 0.51 times as long, one of /proc/vmstat
  // 0.73 times. Only a file on procfs is kept: a fixture tree's file may be replaced by a new one under
  // its name, so it is opened at each read (`unheld`), as is every other file.
  struct HeldFile {
    UniqueFd fd;
    std::string path;     // root_/<relative>, made at the first read
    bool unheld = false;  // not on procfs: opened at each read
  };
  // `relative`'s text through `held`. A failed read of a kept file closes it: the next read opens it anew.
  Result<std::string_view> readHeld(std::string_view relative, HeldFile& held);

  std::string root_;
  FileReader reader_;
  HeldFile vmstat_;
  HeldFile meminfo_;
  HeldFile memory_pressure_;
  UniqueFd root_fd_;
  std::string relative_;  // readOfPid's "<pid>/<file>", reused
};

}  // namespace oomguard::cgroupfs
