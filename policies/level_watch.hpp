// How often a level threshold (headroom_below, mem_available_below, swap_free_below) must be read so
// that a leak cannot pass it and reach the OOM between two readings: pure functions of the last
// readings and an injected time (microseconds).
#pragma once

#include <cstdint>
#include <optional>

#include "policies/act.hpp"

namespace oomguard::policies {

// The room left before the nearest level threshold of `thresholds` is crossed, in bytes, from one
// observation: memory.max * (1 - headroom_below) - memory.current for a memcg; MemAvailable -
// mem_available_below * MemTotal (and likewise SwapFree) for the host. 0 when already crossed;
// nullopt when the rule has no level threshold that the observation can measure.
std::optional<double> roomToThresholdBytes(const Thresholds& thresholds, const DomainObservation& observation);

// The fill rate of one domain, from successive readings of its room: bytes per second that the room
// shrinks. It rises at once with a faster fill and decays by half per reading when the fill slows,
// so one quiet reading does not relax the watch.
class FillRate {
 public:
  void sample(uint64_t now_us, double room_bytes);
  [[nodiscard]] double bytesPerSecond() const { return rate_; }

 private:
  std::optional<uint64_t> last_us_;
  double last_room_ = 0;
  double rate_ = 0;
};

// When to read the domain next: half the time the room lasts at the fastest plausible fill rate, the
// measured one or `assumed_rate_bytes_per_s` (a leak that starts from idle is not measured yet),
// whichever is faster, clamped to [min_us, max_us]. No room: min_us. A domain far from its threshold
// is read at max_us (the refresh interval), where events (PSI, memory.events) also wake it.
uint64_t nextLevelCheckUs(std::optional<double> room_bytes, double measured_rate_bytes_per_s,
                          double assumed_rate_bytes_per_s, uint64_t min_us, uint64_t max_us);

// The host's page allocations bound every memcg's growth: a charge is a page the host allocated
// (/proc/vmstat pgalloc_*), so a domain read when the host had allocated A0 bytes, with R bytes of room
// to its threshold, cannot have crossed it while the host has allocated less than A0 + R since. One read
// of /proc/vmstat then stands in for a read of every memcg domain's memory.current. (Slab objects put on
// pages allocated earlier are charged without a new page: a few pages, covered by reading a domain
// again once half its room could be gone.)
// Whether the domain must be read again: the host has allocated at least half its room since.
bool allocationBudgetSpent(double room_bytes, uint64_t allocated_then_bytes, uint64_t allocated_now_bytes);
// The room the domain may still have: its room at the reading minus what the host allocated since.
double roomLeftBytes(double room_bytes, uint64_t allocated_then_bytes, uint64_t allocated_now_bytes);

}  // namespace oomguard::policies
