#include "policies/warn.hpp"

namespace oomguard::policies {

bool levelsReadable(const Thresholds& thresholds, const DomainObservation& observation) {
  const DomainObservation& o = observation;
  if (thresholds.headroom_below && !(o.memory_current_bytes && o.memory_max_bytes)) {
    return false;
  }
  if (thresholds.mem_available_below && !(o.mem_available_kb && o.mem_total_kb)) {
    return false;
  }
  if (thresholds.swap_free_below && !(o.swap_free_kb && o.swap_total_kb)) {
    return false;
  }
  if (thresholds.pressure_avg10) {
    const bool full = thresholds.pressure_kind && *thresholds.pressure_kind == "full";
    if (!(full ? o.full_avg10 : o.some_avg10)) {
      return false;
    }
  }
  return true;
}

bool warningDue(WarnState& state, WarnReading reading, uint64_t now_us, uint64_t interval_us) {
  if (reading != WarnReading::kCrossed) {
    if (reading == WarnReading::kBelow) {
      state.armed = true;
    }
    return false;
  }
  if (!state.armed) {
    return false;
  }
  if (state.last_warning_us && now_us < *state.last_warning_us + interval_us) {
    return false;  // still armed: warned once the interval has passed, if the domain is still above
  }
  state.armed = false;
  state.last_warning_us = now_us;
  return true;
}

}  // namespace oomguard::policies
