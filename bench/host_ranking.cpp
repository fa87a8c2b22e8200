// Whole-host ranking cost against its floor.
//
// Spawns N idle processes (default 5000), then times, interleaved over R rounds:
//   floor:   list /proc, then open+read (one)+close /proc/<pid>/status and /proc/<pid>/oom_score_adj per pid
//            (the least any ranking must do);
//   floor3:  the same plus /proc/<pid>/oom_score (the least `top --all --kernel-scores` must do: it
//            shows the kernel's own score beside the model's);
//   ranking: guardian::Node::rankHost(): the same reads (each <pid>/<file> under a held /proc handle), parsing,
//            the badness model and the sort;
//   top:     the whole `oomguard top --all --json` (output discarded): the ranking, each process's
//            cgroup (from one walk of the cgroup tree) and the JSON;
//   top-ks:  the same with --kernel-scores (each process's oom_score as the kernel shows it), against
//            floor3.
// Prints the medians and their ratios to the floor. Target: both <= 1.3. Every spawned process is killed
// and reaped.
//
// Usage: bench_host_ranking [--processes N] [--rounds R] [--proc-root DIR] [--cgroup-root DIR]
//   (--cgroup-root defaults to /sys/fs/cgroup where it is cgroup2, else /sys/fs/cgroup/unified)
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "guardian/cli/commands.hpp"
#include "guardian/io/node.hpp"
#include "idle_processes.hpp"

namespace {

using oomguard::bench::reap;
using oomguard::bench::spawnIdle;
using Clock = std::chrono::steady_clock;

// The floor: no parsing, no model, just the reads per pid (status and oom_score_adj; `with_score`:
// oom_score too, the third file `top` shows).
size_t floorPass(const std::string& proc_root, std::vector<char>& buffer, bool with_score = false) {
  oomguard::cgroupfs::ProcFs procfs(proc_root);
  const auto pids = procfs.listPids();
  size_t bytes = 0;
  if (!pids) {
    return 0;
  }
  std::string path;
  for (const pid_t pid : pids.value()) {
    for (const char* name : {"/status", "/oom_score_adj", "/oom_score"}) {
      if (!with_score && std::string_view(name) == "/oom_score") {
        continue;
      }
      path = proc_root + "/" + std::to_string(pid) + name;
      const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
      if (fd < 0) {
        continue;
      }
      // One read each: these files are made in one piece, so a read shorter than the buffer is all of
      // it (cgroupfs::producedWhole; the ranking reads them the same way).
      ssize_t got = 0;
      while ((got = ::read(fd, buffer.data(), buffer.size())) > 0) {
        bytes += static_cast<size_t>(got);
        if (static_cast<size_t>(got) < buffer.size()) {
          break;
        }
      }
      ::close(fd);
    }
  }
  return bytes;
}

double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  return values[values.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  size_t processes = 5000;
  int rounds = 15;
  std::string proc_root = "/proc";
  std::string cgroup_root = std::filesystem::exists("/sys/fs/cgroup/cgroup.controllers") ? "/sys/fs/cgroup"
                                                                                          : "/sys/fs/cgroup/unified";
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    if (flag == "--processes") {
      processes = std::strtoul(argv[i + 1], nullptr, 10);
    } else if (flag == "--rounds") {
      rounds = std::atoi(argv[i + 1]);
    } else if (flag == "--proc-root") {
      proc_root = argv[i + 1];
    } else if (flag == "--cgroup-root") {
      cgroup_root = argv[i + 1];
    } else {
      std::fprintf(stderr, "unknown flag %s\n", flag.c_str());
      return 2;
    }
  }
  const auto spawned = spawnIdle(processes);
  oomguard::guardian::io::Node node(proc_root, cgroup_root);
  const auto facts = node.readFacts();
  if (!facts) {
    reap(spawned);
    std::fprintf(stderr, "%s\n", facts.error().describe().c_str());
    return 1;
  }
  std::vector<char> buffer(4096);
  std::vector<double> floor_ms;
  std::vector<double> floor3_ms;
  std::vector<double> ranking_ms;
  std::vector<double> top_ms;
  size_t top_bytes = 0;
  // `oomguard top --all --json`, as the command runs it: a fresh Node each time (no cache carried over).
  auto top_all = [&](bool kernel_scores) {
    oomguard::guardian::io::Node fresh(proc_root, cgroup_root);
    std::ostringstream out;
    std::ostringstream err;
    oomguard::guardian::cli::runTop(fresh, {true, 0, "host", false, kernel_scores}, out, err);
    top_bytes = out.str().size();
  };
  std::vector<double> top_ks_ms;
  size_t ranked = 0;
  size_t sink = 0;
  // One warm-up of each, then interleaved rounds so drift on a shared machine hits both alike.
  sink += floorPass(proc_root, buffer);
  ranked = node.rankHost(facts.value(), false).candidates.size();
  top_all(true);
  top_all(false);
  for (int round = 0; round < rounds; ++round) {
    auto start = Clock::now();
    sink += floorPass(proc_root, buffer);
    floor_ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - start).count());
    start = Clock::now();
    sink += floorPass(proc_root, buffer, true);
    floor3_ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - start).count());
    start = Clock::now();
    const auto ranking = node.rankHost(facts.value(), false);
    ranking_ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - start).count());
    ranked = ranking.candidates.size();
    start = Clock::now();
    top_all(true);
    top_ks_ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - start).count());
    start = Clock::now();
    top_all(false);
    top_ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - start).count());
  }
  reap(spawned);
  const double floor_median = median(floor_ms);
  const double ranking_median = median(ranking_ms);
  const double ratio = ranking_median / floor_median;
  const double top_median = median(top_ms);
  const double top_ratio = top_median / floor_median;
  std::printf("host ranking: %zu spawned, %zu processes ranked, %d rounds (%zu bytes read by the floor)\n",
              spawned.size(), ranked, rounds, sink);
  std::printf("  floor   (open+read status and oom_score_adj)  median %8.2f ms\n", floor_median);
  std::printf("  ranking (read, parse, model, sort)             median %8.2f ms\n", ranking_median);
  std::printf("  top --all --json (%zu bytes, cgroups from %s) median %8.2f ms\n", top_bytes, cgroup_root.c_str(),
              top_median);
  std::printf("  ratio ranking/floor %.3f (target <= 1.30): %s\n", ratio, ratio <= 1.3 ? "met" : "NOT met");
  std::printf("  ratio top/floor     %.3f (target <= 1.30): %s\n", top_ratio, top_ratio <= 1.3 ? "met" : "NOT met");
  // --kernel-scores shows the kernel's own oom_score beside the model's: a third file per pid that the
  // floor above does not read. Against the floor of its own three reads:
  const double floor3_median = median(floor3_ms);
  const double top_ks_median = median(top_ks_ms);
  std::printf("  floor3  (status, oom_score_adj and oom_score)  median %8.2f ms\n", floor3_median);
  std::printf("  top --all --json --kernel-scores               median %8.2f ms; ratio to floor3 %.3f\n",
              top_ks_median, top_ks_median / floor3_median);
  return 0;
}
