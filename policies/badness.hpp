// The kernel's OOM badness model (mm/oom_kill.c: oom_badness(), kernels >= 4.17) and the numbers derived
// from it (/proc/<pid>/oom_score, the legacy oom_adj mapping). Pure integer arithmetic, done in the same
// order and with the same truncation as the kernel.
#pragma once

#include <climits>
#include <cstdint>

#include "cgroupfs/types.hpp"

namespace oomguard::policies {

// oom_badness() returns LONG_MIN for a task the OOM killer never selects.
inline constexpr long kUnkillablePoints = LONG_MIN;
inline constexpr int kOomScoreAdjMin = -1000;
inline constexpr int kOomScoreAdjMax = 1000;

enum class UnkillableReason {
  kNone,
  kGlobalInit,     // pid 1 of the init pid namespace (the proc root's pid 1)
  kKernelThread,   // PF_KTHREAD
  kNoMm,           // exited, zombie, or otherwise without an address space
  kAdjMin,         // oom_score_adj == -1000
};
const char* describe(UnkillableReason reason);

// Every term of oom_badness(), for reports (`oomguard explain`).
struct BadnessTerms {
  UnkillableReason unkillable = UnkillableReason::kNone;
  long rss_pages = 0;       // RssAnon + RssFile + RssShmem
  long swap_pages = 0;      // VmSwap (MM_SWAPENTS)
  long pgtables_pages = 0;  // VmPTE bytes / PAGE_SIZE (integer division)
  long adj_unit = 0;        // totalpages / 1000 (integer division, done first)
  long adj_points = 0;      // oom_score_adj * adj_unit
  long points = kUnkillablePoints;
};

// The badness of one process in an OOM domain of `totalpages` pages. Memory values come from
// /proc/<pid>/status in kB, which the kernel prints as pages << (PAGE_SHIFT - 10): exact.
BadnessTerms badnessTerms(const cgroupfs::ProcessSnapshot& process, uint64_t totalpages,
                          uint64_t page_size_bytes);
long oomBadness(const cgroupfs::ProcessSnapshot& process, uint64_t totalpages, uint64_t page_size_bytes);

// What /proc/<pid>/oom_score shows for a badness computed in the host domain (`host_totalpages`).
// >= 5.9: (1000 + badness * 1000 / totalpages) * 2 / 3, range 0..2000, 0 when unkillable.
// Older: max(badness, 1) * 1000 / totalpages (the old oom_badness() never returned less than 1 for an
// eligible task), range 0..1000, 0 when unkillable.
long procOomScore(long badness, uint64_t host_totalpages, const cgroupfs::KernelVersion& kernel);

// How far the kernel's own reading of a task's points may lie from what /proc/<pid>/status lets us
// compute. Since the mm counters became per-CPU (6.2), oom_badness() reads them approximately (the global
// count without the per-CPU deltas) while /proc/<pid>/status prints exact sums. Each of the four counters
// (anon, file, shmem, swap entries) may hold up to batch - 1 pages per CPU in either direction, where
// batch = max(32, 2 * online CPUs). Candidates whose points differ by less than this are a tie zone.
long perCpuCounterDriftPages(int online_cpus);

// The legacy /proc/<pid>/oom_adj interface (-17..15, -17 = OOM_DISABLE).
int scoreAdjFromLegacyOomAdj(int oom_adj);
int legacyOomAdjFromScoreAdj(int oom_score_adj);

}  // namespace oomguard::policies
