// The cgroup v2 interface files oomguard reads and writes, by name (Documentation/admin-guide/cgroup-v2.rst).
#pragma once

namespace oomguard::cgroupfs::files {

inline constexpr const char* kProcs = "cgroup.procs";          // the member pids, one per line
inline constexpr const char* kEvents = "cgroup.events";        // populated 0|1, frozen 0|1
inline constexpr const char* kMemoryMax = "memory.max";        // the limit: bytes or "max"
inline constexpr const char* kMemorySwapMax = "memory.swap.max";
inline constexpr const char* kMemoryHigh = "memory.high";      // the throttling level: bytes or "max"
inline constexpr const char* kMemoryCurrent = "memory.current";  // the charge, bytes
inline constexpr const char* kMemoryEvents = "memory.events";    // hierarchical counters
inline constexpr const char* kMemoryEventsLocal = "memory.events.local";
inline constexpr const char* kMemoryOomGroup = "memory.oom.group";  // 0|1

}  // namespace oomguard::cgroupfs::files
