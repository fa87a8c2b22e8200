// The warn stage's memory (policies::warningDue) over a sequence of readings with a fake clock: one
// warning per excursion above the level, re-armed by a reading below it, never two closer than the
// interval, and a domain first read above its level is warned about.
#include "policies/warn.hpp"

#include <gtest/gtest.h>

namespace oomguard::policies {
namespace {

constexpr uint64_t kSecondUs = 1'000'000;
constexpr uint64_t kIntervalUs = 60 * kSecondUs;

TEST(WarnStage, WarnsOncePerExcursionAboveTheLevel) {
  WarnState state;
  EXPECT_FALSE(warningDue(state, WarnReading::kBelow, 1 * kSecondUs, kIntervalUs));
  EXPECT_TRUE(warningDue(state, WarnReading::kCrossed, 2 * kSecondUs, kIntervalUs));
  // Still above, minutes later: the same excursion, no second warning.
  for (uint64_t s = 3; s < 600; s += 7) {
    EXPECT_FALSE(warningDue(state, WarnReading::kCrossed, s * kSecondUs, kIntervalUs)) << "at " << s << " s";
  }
  // Below again, then above: a new excursion, past the interval.
  EXPECT_FALSE(warningDue(state, WarnReading::kBelow, 600 * kSecondUs, kIntervalUs));
  EXPECT_TRUE(warningDue(state, WarnReading::kCrossed, 601 * kSecondUs, kIntervalUs));
  ASSERT_TRUE(state.last_warning_us);
  EXPECT_EQ(*state.last_warning_us, 601 * kSecondUs);
}

TEST(WarnStage, ALevelHoveringAtTheThresholdWarnsAtMostOncePerInterval) {
  WarnState state;
  int warnings = 0;
  // Above and below at every reading, 100 ms apart, for five minutes: one warning per minute.
  for (uint64_t tenth = 0; tenth < 3000; ++tenth) {
    warnings += warningDue(state, tenth % 2 == 0 ? WarnReading::kCrossed : WarnReading::kBelow, tenth * kSecondUs / 10, kIntervalUs) ? 1 : 0;
  }
  EXPECT_EQ(warnings, 5);
}

TEST(WarnStage, ADomainAboveItsLevelAtItsFirstReadingIsWarnedAbout) {
  WarnState state;
  EXPECT_TRUE(warningDue(state, WarnReading::kCrossed, 0, kIntervalUs));
  EXPECT_FALSE(warningDue(state, WarnReading::kCrossed, 1, kIntervalUs));
}

TEST(WarnStage, AnExcursionWithinTheIntervalIsWarnedAboutOnceTheIntervalHasPassed) {
  WarnState state;
  EXPECT_TRUE(warningDue(state, WarnReading::kCrossed, 0, kIntervalUs));
  EXPECT_FALSE(warningDue(state, WarnReading::kBelow, 10 * kSecondUs, kIntervalUs));
  // The next excursion starts inside the interval: held, but still armed ...
  EXPECT_FALSE(warningDue(state, WarnReading::kCrossed, 20 * kSecondUs, kIntervalUs));
  EXPECT_FALSE(warningDue(state, WarnReading::kCrossed, 59 * kSecondUs, kIntervalUs));
  // ... and told once the interval has passed, while it lasts.
  EXPECT_TRUE(warningDue(state, WarnReading::kCrossed, 60 * kSecondUs, kIntervalUs));
  EXPECT_FALSE(warningDue(state, WarnReading::kCrossed, 61 * kSecondUs, kIntervalUs));
}

TEST(WarnStage, AReadingThatCannotJudgeTheLevelNeitherWarnsNorRearms) {
  WarnState state;
  EXPECT_TRUE(warningDue(state, WarnReading::kCrossed, 0, kIntervalUs));
  // PSI could not be read: not a sign that the domain is back below its level.
  EXPECT_FALSE(warningDue(state, WarnReading::kUnknown, 100 * kSecondUs, kIntervalUs));
  EXPECT_FALSE(warningDue(state, WarnReading::kCrossed, 101 * kSecondUs, kIntervalUs))
      << "an unknown reading re-armed the warning: one excursion warned twice";
  EXPECT_FALSE(warningDue(state, WarnReading::kUnknown, 0, kIntervalUs));
}

TEST(WarnStage, LevelsAreReadableOnlyWithEverythingTheyAreJudgedOn) {
  Thresholds warn;
  warn.headroom_below = 0.3;
  warn.pressure_kind = "full";
  warn.pressure_avg10 = 0.1;
  DomainObservation seen;
  seen.memory_current_bytes = 1;
  seen.memory_max_bytes = 2;
  seen.some_avg10 = 0.5;
  EXPECT_FALSE(levelsReadable(warn, seen)) << "the full avg10 was not read";
  seen.full_avg10 = 0.0;
  EXPECT_TRUE(levelsReadable(warn, seen));
  seen.memory_max_bytes.reset();
  EXPECT_FALSE(levelsReadable(warn, seen));
  Thresholds host;
  host.mem_available_below = 0.2;
  EXPECT_FALSE(levelsReadable(host, DomainObservation{}));
}

}  // namespace
}  // namespace oomguard::policies
