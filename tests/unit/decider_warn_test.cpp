// The level watch's warn stage (Decider::checkLevels) on a fixture node with a fake clock: a warning
// once per excursion above the warn level and before the act level's decision, the next reading brought
// forward by the room to the warn level, and a rule with action "observe" that only warns.
#include <gtest/gtest.h>

#include "decider_fixture.hpp"

namespace oomguard::guardian::daemon {
namespace {

// Act at 10% headroom, warn at 30%, at most one warning a minute.
constexpr const char* kWarnAndAct = R"([{"match": "/pod", "act": {"action": "kill-worst",
    "when": {"headroom_below": 0.10}, "warn": {"headroom_below": 0.30, "interval_s": 60}}}, {"match": "/**"}])";

uint64_t percentOfLimit(uint64_t percent) { return NodeFixture::kLimitBytes / 100 * percent; }

TEST_F(DeciderTest, AWarningOncePerExcursionThenTheDecision) {
  start(kWarnAndAct);
  ASSERT_TRUE(rankings->rerankMemcg(facts, "/pod").ok());
  fixture.setCurrent(percentOfLimit(50));
  auto checks = decider->checkLevels(fixture.now_us, true);
  EXPECT_TRUE(checks.warned.empty());
  EXPECT_TRUE(checks.crossed.empty());

  fixture.now_us += 1'000'000;
  fixture.setCurrent(percentOfLimit(75));
  checks = decider->checkLevels(fixture.now_us, true);
  ASSERT_EQ(checks.warned.size(), 1U);
  EXPECT_EQ(checks.warned.front().domain, "/pod");
  EXPECT_EQ(checks.warned.front().crossing.kind, policies::CrossedBy::kHeadroom);
  EXPECT_EQ(checks.warned.front().observation.memory_current_bytes, percentOfLimit(75));
  EXPECT_TRUE(checks.crossed.empty()) << "the act level is still ahead";

  // Growing on, past the act level: the decision, and no second warning for the same excursion.
  fixture.now_us += 1'000'000;
  fixture.setCurrent(percentOfLimit(80));
  EXPECT_TRUE(decider->checkLevels(fixture.now_us, true).warned.empty());
  fixture.now_us += 1'000'000;
  fixture.setCurrent(percentOfLimit(95));
  checks = decider->checkLevels(fixture.now_us, true);
  EXPECT_TRUE(checks.warned.empty());
  ASSERT_EQ(checks.crossed.size(), 1U);
  EXPECT_EQ(checks.crossed.front().first, "/pod");

  // Back below the warn level (the victim's memory released), then a new excursion a minute later.
  fixture.now_us += 1'000'000;
  fixture.setCurrent(percentOfLimit(40));
  EXPECT_TRUE(decider->checkLevels(fixture.now_us, true).warned.empty());
  fixture.now_us += 60'000'000;
  fixture.setCurrent(percentOfLimit(72));
  EXPECT_EQ(decider->checkLevels(fixture.now_us, true).warned.size(), 1U);
}

TEST_F(DeciderTest, TheWarnLevelBringsTheNextReadingForward) {
  // The same reading (60% of the 1 GiB limit, 80 MiB/s assumed): 10% of the limit to the warn level
  // (half its time: 0.64 s), 30% to the act level (1.9 s, the refresh interval of 1 s is sooner). The
  // next reading is due by the nearer one, and never sooner than 0.5 s by a warn level.
  auto dueAfterOneReading = [&](const std::string& rules) {
    start(rules, R"("policy": {"assumed_fill_rate_mib_s": 80}, )");
    EXPECT_TRUE(rankings->rerankMemcg(facts, "/pod").ok());
    fixture.setCurrent(percentOfLimit(60));
    (void)decider->checkLevels(fixture.now_us, true);
    return decider->nextLevelDueUs().value_or(0) - fixture.now_us;
  };
  const uint64_t act_only_us = dueAfterOneReading(kHeadroom);
  const uint64_t with_warn_us = dueAfterOneReading(kWarnAndAct);
  EXPECT_EQ(act_only_us, 1'000'000U);
  EXPECT_GE(with_warn_us, 500'000U);
  EXPECT_LT(with_warn_us, 700'000U) << "act only " << act_only_us << " us";
}

TEST_F(DeciderTest, ADomainJustBelowItsWarnLevelIsNotPolledEveryFewMilliseconds) {
  // 1 MiB below the warn level (70 % of 1 GiB), 20 % of the limit above the act level: the act level's
  // room sets the next reading (about 0.2 s at 512 MiB/s), the warn level's 1 MiB does not bring it to 5 ms.
  start(kWarnAndAct);
  ASSERT_TRUE(rankings->rerankMemcg(facts, "/pod").ok());
  fixture.setCurrent(NodeFixture::kLimitBytes / 10 * 7 - (1U << 20));
  const auto checks = decider->checkLevels(fixture.now_us, true);
  EXPECT_TRUE(checks.warned.empty());
  EXPECT_GE(decider->nextLevelDueUs().value_or(0) - fixture.now_us, 100'000U);
  // Watched through the host's allocations: its budget is at least 32 MiB, so the allocations are not
  // read every 5 ms either.
  fixture.write("proc/vmstat", "pgalloc_normal 1000000\n");
  fixture.now_us += 10'000'000;
  (void)decider->checkLevels(fixture.now_us, true);
  EXPECT_GE(decider->nextLevelDueUs().value_or(0) - fixture.now_us, 25'000U);
}

TEST_F(DeciderTest, ARuleThatOnlyWarnsIsWatchedAndNeverDecides) {
  start(R"([{"match": "/pod", "act": {"action": "observe", "warn": {"headroom_below": 0.30}}}, {"match": "/**"}])");
  ASSERT_TRUE(rankings->rerankMemcg(facts, "/pod").ok());
  fixture.setCurrent(percentOfLimit(99));
  const auto checks = decider->checkLevels(fixture.now_us, true);
  EXPECT_EQ(checks.warned.size(), 1U);
  EXPECT_TRUE(checks.crossed.empty());
  EXPECT_TRUE(decider->nextLevelDueUs());
}

TEST_F(DeciderTest, AFailedReadingNeitherWarnsNorRearms) {
  start(kWarnAndAct);
  ASSERT_TRUE(rankings->rerankMemcg(facts, "/pod").ok());
  fixture.setCurrent(percentOfLimit(75));
  EXPECT_EQ(decider->checkLevels(fixture.now_us, true).warned.size(), 1U);
  std::filesystem::remove(fixture.root / "cgroup/pod/memory.current");
  fixture.now_us += 120'000'000;
  EXPECT_TRUE(decider->checkLevels(fixture.now_us, true).warned.empty());
  fixture.setCurrent(percentOfLimit(76));
  fixture.now_us += 1'000'000;
  EXPECT_TRUE(decider->checkLevels(fixture.now_us, true).warned.empty())
      << "a failed reading re-armed the warning: the same excursion was warned about twice";
}

}  // namespace
}  // namespace oomguard::guardian::daemon
