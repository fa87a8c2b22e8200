#include "policies/forecast.hpp"

#include <algorithm>
#include <iterator>

namespace oomguard::policies {

void OomForecast::reading(uint64_t now_us, uint64_t used_bytes, uint64_t limit_bytes) {
  if (!readings_.empty() && now_us <= readings_.back().first) {
    return;
  }
  const uint64_t spacing_us = params_.window_us / 64;
  // The one before the last stays, so a reading that replaces the last keeps the spacing bounded.
  if (readings_.size() >= 2 && now_us - readings_[readings_.size() - 2].first < spacing_us) {
    readings_.back() = {now_us, static_cast<double>(used_bytes)};
  } else {
    readings_.emplace_back(now_us, static_cast<double>(used_bytes));
  }
  // Keep the window, or the last min_readings if the window holds fewer, never older than max_age.
  const uint64_t window_start = now_us > params_.window_us ? now_us - params_.window_us : 0;
  const uint64_t oldest_allowed = now_us > params_.max_age_us ? now_us - params_.max_age_us : 0;
  size_t drop = 0;
  while (drop < readings_.size() && (readings_[drop].first < oldest_allowed ||
                                     (readings_[drop].first < window_start &&
                                      readings_.size() - drop > params_.min_readings))) {
    ++drop;
  }
  readings_.erase(readings_.begin(), readings_.begin() + static_cast<std::ptrdiff_t>(drop));
  fit(limit_bytes);
}

std::optional<double> OomForecast::secondsToLimitAt(uint64_t now_us) const {
  if (!seconds_ || readings_.empty()) {
    return seconds_;
  }
  const uint64_t last_us = readings_.back().first;
  const double age_s = now_us > last_us ? static_cast<double>(now_us - last_us) / 1e6 : 0;
  return std::max(0.0, *seconds_ - age_s);
}

void OomForecast::fit(uint64_t limit_bytes) {
  const size_t n = readings_.size();
  rate_ = 0;
  if (n >= 2) {
    // Least squares of use against time, in seconds from the first reading (no loss of precision).
    const uint64_t t0 = readings_.front().first;
    double mean_t = 0;
    double mean_y = 0;
    for (const auto& [t, y] : readings_) {
      mean_t += static_cast<double>(t - t0) / 1e6;
      mean_y += y;
    }
    mean_t /= static_cast<double>(n);
    mean_y /= static_cast<double>(n);
    double sxx = 0;
    double sxy = 0;
    for (const auto& [t, y] : readings_) {
      const double dt = static_cast<double>(t - t0) / 1e6 - mean_t;
      sxx += dt * dt;
      sxy += dt * (y - mean_y);
    }
    rate_ = sxx > 0 ? sxy / sxx : 0;
  }
  const bool enough = n >= std::max<size_t>(params_.min_readings, 3) && readings_.back().first - readings_.front().first >= params_.min_span_us;
  const double used_now = n > 0 ? readings_.back().second : 0;
  const double seconds =
      rate_ > 0 ? std::max(static_cast<double>(limit_bytes) - used_now, 0.0) / rate_ : params_.horizon_s * 4;
  if (!enough) {
    growing_ = false;
  } else {
    const size_t third = n / 3;
    auto lowest = [](auto first, auto last) {
      return std::min_element(first, last, [](const auto& a, const auto& b) { return a.second < b.second; })->second;
    };
    const auto first_end = readings_.begin() + static_cast<std::ptrdiff_t>(third);
    const auto last_begin = readings_.end() - static_cast<std::ptrdiff_t>(third);
    const double low_first = lowest(readings_.begin(), first_end);
    const double low_last = lowest(last_begin, readings_.end());
    const double high_first =
        std::max_element(readings_.begin(), first_end, [](const auto& a, const auto& b) { return a.second < b.second; })
            ->second;
    if (growing_) {
      growing_ = low_last > low_first && rate_ > 0 && seconds <= params_.horizon_s * 2;
    } else {
      growing_ = low_last > high_first && rate_ > 0 && seconds <= params_.horizon_s;
    }
  }
  seconds_ = growing_ ? std::optional<double>(seconds) : std::nullopt;
}

}  // namespace oomguard::policies
