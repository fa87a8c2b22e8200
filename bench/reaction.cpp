// The daemon's reaction path: from an event arriving on the loop to the kill signal sent.
//
// Builds a cgroup tree in a temporary directory with 500 cgroups (50 parents x 10 limited leaves), each
// leaf holding 10 of 5,000 spawned idle processes (real /proc), runs the daemon on it in this process in
// mode act (rule: kill-worst on every memory.events "max" rise; the storm guard raised to its maximum,
// 1,000 kills a minute), with the real actuator, and rewrites leaf memory.events files (a rise of "max",
// as the kernel reports a limit hit) E times. Each rewrite reaches the loop through inotify, like the
// kernel's own notification; the daemon re-reads the leaf's domain (its cgroup files and 10 processes),
// ranks it, pins the worst process, checks it is still the one chosen, sends SIGKILL through the pidfd
// and calls process_mrelease, and logs a decision with reaction_us (event -> action done). The victims
// are this benchmark's own idle children, so a kill here hits nothing else.
// The floor, measured in the same run: the raw reads a decision needs (memory.events, memory.max,
// cgroup.procs, and status + oom_score_adj of the 10 processes), without parsing, ranking or the kill.
// Prints p50/p99 of both and their ratio. Target: p99 of event -> kill <= 1 ms.
//
// Usage: bench_reaction [--processes N] [--events E]   (E <= 1000: the storm guard's minute)
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "guardian/daemon/daemon.hpp"
#include "guardian/io/actuator.hpp"
#include "idle_processes.hpp"

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

void writeFile(const fs::path& path, const std::string& text) {
  std::ofstream out(path);
  out << text;
}

std::string eventsText(uint64_t max) {
  return "low 0\nhigh 0\nmax " + std::to_string(max) + "\noom 0\noom_kill 0\noom_group_kill 0\n";
}

double percentile(std::vector<double> values, double fraction) {
  if (values.empty()) {
    return 0;
  }
  std::sort(values.begin(), values.end());
  return values[static_cast<size_t>(fraction * static_cast<double>(values.size() - 1))];
}

size_t readWhole(const std::string& path, std::vector<char>& buffer) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return 0;
  }
  size_t total = 0;
  ssize_t got = 0;
  while ((got = ::read(fd, buffer.data(), buffer.size())) > 0) {
    total += static_cast<size_t>(got);
  }
  ::close(fd);
  return total;
}

}  // namespace

