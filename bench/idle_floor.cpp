// The floor of bench/idle_footprint.sh: the least work that any daemon keeping oomguard's freshness
// contract must do on that benchmark's fixture, done with plain syscalls in one thread, so that the
// daemon's idle CPU is also given as a ratio to a floor measured in the same run. This machine's cost of
// a wake-up and of a small read sets both figures.
//
// The contract (the recommended config, default refresh interval 5 s; docs/config.md), and how the
// floor keeps it:
//   - at every refresh: the /proc listing, /proc/meminfo, /proc/pressure/memory, vm/swappiness;
//   - a process is read (status, oom_score_adj) at every refresh until two reads in a row found its
//     name, charge (Rss*, VmSwap, VmPTE) and oom_score_adj unchanged; from then on once in 6 refreshes
//     (30 s), spread by pid, as oomguard reads a quiet process;
//   - each watched cgroup's memory.max (the root has none), and each limited cgroup's cgroup.procs,
//     memory.current and memory.pressure, once in 6 refreshes, a sixth of them at each refresh;
//   - the level watch (policies/level_watch.hpp, its own functions): the host's /proc/meminfo when half
//     its room to mem_available_below could be gone at the assumed fill rate; /proc/vmstat when half
//     the smallest room left to a limited cgroup's headroom_below could be, and a cgroup's
//     memory.current again once the host has allocated half its room since the cgroup was read; each
//     between 5 ms and the refresh interval.
// It keeps /proc/vmstat, /proc/meminfo and /proc/pressure/memory open and reads them from offset 0,
// keeps /proc open for its listing, opens the rest relative to a directory descriptor (/proc, the
// tree), does each wake-up's due work at once, and sleeps with clock_nanosleep (no event loop, no timers
// to re-arm). It parses only what the contract needs (a process's charge to tell a quiet one,
// pgalloc_*, MemAvailable, the memcg numbers), with cgroupfs's parsers as the daemon does; it ranks
// nothing and exports nothing: a lower bound, not an implementation.
//
// Usage: bench_idle_floor TREE [HEADROOM_BELOW] [ASSUMED_MIB_S] [REFRESHES_PER_CYCLE]
// (REFRESHES_PER_CYCLE, default 6: what a looser contract, each quiet file once in N refreshes, would
// cost.) The rules are the recommended config's: headroom_below (default 0.10) on every limited cgroup,
// mem_available_below 0.10 on the host. Runs until killed; prints its plan at start.
#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <exception>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <unordered_map>
#include <vector>

#include "cgroupfs/parse.hpp"
#include "policies/level_watch.hpp"

namespace {

constexpr uint64_t kRefreshUs = 5'000'000;
constexpr uint64_t kMinDelayUs = 5'000;
constexpr uint64_t kAfterCrossingUs = 100'000;
constexpr uint32_t kQuietReads = 2;
constexpr double kHostAvailableBelow = 0.10;
std::array<char, 16384> buffer;

// The text of the file `relative` to `dir_fd` (open, read to its end, close); empty when it cannot be
// opened or read.
std::string_view readAt(int dir_fd, const char* relative) {
  const int fd = openat(dir_fd, relative, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return {};
  }
  size_t total = 0;
  ssize_t got = 0;
  while (total < buffer.size() - 1 &&
         (got = read(fd, buffer.data() + total, buffer.size() - 1 - total)) > 0) {
    total += static_cast<size_t>(got);
  }
  close(fd);
  buffer[total] = '\0';
  return {buffer.data(), total};
}

// The text of a kept /proc file, read again from offset 0.
std::string_view readKept(int fd) {
  size_t total = 0;
  ssize_t got = 0;
  while (total < buffer.size() - 1 &&
         (got = pread(fd, buffer.data() + total, buffer.size() - 1 - total, static_cast<off_t>(total))) > 0) {
    total += static_cast<size_t>(got);
  }
  buffer[total] = '\0';
  return {buffer.data(), total};
}

// A process's ranking inputs: name, charge and oom_score_adj, as cgroupfs parses them; nullopt when a
// file cannot be read (a process gone). Quiet when two reads in a row are equal (the comparison is
// guardian/daemon/rankings.cpp's sameAsBefore, private to the daemon).
using Charge = std::tuple<std::string, bool, uint64_t, uint64_t, uint64_t, uint64_t, uint64_t, int>;
std::optional<Charge> chargeOf(int proc_fd, const std::string& pid) {
  auto status = oomguard::cgroupfs::parseProcStatus(readAt(proc_fd, (pid + "/status").c_str()));
  const auto adj = oomguard::cgroupfs::parseOomScoreAdj(readAt(proc_fd, (pid + "/oom_score_adj").c_str()));
  if (!status || !adj) {
    return std::nullopt;
  }
  auto& value = status.value();
  return Charge{std::move(value.comm), value.has_mm,  value.rss_anon_kb, value.rss_file_kb,
                value.rss_shmem_kb,    value.swap_kb, value.pgtables_kb, adj.value()};
}

// A memory.max or memory.current value in bytes; 0 when it cannot be read or is "max".
double bytesIn(int tree_fd, const std::string& path) {
  const auto value = oomguard::cgroupfs::parseLimit(readAt(tree_fd, path.c_str()));
  return value && value.value() ? static_cast<double>(*value.value()) : 0.0;
}

uint64_t monotonicUs() {
  timespec now{};
  clock_gettime(CLOCK_MONOTONIC, &now);
  return static_cast<uint64_t>(now.tv_sec) * 1'000'000 + static_cast<uint64_t>(now.tv_nsec) / 1'000;
}

void sleepUntilUs(uint64_t at_us) {
  const timespec at{static_cast<time_t>(at_us / 1'000'000), static_cast<long>(at_us % 1'000'000) * 1'000};
  while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &at, nullptr) == EINTR) {
  }
}

