#include <gtest/gtest.h>

#include "policies/badness.hpp"

namespace oomguard::policies {
namespace {

using cgroupfs::KernelVersion;
using cgroupfs::ProcessSnapshot;

constexpr uint64_t kPage = 4096;
const KernelVersion kModern{6, 12, 117, "6.12.117"};
const KernelVersion kOld{5, 4, 0, "5.4.0"};

ProcessSnapshot process(pid_t pid, uint64_t anon_kb, uint64_t file_kb, uint64_t shmem_kb, uint64_t swap_kb,
                        uint64_t pte_kb, int adj) {
  ProcessSnapshot p;
  p.pid = pid;
  p.status.comm = "t";
  p.status.has_mm = true;
  p.status.kthread = false;
  p.status.rss_anon_kb = anon_kb;
  p.status.rss_file_kb = file_kb;
  p.status.rss_shmem_kb = shmem_kb;
  p.status.swap_kb = swap_kb;
  p.status.pgtables_kb = pte_kb;
  p.oom_score_adj = adj;
  return p;
}

TEST(OomBadness, SumsPagesThenAddsAdjTimesTotalpagesOver1000) {
  // rss = (4000 + 400 + 40) kB / 4 = 1110 pages; swap 80 kB = 20 pages; pgtables 12 kB = 3 pages.
  const auto p = process(10, 4000, 400, 40, 80, 12, 0);
  EXPECT_EQ(oomBadness(p, 100000, kPage), 1110 + 20 + 3);
  // adj 250: totalpages / 1000 first: 123456 / 1000 = 123, * 250 = 30750.
  const auto q = process(10, 4000, 400, 40, 80, 12, 250);
  EXPECT_EQ(oomBadness(q, 123456, kPage), 1133 + 30750);
  // Negative adj can make the points negative; the kernel keeps them signed.
  const auto r = process(10, 4000, 400, 40, 80, 12, -999);
  EXPECT_EQ(oomBadness(r, 123456, kPage), 1133 - 999 * 123);
}

TEST(OomBadness, TotalpagesBelow1000MakesAdjIneffective) {
  // A 3 MB memcg: totalpages 768, 768 / 1000 == 0, so oom_score_adj adds nothing.
  const auto p = process(10, 400, 0, 0, 0, 4, 1000);
  EXPECT_EQ(oomBadness(p, 768, kPage), 101);
}

TEST(OomBadness, PgtablesUseIntegerDivision) {
  // VmPTE is mm_pgtables_bytes >> 10; dividing those kB by 4 floors exactly like bytes / PAGE_SIZE.
  EXPECT_EQ(badnessTerms(process(10, 0, 0, 0, 0, 7, 0), 1000, kPage).pgtables_pages, 1);
}

TEST(OomBadness, UnkillableCases) {
  auto init = process(1, 4000, 0, 0, 0, 8, 0);
  EXPECT_EQ(oomBadness(init, 1000, kPage), kUnkillablePoints);
  EXPECT_EQ(badnessTerms(init, 1000, kPage).unkillable, UnkillableReason::kGlobalInit);

  auto kthread = process(2, 0, 0, 0, 0, 0, 0);
  kthread.status.kthread = true;
  EXPECT_EQ(badnessTerms(kthread, 1000, kPage).unkillable, UnkillableReason::kKernelThread);

  auto zombie = process(3, 0, 0, 0, 0, 0, 0);
  zombie.status.has_mm = false;
  EXPECT_EQ(badnessTerms(zombie, 1000, kPage).unkillable, UnkillableReason::kNoMm);

  const auto disabled = process(4, 999999, 0, 0, 0, 8, -1000);
  EXPECT_EQ(badnessTerms(disabled, 1000, kPage).unkillable, UnkillableReason::kAdjMin);
  EXPECT_EQ(oomBadness(disabled, 1000, kPage), kUnkillablePoints);

  // -999 is still killable.
  EXPECT_NE(oomBadness(process(5, 4, 0, 0, 0, 0, -999), 1000, kPage), kUnkillablePoints);
}

TEST(ProcOomScore, ModernScaleTruncatesTowardZero) {
  // (1000 + 13412 * 1000 / 316535) * 2 / 3 = (1000 + 42) * 2 / 3 = 694
  EXPECT_EQ(procOomScore(13412, 316535, kModern), 694);
  // Negative badness: -129200 * 1000 / 316535 = -408.16 -> -408 (C truncation), (592 * 2) / 3 = 394.
  EXPECT_EQ(procOomScore(-129200, 316535, kModern), 394);
  // adj +1000 on a tiny task: 316778 * 1000 / 316535 = 1000 -> 2000 * 2 / 3 = 1333.
  EXPECT_EQ(procOomScore(316778, 316535, kModern), 1333);
  // Largest possible: points == totalpages * 2 -> (1000 + 2000) * 2 / 3 = 2000.
  EXPECT_EQ(procOomScore(2 * 316535, 316535, kModern), 2000);
  EXPECT_EQ(procOomScore(kUnkillablePoints, 316535, kModern), 0);
  // A zero-point task still shows 666.
  EXPECT_EQ(procOomScore(0, 316535, kModern), 666);
}

TEST(ProcOomScore, BeforeFiveNine) {
  // The old oom_badness() returned at least 1 for an eligible task; the division can still give 0.
  EXPECT_EQ(procOomScore(13412, 316535, kOld), 42);
  EXPECT_EQ(procOomScore(-129200, 316535, kOld), 0);
  EXPECT_EQ(procOomScore(316535, 316535, kOld), 1000);
  EXPECT_EQ(procOomScore(kUnkillablePoints, 316535, kOld), 0);
  EXPECT_EQ(procOomScore(5000, 1000, KernelVersion{5, 8, 18, "5.8.18"}), 5000);
  EXPECT_EQ(procOomScore(5000, 10000, KernelVersion{5, 9, 0, "5.9.0"}), 1000);
}

TEST(PerCpuCounterDrift, FourCountersTimesBatchMinusOnePerCpu) {
  // batch = max(32, 2 * cpus): 1 CPU -> 4 * 31 * 1; 2 -> 4 * 31 * 2; 64 -> 4 * 127 * 64.
  EXPECT_EQ(perCpuCounterDriftPages(1), 124);
  EXPECT_EQ(perCpuCounterDriftPages(2), 248);
  EXPECT_EQ(perCpuCounterDriftPages(64), 4 * 127 * 64);
  EXPECT_EQ(perCpuCounterDriftPages(0), 124);
}

TEST(LegacyOomAdj, MappingBothWays) {
  // Writes: 15 -> 1000, otherwise adj * 1000 / 17 (truncating).
  EXPECT_EQ(scoreAdjFromLegacyOomAdj(15), 1000);
  EXPECT_EQ(scoreAdjFromLegacyOomAdj(-17), -1000);
  EXPECT_EQ(scoreAdjFromLegacyOomAdj(1), 58);
  EXPECT_EQ(scoreAdjFromLegacyOomAdj(-1), -58);
  EXPECT_EQ(scoreAdjFromLegacyOomAdj(14), 823);
  // Reads: 1000 -> 15, otherwise score_adj * 17 / 1000.
  EXPECT_EQ(legacyOomAdjFromScoreAdj(1000), 15);
  EXPECT_EQ(legacyOomAdjFromScoreAdj(-1000), -17);
  EXPECT_EQ(legacyOomAdjFromScoreAdj(58), 0);
  EXPECT_EQ(legacyOomAdjFromScoreAdj(59), 1);
  EXPECT_EQ(legacyOomAdjFromScoreAdj(999), 16);
  EXPECT_EQ(legacyOomAdjFromScoreAdj(0), 0);
}

}  // namespace
}  // namespace oomguard::policies
