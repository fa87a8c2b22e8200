// A node for the daemon's parts, on files only: a /proc and a cgroup tree in a temporary directory, a
// fake clock, and an actuator that records instead of acting. The processes in the fixture /proc carry
// the pids of live processes of this test (itself and its parent), because a pin without a pidfd asks
// kill(pid, 0) whether its process still runs; nothing is signalled and nothing is spawned.
#pragma once

#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <functional>
#include <set>
#include <string>
#include <vector>

#include "guardian/config/config.hpp"
#include "guardian/daemon/context.hpp"
#include "guardian/daemon/watch_set.hpp"
#include "guardian/io/actuator.hpp"
#include "guardian/io/event_log.hpp"
#include "guardian/io/node.hpp"

namespace oomguard::guardian::daemon {

class FakeActuator final : public io::Actuator {
 public:
  std::vector<std::string> actions;
  std::vector<pid_t> released;
  bool reaps = false;  // release() reports the victim's memory reaped (process_mrelease returned 0)
  std::set<pid_t> gone;  // pin() fails as for an exited process (ESRCH), after calling on_gone
  std::set<pid_t> unpinnable;  // pin fails with EMFILE: not known to be gone
  std::function<void(pid_t)> on_gone;
  bool fail_kills = false;  // kill() and killCgroup() record the action and report a failure
  cgroupfs::Result<std::shared_ptr<io::PinnedProcess>> pin(pid_t pid) override {
    if (gone.contains(pid)) {
      if (on_gone) {
        on_gone(pid);
      }
      return cgroupfs::systemError(ESRCH, "pid " + std::to_string(pid), "pidfd_open failed");
    }
    if (unpinnable.contains(pid)) {
      return cgroupfs::systemError(EMFILE, "pid " + std::to_string(pid), "pidfd_open failed");
    }
    return std::make_shared<io::PinnedProcess>(pid, cgroupfs::UniqueFd());
  }
  io::ActionResult kill(const std::shared_ptr<io::PinnedProcess>& process, uint32_t grace_ms) override {
    auto result = record("kill " + std::to_string(process->pid()) + " grace " + std::to_string(grace_ms));
    result.ok = !fail_kills;
    return result;
  }
  io::ActionResult release(const std::shared_ptr<io::PinnedProcess>& process) override {
    released.push_back(process->pid());  // not an action of its own: what follows a kill
    return {true, "released", reaps};
  }
  io::ActionResult killCgroup(const std::string& cgroup) override { return record("kill-cgroup " + cgroup); }
  io::ActionResult setOomScoreAdj(const std::shared_ptr<io::PinnedProcess>& process, int adj) override {
    return record("adj " + std::to_string(process->pid()) + " " + std::to_string(adj));
  }
  io::ActionResult setOomGroup(const std::string& cgroup, bool on) override {
    return record("oom.group " + cgroup + (on ? " 1" : " 0"));
  }
  io::ActionResult setMemoryHigh(const std::string& cgroup, std::optional<uint64_t> bytes) override {
    return record("memory.high " + cgroup + " " + (bytes ? std::to_string(*bytes) : std::string("max")));
  }
  io::ActionResult writeSysctl(const std::string& name, long value) override {
    return record("sysctl " + name + " " + std::to_string(value));
  }
  io::ActionResult panic() override { return record("panic"); }
  io::ActionResult setOwnOomScoreAdj(int adj) override { return record("self-adj " + std::to_string(adj)); }
  io::ActionResult writeKernelLog(const std::string& /*path*/, const std::string& line) override {
    return record("kmsg " + line);
  }

 private:
  io::ActionResult record(std::string action) {
    actions.push_back(std::move(action));
    return {true, "recorded"};
  }
};

class NoListener final : public WatchSet::Listener {
 public:
  void onMemoryEvents(const std::string&, bool) override {}
  void onPressure(const std::string&, bool, const std::string&) override {}
  void onDomainGone(const std::string&) override {}
  void onCgroupRemoved(const std::string&) override {}
  void onEventArrived() override {}
  void onYoungCgroup() override {}
  void onDomainFound(const std::string&) override {}
};

// /pod: memory.max 1 GiB, memory.current as set; its tasks in /pod/app and /pod/side.
class NodeFixture {
 public:
  static constexpr uint64_t kLimitBytes = uint64_t{1} << 30;
  std::filesystem::path root = std::filesystem::temp_directory_path() /
                               ("oomguard-daemon-unit-" + std::to_string(::getpid()) + "-" + std::to_string(counter()++));
  uint64_t now_us = 1'000'000;
  uint64_t boot_ticks = 100'000;  // the fake boot clock: the fixture's processes started at tick 50'000
  Clock clock{[this] { return now_us; }, [this] { return boot_ticks; }};

