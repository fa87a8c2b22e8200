#include "policies/level_watch.hpp"

#include <algorithm>

namespace oomguard::policies {

std::optional<double> roomToThresholdBytes(const Thresholds& thresholds, const DomainObservation& observation) {
  std::optional<double> room;
  auto take = [&room](double value) { room = room ? std::min(*room, value) : value; };
  if (thresholds.headroom_below && observation.memory_current_bytes && observation.memory_max_bytes) {
    const double max = static_cast<double>(*observation.memory_max_bytes);
    take(max * (1.0 - *thresholds.headroom_below) - static_cast<double>(*observation.memory_current_bytes));
  }
  constexpr double kKiB = 1024.0;
  if (thresholds.mem_available_below && observation.mem_available_kb && observation.mem_total_kb) {
    take((static_cast<double>(*observation.mem_available_kb) -
          *thresholds.mem_available_below * static_cast<double>(*observation.mem_total_kb)) * kKiB);
  }
  if (thresholds.swap_free_below && observation.swap_free_kb && observation.swap_total_kb && *observation.swap_total_kb > 0) {
    take((static_cast<double>(*observation.swap_free_kb) -
          *thresholds.swap_free_below * static_cast<double>(*observation.swap_total_kb)) * kKiB);
  }
  if (room) {
    room = std::max(*room, 0.0);
  }
  return room;
}

void FillRate::sample(uint64_t now_us, double room_bytes) {
  if (last_us_ && now_us > *last_us_) {
    const double seconds = static_cast<double>(now_us - *last_us_) / 1e6;
    const double instant = std::max((last_room_ - room_bytes) / seconds, 0.0);
    rate_ = std::max(instant, rate_ / 2);
  }
  last_us_ = now_us;
  last_room_ = room_bytes;
}

uint64_t nextLevelCheckUs(std::optional<double> room_bytes, double measured_rate_bytes_per_s,
                          double assumed_rate_bytes_per_s, uint64_t min_us, uint64_t max_us) {
  if (!room_bytes) {
    return max_us;
  }
  if (*room_bytes <= 0) {
    return min_us;
  }
  const double rate = std::max(measured_rate_bytes_per_s, assumed_rate_bytes_per_s);
  if (rate <= 0) {
    return max_us;
  }
  const double lasts_us = *room_bytes / rate * 1e6 / 2;
  if (lasts_us >= static_cast<double>(max_us)) {
    return max_us;
  }
  return std::clamp(static_cast<uint64_t>(lasts_us), min_us, max_us);
}

double roomLeftBytes(double room_bytes, uint64_t allocated_then_bytes, uint64_t allocated_now_bytes) {
  const double allocated =
      allocated_now_bytes > allocated_then_bytes ? static_cast<double>(allocated_now_bytes - allocated_then_bytes) : 0;
  return room_bytes - allocated;
}

bool allocationBudgetSpent(double room_bytes, uint64_t allocated_then_bytes, uint64_t allocated_now_bytes) {
  // Half the room allocated: the room left is at most the other half.
  return room_bytes <= 0 || roomLeftBytes(room_bytes, allocated_then_bytes, allocated_now_bytes) <= room_bytes / 2;
}

}  // namespace oomguard::policies
