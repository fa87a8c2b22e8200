// /dev/kmsg records and the kernel's OOM report in them (mm/oom_kill.c, mm/memcontrol.c). Pure parsers:
// fields are found by key, unknown keys are tolerated, and lines that are not part of an OOM report are
// ignored by the assembler.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "cgroupfs/result.hpp"

namespace oomguard::cgroupfs {

// One /dev/kmsg record: "priority,sequence,timestamp_us,flags[,more];message\n[ KEY=value\n...]".
struct KmsgRecord {
  int level = 0;     // priority & 7
  int facility = 0;  // priority >> 3
  uint64_t sequence = 0;
  uint64_t timestamp_us = 0;
  bool continuation = false;  // flags "c"
  std::string message;        // the first line, without the dictionary lines
};
Result<KmsgRecord> parseKmsgRecord(std::string_view record);

// "<comm> invoked oom-killer: gfp_mask=0x..(..), order=N, oom_score_adj=N"
struct OomInvocation {
  std::string comm;
  std::string gfp_mask;
  std::optional<int> order;
  std::optional<int> oom_score_adj;
};

// "oom-kill:constraint=..,nodemask=..,cpuset=..,mems_allowed=..,oom_memcg=..|global_oom,task_memcg=..,
//  task=..,pid=N,uid=N"
struct OomKillSummary {
  std::string constraint;              // CONSTRAINT_NONE, CONSTRAINT_CPUSET, CONSTRAINT_MEMORY_POLICY, CONSTRAINT_MEMCG
  std::optional<std::string> oom_memcg;  // the OOMing memcg for a memcg OOM
  bool global_oom = false;
  std::optional<std::string> task_memcg;
  std::string task_comm;
  pid_t pid = 0;
  std::optional<uid_t> uid;
};
Result<OomKillSummary> parseOomKillSummary(std::string_view message);

// "[Memory cgroup out of memory|Out of memory[ (oom_kill_allocating_task)]: ]Killed process N (comm)
//  total-vm:NkB, anon-rss:NkB, file-rss:NkB, shmem-rss:NkB, UID:N pgtables:NkB oom_score_adj:N"
struct KilledProcess {
  pid_t pid = 0;
  std::string comm;
  std::string reason;  // the text before ": Killed process" (empty when none)
  bool allocating_task = false;
  std::optional<uint64_t> total_vm_kb;
  std::optional<uint64_t> anon_rss_kb;
  std::optional<uint64_t> file_rss_kb;
  std::optional<uint64_t> shmem_rss_kb;
  std::optional<uint64_t> pgtables_kb;
  std::optional<int> oom_score_adj;
};
Result<KilledProcess> parseKilledProcess(std::string_view message);

// The events an OOM report yields, in kernel order.
struct KernelOomKill {
  uint64_t started_us = 0;   // kmsg timestamp of the report's first line (the OOM itself)
  // The kernel rate-limits the report (10 per 5 s) but never the "Killed process" line: a kill seen
  // without its report has rate_limited set, a constraint inferred from the line's prefix, and no memcg.
  bool rate_limited = false;
  OomInvocation invocation;  // empty when the "invoked oom-killer" line was not seen (e.g. start-up)
  OomKillSummary summary;
  KilledProcess victim;
};
struct KernelOomGroupKill {
  std::string cgroup;  // "Tasks in <cgroup> are going to be killed due to memory.oom.group set"
};
struct KernelGroupMemberKilled {
  std::string cgroup;
  KilledProcess process;
};
using KernelOomEvent = std::variant<KernelOomKill, KernelOomGroupKill, KernelGroupMemberKilled>;

// Assembles OOM reports from consecutive kmsg messages. Feed every record's message; each call returns
// the events that message completes (usually none).
class OomReportAssembler {
 public:
  // `timestamp_us` is the record's kmsg timestamp.
  std::vector<KernelOomEvent> feed(std::string_view message, uint64_t timestamp_us = 0);

 private:
  uint64_t started_us_ = 0;
  uint64_t group_last_us_ = 0;  // the group line or its latest member: members follow within kGroupWindowUs
  std::optional<OomInvocation> invocation_;
  std::optional<OomKillSummary> summary_;
  std::optional<std::string> group_cgroup_;
};

}  // namespace oomguard::cgroupfs