  NodeFixture() {
    namespace fs = std::filesystem;
    fs::create_directories(root / "cgroup/pod/app");
    fs::create_directories(root / "cgroup/pod/side");
    write("cgroup/cgroup.procs", "");
    write("cgroup/pod/cgroup.procs", "");
    write("cgroup/pod/memory.max", std::to_string(kLimitBytes) + "\n");
    write("cgroup/pod/memory.swap.max", "0\n");
    write("cgroup/pod/memory.oom.group", "0\n");
    write("cgroup/pod/app/memory.oom.group", "0\n");
    write("cgroup/pod/side/memory.oom.group", "0\n");
    setCurrent(kLimitBytes / 2);
    fs::create_directories(root / "proc/sys/vm");
    fs::create_directories(root / "proc/sys/kernel");
    write("proc/meminfo", "MemTotal: 8388608 kB\nMemFree: 4194304 kB\nMemAvailable: 4194304 kB\n"
                          "SwapTotal: 0 kB\nSwapFree: 0 kB\n");
    write("proc/sys/vm/swappiness", "60\n");
    write("proc/sys/vm/panic_on_oom", "0\n");
    write("proc/sys/kernel/osrelease", "6.1.0-test\n");
  }
  ~NodeFixture() {
    std::error_code ignored;
    std::filesystem::remove_all(root, ignored);
  }
  NodeFixture(const NodeFixture&) = delete;
  NodeFixture& operator=(const NodeFixture&) = delete;

  void write(const std::string& relative, const std::string& text) const {
    std::ofstream(root / relative) << text;
  }
  void setCurrent(uint64_t bytes) const { write("cgroup/pod/memory.current", std::to_string(bytes) + "\n"); }
  // A process in the fixture /proc, member of `cgroup` ("/pod/app"), started at boot tick `start_ticks`.
  void addProcess(pid_t pid, const std::string& comm, const std::string& cgroup, uint64_t rss_kb,
                  uint64_t start_ticks = 50'000) const {
    namespace fs = std::filesystem;
    fs::create_directories(root / ("proc/" + std::to_string(pid)));
    const std::string dir = "proc/" + std::to_string(pid) + "/";
    setRss(pid, comm, rss_kb);
    write(dir + "oom_score_adj", "0\n");
    write(dir + "cgroup", "0::" + cgroup + "\n");
    std::ostringstream stat;
    stat << pid << " (" << comm << ") S 1";
    for (int field = 5; field < 22; ++field) {
      stat << " 0";
    }
    stat << " " << start_ticks << " 0 0\n";
    write(dir + "stat", stat.str());
    const std::string procs = "cgroup" + cgroup + "/cgroup.procs";
    std::ifstream in(root / procs);
    const std::string listed((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    write(procs, listed + std::to_string(pid) + "\n");
  }
  // Rewrites the process's status with a new size (all of it anonymous).
  void setRss(pid_t pid, const std::string& comm, uint64_t rss_kb) const {
    write("proc/" + std::to_string(pid) + "/status",
          "Name:\t" + comm + "\nState:\tS (sleeping)\nTgid:\t" + std::to_string(pid) + "\nPid:\t" + std::to_string(pid) +
              "\nPPid:\t1\nUid:\t0\t0\t0\t0\nVmSize:\t" + std::to_string(rss_kb) + " kB\nVmRSS:\t" +
              std::to_string(rss_kb) + " kB\nRssAnon:\t" + std::to_string(rss_kb) +
              " kB\nRssFile:\t0 kB\nRssShmem:\t0 kB\nVmSwap:\t0 kB\nVmPTE:\t16 kB\nThreads:\t1\n");
  }
  [[nodiscard]] std::string procRoot() const { return (root / "proc").string(); }
  [[nodiscard]] std::string cgroupRoot() const { return (root / "cgroup").string(); }

 private:
  static int& counter() {
    static int next = 0;
    return next;
  }
};

}  // namespace oomguard::guardian::daemon
