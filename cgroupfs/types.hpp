// Plain value structs read from /proc and the cgroup v2 tree. No behaviour beyond trivial accessors:
// policies/ computes on these, guardian/ fills them through the readers in this folder.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace oomguard::cgroupfs {

struct KernelVersion {
  int major = 0;
  int minor = 0;
  int patch = 0;
  std::string release;  // as in /proc/sys/kernel/osrelease

  [[nodiscard]] bool atLeast(int want_major, int want_minor) const {
    return major > want_major || (major == want_major && minor >= want_minor);
  }
};

// /proc/<pid>/status, the fields the OOM model and the reports need. Memory values in kB as the kernel
// prints them (page counts shifted by PAGE_SHIFT - 10, so exact multiples of the page size in kB).
struct ProcStatus {
  std::string comm;  // "Name:", unescaped as the kernel prints it (may hold spaces)
  pid_t tgid = 0;
  pid_t ppid = 0;
  uid_t uid = 0;  // real uid
  int threads = 0;
  std::optional<bool> kthread;  // "Kthread:" exists only on newer kernels
  bool has_mm = false;          // the Vm*/Rss* block is printed only for a task with an mm
  uint64_t rss_anon_kb = 0;
  uint64_t rss_file_kb = 0;
  uint64_t rss_shmem_kb = 0;
  uint64_t swap_kb = 0;      // VmSwap
  uint64_t pgtables_kb = 0;  // VmPTE
};

// /proc/meminfo, values in kB. Fields the kernel always prints are plain; the rest are optional.
struct MemInfo {
  uint64_t mem_total_kb = 0;
  uint64_t mem_free_kb = 0;
  std::optional<uint64_t> mem_available_kb;
  uint64_t swap_total_kb = 0;
  uint64_t swap_free_kb = 0;
  std::optional<uint64_t> commit_limit_kb;
  std::optional<uint64_t> committed_as_kb;
};

// One line of a PSI file: "some avg10=0.00 avg60=0.00 avg300=0.00 total=0".
struct PressureLine {
  double avg10 = 0;  // percent, 0..100
  double avg60 = 0;
  double avg300 = 0;
  uint64_t total_us = 0;
};

struct Pressure {
  PressureLine some;
  std::optional<PressureLine> full;  // absent for /proc/pressure/cpu on older kernels
};

// memory.events / memory.events.local. Keys a kernel does not print stay 0; unknown keys are ignored.
struct MemoryEvents {
  uint64_t low = 0;
  uint64_t high = 0;
  uint64_t max = 0;
  uint64_t oom = 0;
  uint64_t oom_kill = 0;
  uint64_t oom_group_kill = 0;
};

// A "key value" file such as memory.stat or cgroup.events, in file order.
using FlatKeyed = std::vector<std::pair<std::string, uint64_t>>;

// /proc/buddyinfo: free blocks per order for one zone.
struct BuddyZone {
  int node = 0;
  std::string zone;
  std::vector<uint64_t> free_blocks_by_order;
};

// A memory.max-style value: nullopt for "max" (no limit), bytes otherwise.
using LimitBytes = std::optional<uint64_t>;

// One process as the OOM model sees it.
struct ProcessSnapshot {
  pid_t pid = 0;
  ProcStatus status;
  int oom_score_adj = 0;
  std::optional<std::string> cgroup;  // v2 path from /proc/<pid>/cgroup, when it was read
  std::optional<long> kernel_oom_score;  // /proc/<pid>/oom_score, when it was read
};

// One cgroup of the v2 tree. Paths are relative to the cgroup root and start with "/" ("/" = root).
struct CgroupSnapshot {
  std::string path;
  uint64_t inode = 0;  // creation order: cgroup2 inode numbers grow as cgroups are created
  bool has_memory_controller = false;  // memory.max exists here (root never has it)
  LimitBytes memory_max_bytes;         // nullopt: "max" or no memory controller
  LimitBytes swap_max_bytes;           // nullopt: "max" or no swap accounting file
  std::optional<uint64_t> memory_current_bytes;
  bool oom_group = false;
  std::vector<pid_t> procs;  // cgroup.procs, in the kernel's iteration order
};

}  // namespace oomguard::cgroupfs
