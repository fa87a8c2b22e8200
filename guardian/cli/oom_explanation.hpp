// A kernel OOM report explained with the project's own model (policies/badness.hpp, ranking.hpp): the
// constraint, the OOM domain and its totalpages, the ranking rebuilt from the dumped task table, and the
// kernel's victim set against the model's first choice. Pure: a function of a parsed report
// (cgroupfs/oom_report.hpp) and of what the operator says about the inputs the report lacks.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "cgroupfs/oom_report.hpp"
#include "policies/badness.hpp"
#include "policies/ranking.hpp"

namespace oomguard::guardian::cli {

// Inputs of totalpages that a report does not print. Unset: assumed, and the explanation says what.
struct OomAssumptions {
  std::optional<long> vm_swappiness;        // a memcg OOM counts swap only when it is not 0
  std::optional<uint64_t> total_swap_kb;    // a memcg report does not print the host's swap
  std::optional<uint64_t> page_size_bytes;  // no report prints it; it is inferred where it can be
};

// The verdict on the kernel's victim against the model's first choice.
enum class OomVerdict {
  kMatch,             // the model's first choice is the kernel's victim
  kAllocatingTask,    // vm.oom_kill_allocating_task = 1: the allocating task was killed, no scan
  kWithinDrift,       // another first choice, but the points are closer than the counters' drift
  kMismatch,          // another first choice, farther apart than the smallest machine's drift
  kVictimNotInTable,  // the dumped table does not list the victim
  kNoTaskTable,       // no table (vm.oom_dump_tasks = 0, or cut from the input)
  kKillLineOnly,      // only the Killed process line (the report was rate-limited, or is not here)
};
const char* toString(OomVerdict verdict);

struct OomCandidate {
  size_t rank = 0;        // 1-based among the killable tasks; 0 for an unkillable one (oom_score_adj -1000)
  size_t scan_index = 0;  // its row in the task table (the kernel's scan order)
  cgroupfs::OomTaskRow row;
  policies::BadnessTerms terms;  // every term of oom_badness(); points is kUnkillablePoints when unkillable
  [[nodiscard]] bool killable() const { return rank != 0; }
};

struct OomDomainFacts {
  // kind host for CONSTRAINT_NONE, CPUSET and MEMORY_POLICY (cgroup "/"), memcg with the OOMing cgroup.
  policies::OomDomain domain;
  std::string scope;                 // "host", "memcg", "cpuset", "mempolicy"
  bool totalpages_known = false;     // false: the report lacks the numbers; oom_score_adj then counts 0
  std::string formula;               // how totalpages arises from the report's numbers
  std::vector<std::string> missing;  // each input the report lacks, and what was assumed for it
};

struct OomExplanation {
  const cgroupfs::OomReport* report = nullptr;  // the report explained (the caller keeps it alive)
  uint64_t page_size_bytes = 4096;
  std::string page_size_source;  // how the page size was found, in words
  std::string constraint;        // the constraint in plain words
  OomDomainFacts domain;
  std::vector<OomCandidate>
      ranking;  // the model's order: killable by points (ties: later scan first), then unkillable
  std::optional<size_t> model_first;           // indices into ranking
  std::optional<size_t> victim;                // the kernel's victim, when the table lists it
  std::optional<size_t> runner_up;             // the best killable task other than the kernel's victim
  std::optional<size_t> first_without_adj;     // the model's first if every oom_score_adj but -1000 were 0
  bool adj_changed_choice = false;             // first_without_adj is not model_first
  bool ranking_depends_on_totalpages = false;  // killable tasks with different oom_score_adj
  OomVerdict verdict = OomVerdict::kNoTaskTable;
  std::string why;         // why the victim won, or why the kernel chose otherwise, in plain words
  std::string adj_effect;  // what oom_score_adj did to the victim, the runner-up and the choice, in words
  std::optional<long>
      kill_line_points;  // the victim's points from its Killed process line (swap: the table's)
  // The smallest number of CPUs whose per-CPU counter drift covers the gap between the model's first and
  // the victim (for kWithinDrift / kMismatch).
  std::optional<int> drift_cpus;
  std::vector<std::string> notes;
};

OomExplanation explainOomReport(const cgroupfs::OomReport& report, const OomAssumptions& assumptions);

namespace detail {
// A bound on every size a report gives (2^53 kB = 8 EiB, PAGE_COUNTER_MAX of a cgroup without a limit):
// bytes and points computed from the input then never overflow, whatever it holds.
inline constexpr uint64_t kMostKb = uint64_t{1} << 53;
inline uint64_t bounded(uint64_t kb) {
  return kb < kMostKb ? kb : kMostKb;
}
// `pid 141 "hog"`, the name made safe for a terminal.
std::string describeTask(pid_t pid, std::string_view name);
// The second half of explainOomReport() (oom_verdict.cpp): verdict, why, adj_effect, kill_line_points, notes.
void judgeOomReport(const cgroupfs::OomReport& report, OomExplanation& out);
}  // namespace detail

}  // namespace oomguard::guardian::cli
