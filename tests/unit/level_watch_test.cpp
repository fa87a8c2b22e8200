// The adaptive watch of level thresholds, with fake readings and a fake clock.
#include <gtest/gtest.h>

#include "policies/level_watch.hpp"

namespace oomguard::policies {
namespace {

constexpr double kMiB = 1024.0 * 1024.0;
constexpr uint64_t kMinUs = 5'000;
constexpr uint64_t kMaxUs = 5'000'000;  // the default refresh interval

DomainObservation memcg(double current_mib, double max_mib) {
  DomainObservation o;
  o.memory_current_bytes = static_cast<uint64_t>(current_mib * kMiB);
  o.memory_max_bytes = static_cast<uint64_t>(max_mib * kMiB);
  return o;
}

TEST(LevelWatch, RoomToTheThreshold) {
  Thresholds headroom;
  headroom.headroom_below = 0.15;
  // 128 MiB limit, threshold at 108.8 MiB used: 40 MiB used leaves 68.8 MiB.
  EXPECT_NEAR(*roomToThresholdBytes(headroom, memcg(40, 128)) / kMiB, 68.8, 1e-9);
  EXPECT_EQ(*roomToThresholdBytes(headroom, memcg(120, 128)), 0.0) << "crossed: no room";
  Thresholds host;
  host.mem_available_below = 0.10;
  DomainObservation o;
  o.mem_total_kb = 1'000'000;
  o.mem_available_kb = 300'000;
  EXPECT_NEAR(*roomToThresholdBytes(host, o), 200'000.0 * 1024, 1e-6);
  Thresholds events_only;
  events_only.on_memory_max = true;
  EXPECT_FALSE(roomToThresholdBytes(events_only, memcg(40, 128))) << "nothing to measure";
}

// Runs a leak of `leak_mib_s` from `start_mib` into a `max_mib` memcg with a 15 % headroom threshold,
// reading when the schedule says; returns the delays and whether a reading caught the crossing before
// the limit (the kernel's OOM) was reached.
struct Race {
  std::vector<uint64_t> delays;
  bool caught = false;
  double used_at_catch_mib = 0;
};
Race race(double start_mib, double leak_mib_s, double max_mib, double assumed_mib_s) {
  Thresholds when;
  when.headroom_below = 0.15;
  FillRate rate;
  Race out;
  uint64_t now = 0;
  for (int step = 0; step < 10'000; ++step) {
    const double used = start_mib + leak_mib_s * static_cast<double>(now) / 1e6;
    if (used >= max_mib) {
      return out;  // the kernel got there first
    }
    const auto room = roomToThresholdBytes(when, memcg(used, max_mib));
    if (*room <= 0) {
      out.caught = true;
      out.used_at_catch_mib = used;
      return out;
    }
    rate.sample(now, *room);
    const uint64_t delay = nextLevelCheckUs(room, rate.bytesPerSecond(), assumed_mib_s * kMiB, kMinUs, kMaxUs);
    out.delays.push_back(delay);
    now += delay;
  }
  return out;
}

TEST(LevelWatch, TheNextCheckComesForwardAsTheRoomShrinks) {
  // 50 MiB/s and 500 MiB/s leaks into a 128 MiB memcg (the race issue's cells), default refresh 5 s:
  // a fixed 5 s refresh misses both; the schedule reads sooner as the room shrinks and catches both
  // between the threshold (108.8 MiB) and the limit.
  for (const double leak : {50.0, 500.0}) {
    const Race run = race(20, leak, 128, 512);
    EXPECT_TRUE(run.caught) << leak << " MiB/s";
    EXPECT_LT(run.used_at_catch_mib, 128.0) << leak << " MiB/s";
    ASSERT_GE(run.delays.size(), 3U);
    for (size_t i = 2; i < run.delays.size(); ++i) {
      EXPECT_LE(run.delays[i], run.delays[i - 1]) << leak << " MiB/s, step " << i;
    }
  }
  // From idle, a leak much faster than the assumed rate passes the threshold before a second reading
  // can measure it: polling alone cannot win that (memory.high and PSI events must); an operator who
  // expects such leaks raises the assumed rate, at the cost of more readings at rest.
  EXPECT_FALSE(race(20, 2048, 1024, 512).caught);
  EXPECT_TRUE(race(20, 2048, 1024, 2048).caught);
}

TEST(LevelWatch, QuietDomainsCostNothingAndBoundsHold) {
  // 6 GiB of room at 512 MiB/s lasts 12 s: read at the refresh.
  EXPECT_EQ(nextLevelCheckUs(6144 * kMiB, 0, 512 * kMiB, kMinUs, kMaxUs), kMaxUs);
  // 88.8 MiB of room (a 128 MiB memcg at rest): 86.7 ms.
  EXPECT_NEAR(static_cast<double>(nextLevelCheckUs(88.8 * kMiB, 0, 512 * kMiB, kMinUs, kMaxUs)), 86'719, 1);
  EXPECT_EQ(nextLevelCheckUs(0, 100 * kMiB, 512 * kMiB, kMinUs, kMaxUs), kMinUs) << "crossed: at once";
  EXPECT_EQ(nextLevelCheckUs(1, 1e12, 512 * kMiB, kMinUs, kMaxUs), kMinUs) << "never faster than min";
  EXPECT_EQ(nextLevelCheckUs(std::nullopt, 1e9, 512 * kMiB, kMinUs, kMaxUs), kMaxUs) << "nothing to measure";
}

TEST(LevelWatch, TheRateRisesAtOnceAndDecaysByHalves) {
  FillRate rate;
  rate.sample(0, 100 * kMiB);
  EXPECT_EQ(rate.bytesPerSecond(), 0);
  rate.sample(1'000'000, 50 * kMiB);
  EXPECT_NEAR(rate.bytesPerSecond(), 50 * kMiB, 1);
  rate.sample(2'000'000, 50 * kMiB);  // a quiet second: half
  EXPECT_NEAR(rate.bytesPerSecond(), 25 * kMiB, 1);
  rate.sample(2'100'000, 20 * kMiB);  // 300 MiB/s
  EXPECT_NEAR(rate.bytesPerSecond(), 300 * kMiB, 1);
}

}  // namespace
}  // namespace oomguard::policies
