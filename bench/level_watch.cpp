// The adaptive level watch: from a leak crossing a level threshold to oomguard's kill, at several fill
// rates. The one figure no other benchmark has: the time a level threshold stays crossed before a check
// reads it (the reaction benchmark starts its clock when an event reaches the loop).
//
// A cgroup tree in a temporary directory: one limited leaf (memory.max 256 MiB, swap.max 0) holding 20
// spawned idle processes (real /proc). The daemon runs in this process in mode act with the real
// actuator and the config a user writes: default refresh (5 s), default assumed fill rate, one rule
// `{"act": {"action": "kill-worst", "when": {"headroom_below": 0.15}}}` (the threshold at 217.6 MiB).
// The storm guard is raised to 100 kills a minute: the trials run back to back, and each kills one of
// this benchmark's own idle children, so nothing else is hit. Nothing but the level watch wakes the
// daemon: no memory.events rise and no PSI trigger (the files are not the kernel's).
// Each trial: memory.current rests at 128 MiB for 1.5 s (the watch slows down to its far-from-threshold
// rate), then this thread leaks for real at R MiB/s: it allocates and touches the memory (so the host's
// own counters see it, as the watch reads them) and writes the sum to memory.current every 0.5 ms (as
// the kernel's counter is read: the latest value), until the kill is logged or the leak reaches
// memory.max. The crossing's time is when the first value past the threshold was written; the kill's
// time is when its decision line reaches the log (after the action). Reported per rate: the median and worst
// crossing -> kill, and the worst share of the threshold's headroom (memory.max - threshold) the leak
// used before the kill (>= 100%: the kernel's limit was reached first). The leak advances at its rate
// only while its thread runs (at most 10 ms of leak a step): a stalled leak thread pauses the leak, as a
// real leaker's would, instead of writing what it missed in one jump; its longest stall is reported.
//
// Usage: bench_level_watch [--trials N] [--rates R1,R2,...]   (rates in MiB/s; default 3 x 50,500,2000)
#include <algorithm>
#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>
#include <streambuf>
#include <string>
#include <thread>
#include <vector>

#include "guardian/daemon/daemon.hpp"
#include "guardian/io/actuator.hpp"
#include "idle_processes.hpp"

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
constexpr double kMiB = 1024.0 * 1024.0;

// The daemon's log, each line stamped with the steady clock when its newline arrives (EventLog flushes
// every line as it is written).
class StampedLines final : public std::streambuf {
 public:
  size_t count() {
    std::lock_guard lock(mutex_);
    return lines_.size();
  }
  std::pair<Clock::time_point, std::string> at(size_t index) {
    std::lock_guard lock(mutex_);
    return lines_.at(index);
  }

 protected:
  int overflow(int c) override {
    if (c != traits_type::eof()) {
      const char ch = static_cast<char>(c);
      xsputn(&ch, 1);
    }
    return c;
  }
  std::streamsize xsputn(const char* text, std::streamsize size) override {
    std::lock_guard lock(mutex_);
    for (std::streamsize i = 0; i < size; ++i) {
      if (text[i] == '\n') {
        lines_.emplace_back(Clock::now(), std::move(current_));
        current_.clear();
      } else {
        current_ += text[i];
      }
    }
    return size;
  }

 private:
  std::mutex mutex_;
  std::string current_;
  std::vector<std::pair<Clock::time_point, std::string>> lines_;
};

void writeFile(const fs::path& path, const std::string& text) {
  std::ofstream out(path);
  out << text;
}

// memory.current as the kernel shows it: every read sees a whole value (written aside, then renamed
// over the file; a truncate-and-write would let a reader see it empty).
void writeCurrent(const fs::path& path, uint64_t bytes) {
  const fs::path aside = path.string() + ".new";
  writeFile(aside, std::to_string(bytes) + "\n");
  fs::rename(aside, path);
}

struct Trial {
  double crossing_to_kill_ms = 0;  // from the first memory.current written at or past the threshold
  double rate_reached_mib_s = 0;
  double headroom_used = 0;  // of (max - threshold), at the kill; >= 1: the limit came first
  double longest_stall_ms = 0;  // the longest time the leak thread went between two steps
  bool killed = false;
};

