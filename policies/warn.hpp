// The warn stage of an act rule: a level before its act level whose crossing is told (a log line, a
// counter, an Event, the operator's warn hook), never acted on. Pure: the caller reads the level and
// passes the time.
#pragma once

#include <cstdint>
#include <optional>

#include "policies/act.hpp"

namespace oomguard::policies {

// What one reading says of the warn levels: one crossed; none crossed and each could be judged; or not
// every level could be judged (a reading is missing: neither a crossing nor a sign that the domain is back
// below).
enum class WarnReading { kCrossed, kBelow, kUnknown };

// Whether `observation` holds what every level of `thresholds` is judged on (headroom: memory.current and
// memory.max; MemAvailable and MemTotal; SwapFree and SwapTotal; the PSI avg10 of the level's kind).
bool levelsReadable(const Thresholds& thresholds, const DomainObservation& observation);

// One domain's warn stage between readings. One warning per excursion: after a warning the stage is
// disarmed until a reading finds the domain below the warn level again, and two warnings in a domain are
// at least the rule's interval apart (a level that hovers at the threshold re-arms at every dip).
struct WarnState {
  ThresholdState threshold;  // the warn level's own held-pressure memory (not the act level's)
  bool armed = true;         // a domain already above the level when first read is warned about
  std::optional<uint64_t> last_warning_us;
};

// Whether the reading at `now_us` makes a warning now; updates `state` (a warning disarms it and starts
// its interval; only a kBelow reading re-arms it).
bool warningDue(WarnState& state, WarnReading reading, uint64_t now_us, uint64_t interval_us);

}  // namespace oomguard::policies
