// Time to OOM: how many seconds a domain has left before its use reaches its limit at the rate it is
// growing now. Pure: the readings and their times come from the caller (the level watch's readings of
// memory.current, or /proc/meminfo for the host), so a fake clock and recorded curves test it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <utility>
#include <vector>

namespace oomguard::policies {

class OomForecast {
 public:
  struct Params {
    uint64_t window_us = 60'000'000;     // the readings the rate is fitted to: the last minute, and
    size_t min_readings = 6;             // at least this many (two per third of the window),
    uint64_t max_age_us = 600'000'000;   // reaching back at most this far for them (slowly read domains)
    uint64_t min_span_us = 10'000'000;   // a fit over less time than this is no trend (nor the first
                                         // rise of a sawtooth with a shorter period)
    double horizon_s = 86'400;           // a forecast further out is "not growing" (again past twice it)
  };

  OomForecast() = default;
  explicit OomForecast(const Params& params) : params_(params) {}

  // One reading: the domain's use and its limit, in bytes, at `now_us` (monotonic). A reading not later
  // than the last one is ignored. Readings closer together than window_us / 64 replace each other (a
  // domain near its threshold is read every few milliseconds; the fit needs no more than that).
  void reading(uint64_t now_us, uint64_t used_bytes, uint64_t limit_bytes);

  // Seconds until the use reaches the limit at the fitted rate (0 when already there); nullopt while the
  // domain is not growing. Growing starts when the lowest use in the last third of the fitted readings
  // is above the highest in the first third (the low envelope has risen past the noise: a sawtooth,
  // a garbage-collected heap, never does) and the least-squares rate over them is positive. It stops
  // when that lowest use is no longer above the lowest of the first third, the rate is no longer
  // positive, or the forecast is beyond twice the horizon: the gap between the two tests keeps a
  // forecast from flapping on one noisy reading. A leak is seen about a third of the window after it
  // starts (20 s at the default), once the last third of the readings lies wholly above the first.
  [[nodiscard]] std::optional<double> secondsToLimit() const { return seconds_; }
  // The same, counted down from the last reading to `now_us` (a domain read rarely keeps counting down
  // between its readings), never below 0.
  [[nodiscard]] std::optional<double> secondsToLimitAt(uint64_t now_us) const;
  // The least-squares growth in bytes per second over the fitted readings (0 before there are two).
  [[nodiscard]] double bytesPerSecond() const { return rate_; }

 private:
  void fit(uint64_t limit_bytes);

  Params params_;
  std::vector<std::pair<uint64_t, double>> readings_;  // (time, use), oldest first
  bool growing_ = false;
  double rate_ = 0;
  std::optional<double> seconds_;
};

}  // namespace oomguard::policies