struct Limited {
  std::string relative;
  double max_bytes = 0;
  double room_bytes = 0;              // to the threshold at its last reading
  uint64_t allocated_then_bytes = 0;  // the host's allocations then
};

struct Process {
  ino_t inode = 0;  // of /proc/<pid>
  std::optional<Charge> charge;
  uint32_t quiet_reads = 0;
};

// The benchmark; never returns but on a bad argument or tree.
int run(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr,
                 "usage: bench_idle_floor TREE [HEADROOM_BELOW] [ASSUMED_MIB_S] [REFRESHES_PER_CYCLE]\n");
    return 2;
  }
  const std::string tree = argv[1];
  const double headroom_below = argc > 2 ? std::strtod(argv[2], nullptr) : 0.10;
  const double assumed_rate = std::max(1.0, argc > 3 ? std::strtod(argv[3], nullptr) : 512.0) * 1024 * 1024;
  const uint64_t refreshes_per_cycle = std::max(1UL, argc > 4 ? std::strtoul(argv[4], nullptr, 10) : 6UL);
  const int tree_fd = open(tree.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
  const int proc_fd = open("/proc", O_PATH | O_DIRECTORY | O_CLOEXEC);
  const int vmstat_fd = open("/proc/vmstat", O_RDONLY | O_CLOEXEC);
  const int meminfo_fd = open("/proc/meminfo", O_RDONLY | O_CLOEXEC);
  const int pressure_fd = open("/proc/pressure/memory", O_RDONLY | O_CLOEXEC);
  DIR* const proc_dir = opendir("/proc");  // listed again at each refresh (rewinddir)
  if (tree_fd < 0 || proc_fd < 0 || vmstat_fd < 0 || meminfo_fd < 0) {
    std::fprintf(stderr, "bench_idle_floor: cannot open %s or /proc\n", tree.c_str());
    return 2;
  }
  const auto page_bytes = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
  auto allocatedBytes = [&] {
    const auto pages = oomguard::cgroupfs::parseAllocatedPages(readKept(vmstat_fd));
    return (pages ? pages.value() : 0) * page_bytes;
  };

  // The watched cgroups below the root (every directory: the daemon watches them all) and the limited
  // ones (a number in memory.max), with their room to the threshold.
  std::vector<std::string> watched;
  std::vector<Limited> limited;
  std::error_code error;
  for (std::filesystem::recursive_directory_iterator it(tree, error), end; !error && it != end;
       it.increment(error)) {
    if (!it->is_directory(error)) {
      continue;
    }
    const std::string relative = std::filesystem::relative(it->path(), tree, error).string();
    watched.push_back(relative);
    Limited cgroup{relative, bytesIn(tree_fd, relative + "/memory.max")};
    if (cgroup.max_bytes <= 0) {
      continue;
    }
    const double current = bytesIn(tree_fd, relative + "/memory.current");
    cgroup.room_bytes = std::max(0.0, cgroup.max_bytes * (1 - headroom_below) - current);
    limited.push_back(cgroup);
  }
  if (limited.empty()) {
    std::fprintf(stderr, "bench_idle_floor: no limited cgroup under %s\n", tree.c_str());
    return 2;
  }

  std::unordered_map<long, Process> processes;
  oomguard::policies::FillRate allocation_rate;
  oomguard::policies::FillRate host_rate;
  uint64_t refresh = 0;
  const uint64_t start_us = monotonicUs();
  uint64_t refresh_due_us = start_us;
  uint64_t tick_due_us = start_us;
  uint64_t host_due_us = start_us;
  for (;;) {
    const uint64_t now_us = std::max(monotonicUs(), std::min({refresh_due_us, tick_due_us, host_due_us}));
    sleepUntilUs(now_us);
    const bool refreshing = now_us >= refresh_due_us;
    if (refreshing || now_us >= host_due_us) {  // the host's level (and the refresh's /proc/meminfo)
      const auto meminfo = oomguard::cgroupfs::parseMemInfo(readKept(meminfo_fd));
      const double room = meminfo
                              ? (static_cast<double>(meminfo.value().mem_available_kb.value_or(0)) -
                                 kHostAvailableBelow * static_cast<double>(meminfo.value().mem_total_kb)) *
                                    1024
                              : 0.0;
      const double left = std::max(room, 0.0);
      host_rate.sample(now_us, left);
      // Crossed: the daemon decides, then reads again after 100 ms (kAfterCrossingUs).
      host_due_us =
          now_us + (left <= 0 ? kAfterCrossingUs
                              : oomguard::policies::nextLevelCheckUs(left, host_rate.bytesPerSecond(),
                                                                     assumed_rate, kMinDelayUs, kRefreshUs));
    }
    const uint64_t slice = refresh % refreshes_per_cycle;
    if (refreshing) {
      if (pressure_fd >= 0) {
        readKept(pressure_fd);
      }
      readAt(proc_fd, "sys/vm/swappiness");
      if (proc_dir != nullptr) {
        rewinddir(proc_dir);
        std::unordered_map<long, Process> listed;
        while (const dirent* entry = readdir(proc_dir)) {
          if (std::isdigit(static_cast<unsigned char>(entry->d_name[0])) == 0) {
            continue;
          }
          const long pid = std::strtol(entry->d_name, nullptr, 10);
          Process& process = listed[pid];
          // The same process as at the last refresh: the same /proc inode (a pid may be reused).
          if (const auto known = processes.find(pid);
              known != processes.end() && known->second.inode == entry->d_ino) {
            process = std::move(known->second);
          }
          process.inode = entry->d_ino;
          if (process.quiet_reads >= kQuietReads &&
              static_cast<uint64_t>(pid) % refreshes_per_cycle != slice) {
            continue;
          }
          auto charge = chargeOf(proc_fd, entry->d_name);
          process.quiet_reads = charge && charge == process.charge ? process.quiet_reads + 1 : 0;
          process.charge = std::move(charge);
        }
        processes = std::move(listed);
      }
      for (size_t i = slice; i < watched.size(); i += refreshes_per_cycle) {
        readAt(tree_fd, (watched[i] + "/memory.max").c_str());
      }
      refresh_due_us = now_us + kRefreshUs;
      ++refresh;
    }
    if (!refreshing && now_us < tick_due_us) {
      continue;
    }
    // The level watch's tick (at a refresh too: the safety-net reads of this refresh's sixth).
    const uint64_t allocated = allocatedBytes();
    allocation_rate.sample(now_us, -static_cast<double>(allocated));
    double smallest_left = 1e300;
    for (size_t i = 0; i < limited.size(); ++i) {
      Limited& cgroup = limited[i];
      const bool net = refreshing && i % refreshes_per_cycle == slice;
      if (net) {
        readAt(tree_fd, (cgroup.relative + "/cgroup.procs").c_str());
        readAt(tree_fd, (cgroup.relative + "/memory.pressure").c_str());
      }
      if (net || oomguard::policies::allocationBudgetSpent(cgroup.room_bytes, cgroup.allocated_then_bytes,
                                                           allocated)) {
        const double current = bytesIn(tree_fd, cgroup.relative + "/memory.current");
        cgroup.room_bytes = std::max(0.0, cgroup.max_bytes * (1 - headroom_below) - current);
        cgroup.allocated_then_bytes = allocated;
      }
      smallest_left = std::min(smallest_left, oomguard::policies::roomLeftBytes(
                                                  cgroup.room_bytes, cgroup.allocated_then_bytes, allocated));
    }
    const uint64_t delay_us =
        oomguard::policies::nextLevelCheckUs(std::max(smallest_left, 0.0), allocation_rate.bytesPerSecond(),
                                             assumed_rate, kMinDelayUs, kRefreshUs);
    tick_due_us = now_us + delay_us;
    if (refreshing && refresh == 1) {  // the first wake-up, which is a refresh
      std::printf(
          "idle floor: %zu watched cgroups, %zu limited, %zu processes; quiet files once in %lu "
          "refreshes of 5 s; the level watch's first tick %.1f ms\n",
          watched.size(), limited.size(), processes.size(), static_cast<unsigned long>(refreshes_per_cycle),
          static_cast<double>(delay_us) / 1e3);
      std::fflush(stdout);
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& error) {
    std::fprintf(stderr, "bench_idle_floor: %s\n", error.what());
    return 1;
  }
}
