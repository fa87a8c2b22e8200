#include "policies/badness.hpp"

#include <algorithm>

namespace oomguard::policies {

const char* describe(UnkillableReason reason) {
  switch (reason) {
    case UnkillableReason::kNone:
      return "killable";
    case UnkillableReason::kGlobalInit:
      return "global init (pid 1) is never selected";
    case UnkillableReason::kKernelThread:
      return "kernel threads are never selected";
    case UnkillableReason::kNoMm:
      return "no address space (exiting, zombie or kernel thread)";
    case UnkillableReason::kAdjMin:
      return "oom_score_adj is -1000 (OOM_SCORE_ADJ_MIN)";
  }
  return "unknown";
}

BadnessTerms badnessTerms(const cgroupfs::ProcessSnapshot& process, uint64_t totalpages,
                          uint64_t page_size_bytes) {
  BadnessTerms terms;
  const auto& status = process.status;
  if (process.pid == 1) {
    terms.unkillable = UnkillableReason::kGlobalInit;
  } else if (status.kthread.value_or(false)) {
    terms.unkillable = UnkillableReason::kKernelThread;
  } else if (!status.has_mm) {
    terms.unkillable = UnkillableReason::kNoMm;
  } else if (process.oom_score_adj == kOomScoreAdjMin) {
    terms.unkillable = UnkillableReason::kAdjMin;
  }
  const long page_kb = static_cast<long>(page_size_bytes / 1024);
  terms.rss_pages = static_cast<long>(status.rss_anon_kb + status.rss_file_kb + status.rss_shmem_kb) / page_kb;
  terms.swap_pages = static_cast<long>(status.swap_kb) / page_kb;
  // mm_pgtables_bytes(mm) / PAGE_SIZE; VmPTE is those bytes >> 10, so this division is the same floor.
  terms.pgtables_pages = static_cast<long>(status.pgtables_kb) / page_kb;
  terms.adj_unit = static_cast<long>(totalpages / 1000);
  terms.adj_points = static_cast<long>(process.oom_score_adj) * terms.adj_unit;
  if (terms.unkillable == UnkillableReason::kNone) {
    terms.points = terms.rss_pages + terms.swap_pages + terms.pgtables_pages + terms.adj_points;
  }
  return terms;
}

long oomBadness(const cgroupfs::ProcessSnapshot& process, uint64_t totalpages, uint64_t page_size_bytes) {
  return badnessTerms(process, totalpages, page_size_bytes).points;
}

long procOomScore(long badness, uint64_t host_totalpages, const cgroupfs::KernelVersion& kernel) {
  if (badness == kUnkillablePoints || host_totalpages == 0) {
    return 0;
  }
  const long total = static_cast<long>(host_totalpages);
  if (kernel.atLeast(5, 9)) {
    // The kernel stores this long expression in an unsigned long; it is never negative because
    // badness >= -999 * (totalpages / 1000) keeps badness * 1000 / totalpages above -1000.
    return (1000 + badness * 1000 / total) * 2 / 3;
  }
  // Before 5.9 oom_badness() itself returned at least 1 for an eligible task; the division may still
  // give 0 for a small one.
  const long clamped = badness > 0 ? badness : 1;
  return clamped * 1000 / total;
}

long perCpuCounterDriftPages(int online_cpus) {
  constexpr long kCounters = 4;
  const long cpus = online_cpus > 0 ? online_cpus : 1;
  const long batch = std::max(32L, 2 * cpus);
  return kCounters * (batch - 1) * cpus;
}

int scoreAdjFromLegacyOomAdj(int oom_adj) {
  constexpr int kOomAdjMax = 15;
  constexpr int kOomDisable = -17;
  if (oom_adj == kOomAdjMax) {
    return kOomScoreAdjMax;
  }
  return oom_adj * kOomScoreAdjMax / -kOomDisable;
}

int legacyOomAdjFromScoreAdj(int oom_score_adj) {
  constexpr int kOomAdjMax = 15;
  constexpr int kOomDisable = -17;
  if (oom_score_adj == kOomScoreAdjMax) {
    return kOomAdjMax;
  }
  return oom_score_adj * -kOomDisable / kOomScoreAdjMax;
}

}  // namespace oomguard::policies