int main(int argc, char** argv) {
  size_t processes = 5000;
  size_t events = 1000;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    if (flag == "--processes") {
      processes = std::strtoul(argv[i + 1], nullptr, 10);
    } else if (flag == "--events") {
      events = std::strtoul(argv[i + 1], nullptr, 10);
    }
  }
  constexpr size_t kParents = 50;
  constexpr size_t kLeavesPerParent = 10;
  const auto pids = oomguard::bench::spawnIdle(processes);
  const fs::path root = fs::temp_directory_path() / ("oomguard-bench-" + std::to_string(::getpid()));
  fs::create_directories(root);
  writeFile(root / "cgroup.procs", "");
  std::vector<fs::path> leaves;
  size_t next_pid = 0;
  for (size_t p = 0; p < kParents; ++p) {
    const fs::path parent = root / ("parent" + std::to_string(p));
    fs::create_directories(parent);
    writeFile(parent / "cgroup.procs", "");
    writeFile(parent / "memory.max", "max\n");
    writeFile(parent / "memory.events", eventsText(0));
    for (size_t l = 0; l < kLeavesPerParent; ++l) {
      const fs::path leaf = parent / ("leaf" + std::to_string(l));
      fs::create_directories(leaf);
      std::string procs;
      for (size_t k = 0; k < processes / (kParents * kLeavesPerParent) && next_pid < pids.size(); ++k) {
        procs += std::to_string(pids[next_pid++]) + "\n";
      }
      writeFile(leaf / "cgroup.procs", procs);
      writeFile(leaf / "memory.max", "268435456\n");
      // At its limit, as a kernel cgroup whose "max" rises is: a decision judges the event against it,
      // and makes no kill when it cannot be read.
      writeFile(leaf / "memory.current", "268435456\n");
      writeFile(leaf / "memory.swap.max", "0\n");
      writeFile(leaf / "memory.oom.group", "0\n");
      writeFile(leaf / "memory.events", eventsText(0));
      leaves.push_back(leaf);
    }
  }

  oomguard::guardian::config::Config config;
  config.refresh_interval_s = 3600;  // only the initial ranking: nothing in the background meanwhile
  config.read_kmsg = false;
  config.history = std::nullopt;  // no kill history in the host's /var/lib
  config.host_pressure.reset();
  config.mode = oomguard::guardian::config::Mode::kAct;
  config.max_kills_per_minute = 1000;
  events = std::min<size_t>(events, config.max_kills_per_minute);
  config.cgroups = {oomguard::guardian::config::defaultCgroupRule()};
  config.cgroups.front().pressure.reset();
  oomguard::guardian::config::ActRule act;
  act.action = oomguard::policies::Action::kKillWorst;
  act.when.on_memory_max = true;
  config.cgroups.front().act = act;
  oomguard::guardian::daemon::DaemonOptions options;
  options.cgroup_root = root.string();
  options.handle_signals = false;
  options.protect_self = false;
  std::ostringstream log_text;
  std::ostringstream summary;
  oomguard::guardian::io::EventLog log(log_text, [] { return std::chrono::system_clock::now(); });
  boost::asio::io_context io(1);
  oomguard::guardian::exporter::NullMetrics metrics;
  oomguard::guardian::io::SystemActuator actuator(io, "/proc", root.string());
  oomguard::guardian::daemon::Daemon daemon(io, config, options, log, metrics, actuator, summary);
  daemon.start();
  std::thread loop([&] { io.run(); });

  // Events: rewrite a random leaf's memory.events with one more "max", paced so each is handled alone.
  std::mt19937 random(42);
  std::vector<uint64_t> counters(leaves.size(), 0);
  std::vector<char> buffer(8192);
  std::vector<double> floor_us;
  for (size_t i = 0; i < events; ++i) {
    const size_t leaf = random() % leaves.size();
    writeFile(leaves[leaf] / "memory.events", eventsText(++counters[leaf]));
    std::this_thread::sleep_for(std::chrono::microseconds(1500));
    // The floor for the same leaf (between events, so the two never overlap).
    const auto start = Clock::now();
    size_t bytes = readWhole((leaves[leaf] / "memory.events").string(), buffer);
    bytes += readWhole((leaves[leaf] / "memory.max").string(), buffer);
    bytes += readWhole((leaves[leaf] / "cgroup.procs").string(), buffer);
    const size_t first = leaf * (processes / leaves.size());
    for (size_t k = 0; k < processes / leaves.size(); ++k) {
      const std::string dir = "/proc/" + std::to_string(pids[first + k]);
      bytes += readWhole(dir + "/status", buffer) + readWhole(dir + "/oom_score_adj", buffer);
    }
    floor_us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - start).count());
    (void)bytes;
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  boost::asio::post(io, [&] { daemon.stop(); });
  loop.join();

  // Only the decisions that killed: a decision in a leaf whose earlier victim is still being released
  // waits on it (one OOM, one victim), and a wait is not the act path.
  std::vector<double> reaction_us;
  size_t decisions = 0;
  std::istringstream lines(log_text.str());
  std::string line;
  while (std::getline(lines, line)) {
    if (line.find("\"event\":\"decision\"") != std::string::npos) {
      ++decisions;
    }
    if (line.find("\"event\":\"decision\"") != std::string::npos &&
        line.find("\"result\":\"killed\"") != std::string::npos) {
      const auto at = line.find("\"reaction_us\":");
      if (at != std::string::npos) {
        reaction_us.push_back(std::stod(line.substr(at + 14)));
      }
    }
  }
  oomguard::bench::reap(pids);
  std::error_code ignored;
  fs::remove_all(root, ignored);

  const double p50 = percentile(reaction_us, 0.50);
  const double p99 = percentile(reaction_us, 0.99);
  const double floor_p50 = percentile(floor_us, 0.50);
  const double floor_p99 = percentile(floor_us, 0.99);
  std::printf("reaction path: %zu processes, %zu cgroups watched (%zu limited), %zu events written, %zu decisions, "
              "%zu kills\n",
              pids.size(), daemon.watchedCgroups().size(), leaves.size(), events, decisions, reaction_us.size());
  std::printf("  kill (event on the loop -> SIGKILL sent)  p50 %7.1f us  p99 %7.1f us\n", p50, p99);
  std::printf("  floor (the same reads, raw)               p50 %7.1f us  p99 %7.1f us\n", floor_p50, floor_p99);
  std::printf("  ratio p50 %.2f, p99 %.2f; target p99 <= 1000 us: %s\n", p50 / floor_p50, p99 / floor_p99,
              p99 <= 1000 ? "met" : "NOT met");
  if (reaction_us.size() * 2 < events) {
    std::printf("  FAILED: %zu kills for %zu events (the act path did not run)\n", reaction_us.size(), events);
    return 1;
  }
  return 0;
}