double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  return values.empty() ? 0 : values[values.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  size_t trials = 3;
  std::vector<double> rates_mib_s = {50, 500, 2000};
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    if (flag == "--trials") {
      trials = std::strtoul(argv[i + 1], nullptr, 10);
    } else if (flag == "--rates") {
      rates_mib_s.clear();
      std::stringstream list(argv[i + 1]);
      for (std::string rate; std::getline(list, rate, ',');) {
        rates_mib_s.push_back(std::stod(rate));
      }
    }
  }
  constexpr double kMaxBytes = 256 * kMiB;
  constexpr double kHeadroomBelow = 0.15;
  constexpr double kThresholdBytes = kMaxBytes * (1 - kHeadroomBelow);
  constexpr double kRestBytes = 128 * kMiB;
  const auto pids = oomguard::bench::spawnIdle(std::max<size_t>(20, trials * rates_mib_s.size() + 2));
  const fs::path root = fs::temp_directory_path() / ("oomguard-bench-level-" + std::to_string(::getpid()));
  const fs::path leaf = root / "leaf";
  fs::create_directories(leaf);
  writeFile(root / "cgroup.procs", "");
  std::string procs;
  for (const pid_t pid : pids) {
    procs += std::to_string(pid) + "\n";
  }
  writeFile(leaf / "cgroup.procs", procs);
  writeFile(leaf / "memory.max", std::to_string(static_cast<uint64_t>(kMaxBytes)) + "\n");
  writeFile(leaf / "memory.swap.max", "0\n");
  writeFile(leaf / "memory.oom.group", "0\n");
  writeFile(leaf / "memory.events", "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\noom_group_kill 0\n");
  const fs::path current_file = leaf / "memory.current";
  writeCurrent(current_file, static_cast<uint64_t>(kRestBytes));

  namespace config = oomguard::guardian::config;
  config::Config cfg;  // the defaults, as a user's config leaves them
  cfg.mode = config::Mode::kAct;
  cfg.read_kmsg = false;
  cfg.history = std::nullopt;  // no kill history in the host's /var/lib
  cfg.host_pressure.reset();
  cfg.max_kills_per_minute = 100;
  cfg.cgroups = {config::defaultCgroupRule()};
  cfg.cgroups.front().pressure.reset();
  config::ActRule act;
  act.action = oomguard::policies::Action::kKillWorst;
  act.when.headroom_below = kHeadroomBelow;
  cfg.cgroups.front().act = act;
  oomguard::guardian::daemon::DaemonOptions options;
  options.cgroup_root = root.string();
  options.handle_signals = false;
  options.protect_self = false;
  StampedLines stamped;
  std::ostream log_stream(&stamped);
  std::ostringstream summary;
  oomguard::guardian::io::EventLog log(log_stream, [] { return std::chrono::system_clock::now(); });
  boost::asio::io_context io(1);
  oomguard::guardian::exporter::NullMetrics metrics;
  oomguard::guardian::io::SystemActuator actuator(io, "/proc", root.string());
  oomguard::guardian::daemon::Daemon daemon(io, cfg, options, log, metrics, actuator, summary);
  daemon.start();
  std::thread loop([&] { io.run(); });

  std::vector<std::vector<Trial>> results(rates_mib_s.size());
  for (size_t t = 0; t < trials; ++t) {
    for (size_t r = 0; r < rates_mib_s.size(); ++r) {
      const double rate_bytes_s = rates_mib_s[r] * kMiB;
      writeCurrent(current_file, static_cast<uint64_t>(kRestBytes));
      std::this_thread::sleep_for(std::chrono::milliseconds(1500));
      const size_t lines_before = stamped.count();
      const auto start = Clock::now();
      // The leak is real: the bytes written to memory.current are allocated and touched here first, so
      // the host's own counters (/proc/vmstat, which the watch reads) see it as they would a real leak.
      std::vector<std::unique_ptr<char[]>> leaked;
      double leaked_bytes = 0;
      std::optional<Clock::time_point> crossing;
      Trial trial;
      // The leak's own clock: it advances with real time but at most kLeakStepMaxS a step, so a leak
      // thread the machine did not run for a while resumes at its rate instead of writing the whole
      // missed stretch at once (a real leaker that is not scheduled does not allocate; a jump of tens of
      // MiB in one write is no rate at all). The rate reached is reported.
      constexpr double kLeakStepMaxS = 0.010;
      double leak_s = 0;
      auto last_step = start;
      for (;;) {
        const auto step_at = Clock::now();
        const double elapsed_s = std::chrono::duration<double>(step_at - start).count();
        const double step_s = std::chrono::duration<double>(step_at - last_step).count();
        trial.longest_stall_ms = std::max(trial.longest_stall_ms, step_s * 1000);
        leak_s += std::min(step_s, kLeakStepMaxS);
        last_step = step_at;
        const double target = std::min(kMaxBytes - kRestBytes, rate_bytes_s * leak_s);
        if (target > leaked_bytes) {
          const auto chunk = static_cast<size_t>(target - leaked_bytes);
          leaked.push_back(std::make_unique<char[]>(chunk));
          std::memset(leaked.back().get(), 1, chunk);
          leaked_bytes += static_cast<double>(chunk);
        }
        writeCurrent(current_file, static_cast<uint64_t>(kRestBytes + leaked_bytes));
        if (!crossing && kRestBytes + leaked_bytes >= kThresholdBytes) {
          crossing = Clock::now();
        }
        bool done = false;
        for (size_t i = lines_before; i < stamped.count(); ++i) {
          const auto [at, line] = stamped.at(i);
          if (line.find("\"event\":\"decision\"") != std::string::npos &&
              line.find("\"result\":\"killed\"") != std::string::npos) {
            trial.killed = true;
            trial.crossing_to_kill_ms =
                crossing ? std::chrono::duration<double, std::milli>(at - *crossing).count() : 0;
            trial.headroom_used = (kRestBytes + leaked_bytes - kThresholdBytes) / (kMaxBytes - kThresholdBytes);
            done = true;
            break;
          }
        }
        if (done || leak_s > (kMaxBytes - kRestBytes) / rate_bytes_s + 6.0 || elapsed_s > 60) {
          break;  // a kill, or the limit long reached without one (a refresh comes at the latest after 5 s)
        }
        std::this_thread::sleep_for(std::chrono::microseconds(500));
      }
      trial.rate_reached_mib_s =
          leaked_bytes / kMiB / std::chrono::duration<double>(Clock::now() - start).count();
      // Back under the threshold at once: a domain still over it would get its next kill as soon as
      // this victim is released (as it should in a real leak).
      writeCurrent(current_file, static_cast<uint64_t>(kRestBytes));
      results[r].push_back(trial);
    }
  }
  boost::asio::post(io, [&] { daemon.stop(); });
  loop.join();
  if (const char* dump = std::getenv("OOMGUARD_BENCH_LOG")) {  // the daemon's log, for a look at a surprise
    std::ofstream out(dump);
    for (size_t i = 0; i < stamped.count(); ++i) {
      out << stamped.at(i).second << "\n";
    }
  }
  oomguard::bench::reap(pids);
  std::error_code ignored;
  fs::remove_all(root, ignored);

  std::printf("level watch: headroom_below 0.15 of memory.max 256 MiB (threshold 217.6 MiB, 38.4 MiB of headroom "
              "left), default refresh 5 s and assumed fill rate, %zu trials per rate\n", trials);
  int status = 0;
  for (size_t r = 0; r < rates_mib_s.size(); ++r) {
    std::vector<double> lags;
    std::vector<double> reached;
    double worst_used = 0;
    double longest_stall_ms = 0;
    size_t killed = 0;
    for (const auto& trial : results[r]) {
      reached.push_back(trial.rate_reached_mib_s);
      longest_stall_ms = std::max(longest_stall_ms, trial.longest_stall_ms);
      if (trial.killed) {
        ++killed;
        lags.push_back(trial.crossing_to_kill_ms);
        worst_used = std::max(worst_used, trial.headroom_used);
      } else {
        worst_used = std::max(worst_used, 1.0);
      }
    }
    const double worst = lags.empty() ? 0 : *std::max_element(lags.begin(), lags.end());
    std::printf("  rate %6.0f MiB/s: crossing -> kill median %7.1f ms, worst %7.1f ms; headroom used at the kill, "
                "worst %5.1f%%; killed %zu/%zu; leak rate reached (median) %.0f MiB/s; the leak thread's longest stall "
                "%.1f ms\n",
                rates_mib_s[r], median(lags), worst, 100 * worst_used, killed, results[r].size(), median(reached),
                longest_stall_ms);
    if (killed != results[r].size()) {
      status = 1;
    }
  }
  return status;
}
