// OomForecast on recorded growth curves, with a fake clock: a steady leak, a bursty one, a sawtooth
// (a garbage-collected heap), noise around a flat line, a leak that starts and one that stops, and a
// domain read only every 30 s. Each curve is fed reading by reading, and each test checks every answer
// along the way, so a forecast that flaps (appears, goes, appears) fails.
#include "policies/forecast.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <functional>

namespace oomguard::policies {
namespace {

constexpr double kMiB = 1024.0 * 1024.0;
constexpr uint64_t kLimitBytes = 1024ULL << 20;

// A small deterministic noise in [-1, 1) (a linear congruential generator: the same curve every run).
class Noise {
 public:
  double next() {
    state_ = state_ * 6364136223846793005ULL + 1442695040888963407ULL;
    return static_cast<double>(state_ >> 11) / static_cast<double>(1ULL << 53) * 2 - 1;
  }

 private:
  uint64_t state_ = 42;
};

struct Answer {
  double at_s;
  std::optional<double> seconds;
};

// Feeds use(t) every step_s from 0 to end_s; returns every answer.
std::vector<Answer> feed(OomForecast& forecast, double end_s, double step_s, const std::function<double(double)>& use) {
  std::vector<Answer> answers;
  const auto steps = static_cast<int>(std::llround(end_s / step_s));
  for (int i = 0; i <= steps; ++i) {
    const double t = i * step_s;
    forecast.reading(static_cast<uint64_t>(std::llround(t * 1e6)), static_cast<uint64_t>(use(t)), kLimitBytes);
    answers.push_back({t, forecast.secondsToLimit()});
  }
  return answers;
}

// How often the answer changes between present and absent.
int transitions(const std::vector<Answer>& answers) {
  int count = 0;
  for (size_t i = 1; i < answers.size(); ++i) {
    count += answers[i].seconds.has_value() != answers[i - 1].seconds.has_value() ? 1 : 0;
  }
  return count;
}

TEST(OomForecast, ASteadyLeakIsForecastWithinFivePercentAndNeverFlaps) {
  OomForecast forecast;
  Noise noise;
  const auto use = [&](double t) { return 100 * kMiB + 10 * kMiB * t + 2 * kMiB * noise.next(); };
  const auto answers = feed(forecast, 90, 1, use);  // reaches the limit at about 92 s
  for (const auto& answer : answers) {
    if (answer.at_s < 10) {
      EXPECT_FALSE(answer.seconds) << "at " << answer.at_s << " s: under 10 s of readings is no trend";
      continue;
    }
    ASSERT_TRUE(answer.seconds) << "at " << answer.at_s << " s";
    const double truth = (1024.0 - 100.0) / 10.0 - answer.at_s;
    EXPECT_NEAR(*answer.seconds, truth, std::max(truth * 0.05, 0.6)) << "at " << answer.at_s << " s";
  }
  EXPECT_EQ(transitions(answers), 1) << "absent, then present to the end";
  EXPECT_NEAR(forecast.bytesPerSecond() / kMiB, 10, 0.2);
}

TEST(OomForecast, ABurstyLeakIsForecastFromItsMeanRate) {
  OomForecast forecast;
  // 20 MiB at once every 4 s (5 MiB/s on average), read every 0.5 s.
  const auto use = [](double t) { return 200 * kMiB + 20 * kMiB * std::floor(t / 4); };
  const auto answers = feed(forecast, 150, 0.5, use);
  for (const auto& answer : answers) {
    if (answer.at_s < 12) {
      continue;  // a trend needs the low envelope to rise past a step
    }
    ASSERT_TRUE(answer.seconds) << "at " << answer.at_s << " s";
    const double truth = (1024.0 - 200.0) / 5.0 - answer.at_s;
    EXPECT_NEAR(*answer.seconds, truth, truth * 0.25 + 4) << "at " << answer.at_s << " s";
  }
  EXPECT_EQ(transitions(answers), 1);
}

TEST(OomForecast, ASawtoothNeverForecastsAnOom) {
  OomForecast forecast;
  // A heap that grows 40 MiB in 8 s and is collected back, for ten minutes.
  const auto use = [](double t) { return 300 * kMiB + 40 * kMiB * std::fmod(t, 8.5) / 8.5; };
  const auto answers = feed(forecast, 600, 0.5, use);
  for (const auto& answer : answers) {
    EXPECT_FALSE(answer.seconds) << "at " << answer.at_s << " s: " << answer.seconds.value_or(-1);
  }
}

TEST(OomForecast, NoiseAroundAFlatLineForecastsNothing) {
  OomForecast forecast;
  Noise noise;
  const auto answers = feed(forecast, 600, 1, [&](double) { return 500 * kMiB + 8 * kMiB * noise.next(); });
  EXPECT_EQ(transitions(answers), 0);
  EXPECT_FALSE(answers.back().seconds);
}

TEST(OomForecast, ALeakOnTopOfASawtoothIsForecast) {
  OomForecast forecast;
  // The collected heap's floor rises 2 MiB/s: a leak under the garbage collector.
  const auto use = [](double t) { return 100 * kMiB + 2 * kMiB * t + 40 * kMiB * std::fmod(t, 8.5) / 8.5; };
  const auto answers = feed(forecast, 300, 0.5, use);
  for (const auto& answer : answers) {
    if (answer.at_s >= 60) {
      ASSERT_TRUE(answer.seconds) << "at " << answer.at_s << " s";
      const double truth = (1024.0 - 100.0 - 2 * answer.at_s - 20) / 2.0;  // the mean line to the limit
      EXPECT_NEAR(*answer.seconds, truth, truth * 0.25 + 10) << "at " << answer.at_s << " s";
    }
  }
  EXPECT_LE(transitions(answers), 1);
}

TEST(OomForecast, ALeakThatStartsIsForecastSoonAndOneThatStopsIsForgotten) {
  OomForecast forecast;
  Noise noise;
  // Flat for 60 s, a 5 MiB/s leak for 60 s, flat again.
  const auto use = [&](double t) {
    const double leaked = 5 * kMiB * std::clamp(t - 60, 0.0, 60.0);
    return 200 * kMiB + leaked + kMiB * noise.next();
  };
  const auto answers = feed(forecast, 300, 1, use);
  std::optional<double> first_seen;
  std::optional<double> last_seen;
  for (const auto& answer : answers) {
    if (answer.seconds) {
      first_seen = first_seen.value_or(answer.at_s);
      last_seen = answer.at_s;
    }
  }
  ASSERT_TRUE(first_seen);
  EXPECT_GE(*first_seen, 60) << "nothing before the leak";
  EXPECT_LE(*first_seen, 81) << "seen within a third of the window (20 s) of its start";
  EXPECT_LE(*last_seen, 190) << "forgotten within a window and a bit after it stopped";
  EXPECT_EQ(transitions(answers), 2) << "one episode, no flapping";
}

TEST(OomForecast, ADomainReadEveryThirtySecondsStillGetsAForecast) {
  OomForecast forecast;
  // A slow leak (0.5 MiB/s) on a domain the level watch reads only at its safety net.
  const auto answers = feed(forecast, 900, 30, [](double t) { return 100 * kMiB + 0.5 * kMiB * t; });
  ASSERT_TRUE(answers.back().seconds) << "its readings reach back up to 10 minutes";
  EXPECT_NEAR(*answers.back().seconds, (1024.0 - 100.0 - 450.0) / 0.5, 1);
  // Between its readings the forecast counts down from the last one (at 900 s), and stops at 0.
  const double at_last = *forecast.secondsToLimit();
  EXPECT_DOUBLE_EQ(*forecast.secondsToLimitAt(900'000'000), at_last);
  EXPECT_NEAR(*forecast.secondsToLimitAt(920'000'000), at_last - 20, 1e-9);
  EXPECT_DOUBLE_EQ(*forecast.secondsToLimitAt(900'000'000 + 10'000'000'000ULL), 0);
  EXPECT_FALSE(OomForecast().secondsToLimitAt(1'000'000)) << "no readings: no forecast";
}

TEST(OomForecast, ReadingsOutOfOrderAreIgnoredAndTheLimitReachedIsZero) {
  OomForecast forecast;
  for (int i = 0; i <= 20; ++i) {
    forecast.reading(static_cast<uint64_t>(i) * 1'000'000, static_cast<uint64_t>(900 * kMiB + 20 * kMiB * i),
                     kLimitBytes);
  }
  forecast.reading(5'000'000, 0, kLimitBytes);  // older than the last: ignored
  ASSERT_TRUE(forecast.secondsToLimit());
  EXPECT_DOUBLE_EQ(*forecast.secondsToLimit(), 0) << "1300 MiB used of 1024: at the limit already";
}

}  // namespace
}  // namespace oomguard::policies
