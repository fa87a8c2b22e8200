// Whole kernel OOM reports (mm/oom_kill.c dump_header(), oom_kill_process(); mm/memcontrol.c
// mem_cgroup_print_oom_meminfo(); mm/show_mem.c __show_mem()) gathered from a kernel log: the lines
// the kill events of kmsg.hpp leave out - the memcg's usage and limits, the Mem-Info totals, and the
// oom_dump_tasks table - so that the kernel's choice can be rebuilt. Pure: no I/O.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "cgroupfs/kernel_log.hpp"
#include "cgroupfs/kmsg.hpp"

namespace oomguard::cgroupfs {

// One row of the task table (dump_task()): "[  pid  ]   uid  tgid total_vm      rss rss_anon rss_file
// rss_shmem pgtables_bytes swapents oom_score_adj name". The counters are the same approximate reads
// oom_badness() makes. Columns are found by the header's names; older kernels have no rss_anon,
// rss_file, rss_shmem (then split_rss is false and rss holds the sum).
struct OomTaskRow {
  pid_t pid = 0;
  std::optional<uid_t> uid;
  std::optional<pid_t> tgid;
  uint64_t total_vm_pages = 0;
  uint64_t rss_pages = 0;
  bool split_rss = false;
  uint64_t rss_anon_pages = 0;
  uint64_t rss_file_pages = 0;
  uint64_t rss_shmem_pages = 0;
  uint64_t pgtables_bytes = 0;
  uint64_t swapents_pages = 0;
  int oom_score_adj = 0;
  std::string name;  // the task's comm, every byte as printed (may hold spaces, parentheses, controls)
};

// "memory: usage 49152kB, limit 49152kB, failcnt 19" and the "swap:" line after it.
struct MemcgCounterLine {
  uint64_t usage_kb = 0;
  uint64_t limit_kb = 0;  // PAGE_COUNTER_MAX pages in kB when the cgroup has no limit ("max")
};

// A zone line of the Mem-Info dump: "Node 1 DMA32 free:12kB ... present:262012kB managed:259736kB ...".
// The dump shows only the nodes the allocation could use and the zones up to its highest one.
struct ZoneLine {
  int node = 0;
  std::string zone;
  uint64_t present_kb = 0;
  std::optional<uint64_t> managed_kb;
};

struct OomReport {
  size_t first_line = 0;  // input lines (1-based) of the report's first and last recognised line
  size_t last_line = 0;
  std::optional<uint64_t> first_sequence;  // kmsg sequence number of the first line (kmsg input)
  std::optional<uint64_t> started_us;      // its timestamp, when the input carries one
  // Only the "Killed process" line was printed: the kernel rate-limits the report (10 per 5 s), never
  // the kill line; or the rest is not in the input. The constraint is then inferred from its prefix.
  bool kill_line_only = false;
  bool invocation_seen = false;  // "<comm> invoked oom-killer: ..."
  OomInvocation invocation;
  std::optional<pid_t> invoking_pid;          // "CPU: 0 UID: 0 PID: 141 Comm: hog ..."
  std::optional<int> cpu;                     // the CPU it ran on (so the machine has more than this many)
  std::optional<std::string> kernel_release;  // from the same line: "Not tainted 6.12.117+deb12-amd64"
  // Memcg OOMs (mem_cgroup_print_oom_meminfo()).
  std::optional<MemcgCounterLine> memory;
  std::optional<MemcgCounterLine> swap;           // cgroup v2 only
  std::optional<std::string> memcg_stats_cgroup;  // "Memory cgroup stats for /x:"
  // Other OOMs (the Mem-Info dump of __show_mem()).
  std::optional<uint64_t> ram_pages;       // "130942 pages RAM": present pages of every zone
  std::optional<uint64_t> reserved_pages;  // "12078 pages reserved": present - managed
  std::optional<uint64_t> total_swap_kb;   // "Total swap = 0kB"
  std::vector<ZoneLine> zones;
  // The oom_dump_tasks table, in the kernel's scan order (the order select_bad_process() visits).
  bool task_table_seen = false;  // "Tasks state (memory values in pages):"
  std::vector<std::string> task_columns;
  std::vector<OomTaskRow> tasks;
  size_t malformed_task_rows = 0;
  OomKillSummary summary;  // "oom-kill:constraint=..." (inferred when kill_line_only)
  // Of the same line, for words only: "nodemask=(null)", "mems_allowed=0-1" (the nodes the OOM concerned).
  std::optional<std::string> nodemask;
  std::optional<std::string> mems_allowed;
  KilledProcess victim;  // "... Killed process N (comm) ..."
  // memory.oom.group: "Tasks in /x are going to be killed due to memory.oom.group set", and every
  // member's "Killed process" line after it (the victim's again, as the kernel kills it once more).
  std::optional<std::string> group_cgroup;
  std::vector<KilledProcess> group_killed;
  std::vector<pid_t> reaped;  // "oom_reaper: reaped process N" for the victim or a member
};

// A report that began and has no kill line: the input ends inside it, another report begins first, or
// the kernel found nothing to kill ("Out of memory and no killable processes...", then it panics).
struct IncompleteOomReport {
  size_t first_line = 0;
  size_t last_line = 0;
  std::string invoking_comm;  // empty when the "invoked oom-killer" line is missing too
  std::string reason;
};

struct OomReportScan {
  std::vector<OomReport> reports;  // in input order, one per kill (a group kill is one report)
  std::vector<IncompleteOomReport> incomplete;
  size_t messages = 0;
  size_t kmsg_messages = 0;  // how many came in each form
  size_t dmesg_messages = 0;
  size_t journal_messages = 0;
  size_t bare_messages = 0;
};

// Every OOM report in `messages` (splitKernelLog()). Lines that belong to no report are ignored.
OomReportScan scanOomReports(std::span<const KernelLogMessage> messages);

// Parsers of single report lines, exposed for the tests. Each returns nullopt for a line of another kind.
std::optional<std::vector<std::string>> parseTaskTableHeader(std::string_view message);
std::optional<OomTaskRow> parseTaskTableRow(std::string_view message,
                                            const std::vector<std::string>& columns);
std::optional<ZoneLine> parseZoneLine(std::string_view message);

}  // namespace oomguard::cgroupfs
