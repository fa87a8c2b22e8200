// Pure parsers over the text of kernel files. No I/O: each takes the whole content and returns a value
// or an Error naming the reason (the reader adds the path). They accept what the kernel prints on the
// versions we support, tolerate keys they do not know, and never guess at malformed content.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include "cgroupfs/result.hpp"
#include "cgroupfs/types.hpp"

namespace oomguard::cgroupfs {

// `text` without leading and trailing spaces, tabs, newlines and carriage returns: the one trim.
std::string_view trim(std::string_view text);
// A value of /proc's "Name:   1234 kB" lines ("  1234 kB" -> 1234), the one kB parser. False when
// malformed, or above 2^50 kB (1 EiB: no real memory size; sums of a few such values, turned into pages
// and points (signed long), can then never overflow).
bool parseKbValue(std::string_view value, uint64_t& out);

Result<ProcStatus> parseProcStatus(std::string_view text);
// /proc/<pid>/oom_score_adj: an integer in -1000..1000.
Result<int> parseOomScoreAdj(std::string_view text);
// A file holding one signed decimal integer and a newline (oom_score, sysctls, memory.oom.group).
Result<long> parseInteger(std::string_view text);
// /proc/<pid>/cgroup: the path of the "0::" (cgroup v2) line.
Result<std::string> parseCgroupV2Path(std::string_view text);
Result<MemInfo> parseMemInfo(std::string_view text);
Result<Pressure> parsePressure(std::string_view text);
// memory.max, memory.high, memory.low, memory.min, memory.swap.max: "max" or bytes.
Result<LimitBytes> parseLimit(std::string_view text);
Result<FlatKeyed> parseFlatKeyed(std::string_view text);
Result<MemoryEvents> parseMemoryEvents(std::string_view text);
// cgroup.procs: one pid a line, in file order.
Result<std::vector<pid_t>> parsePidList(std::string_view text);
// cgroup.controllers, cgroup.subtree_control: space separated words.
Result<std::vector<std::string>> parseWordList(std::string_view text);
Result<std::vector<BuddyZone>> parseBuddyInfo(std::string_view text);
// /proc/vmstat: the pages the host has allocated since boot, the sum of its pgalloc_* counters
// (parse_vmstat.cpp).
Result<uint64_t> parseAllocatedPages(std::string_view text);
// /proc/sys/kernel/osrelease, e.g. "6.12.117+deb12-amd64".
Result<KernelVersion> parseKernelRelease(std::string_view text);

}  // namespace oomguard::cgroupfs
