// The kill path and the protections against the real kernel: pidfds, cgroup.kill on this machine's
// cgroup2 mount, oom_score_adj through /proc; and the daemon's act path end to end with a recording
// actuator and an injected clock.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/sched.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "guardian/io/actuator.hpp"
#include "guardian/daemon/daemon.hpp"
#include "process_population.hpp"

namespace oomguard::testing {
namespace {

namespace fs = std::filesystem;
using guardian::io::ActionResult;
using guardian::io::PinnedProcess;

std::string readFile(const std::string& path) {
  std::ifstream in(path);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

void writeFile(const std::string& path, const std::string& text) {
  std::ofstream out(path);
  out << text;
}

bool alive(pid_t pid) { return ::waitpid(pid, nullptr, WNOHANG) == 0; }

pid_t sleeper() {
  const pid_t pid = ::fork();
  if (pid == 0) {
    for (;;) {
      ::pause();
    }
  }
  return pid;
}

// A child with exactly `pid` (clone3 with set_tid; needs CAP_SYS_ADMIN), or -1.
pid_t sleeperWithPid(pid_t pid) {
  clone_args args{};
  args.exit_signal = SIGCHLD;
  args.set_tid = reinterpret_cast<uint64_t>(&pid);
  args.set_tid_size = 1;
  const long child = ::syscall(SYS_clone3, &args, sizeof args);
  if (child == 0) {
    for (;;) {
      ::pause();
    }
  }
  return static_cast<pid_t>(child);
}

TEST(PidfdKill, ARecycledPidIsNeverHit) {
  boost::asio::io_context io;
  guardian::io::SystemActuator actuator(io, "/proc", "/sys/fs/cgroup");
  const pid_t first = sleeper();
  auto pinned = actuator.pin(first);
  ASSERT_TRUE(pinned) << pinned.error().describe();
  // The pinned process dies and is reaped; its pid is then given to a new process.
  ::kill(first, SIGKILL);
  ::waitpid(first, nullptr, 0);
  const pid_t second = sleeperWithPid(first);
  if (second < 0) {
    GTEST_SKIP() << "SKIPPED: clone3 with set_tid is not permitted here (" << std::strerror(errno)
                 << "), so the pid cannot be recycled on purpose";
  }
  ASSERT_EQ(second, first) << "the new process got the same pid";
  EXPECT_TRUE(pinned.value()->exited());
  const guardian::io::ActionResult result = actuator.kill(pinned.value(), 0);
  EXPECT_EQ(result.detail, "already gone");
  EXPECT_TRUE(alive(second)) << "the process that reused the pid was hit";
  ::kill(second, SIGKILL);
  ::waitpid(second, nullptr, 0);
}

TEST(PidfdKill, ARecycledPidNeverGetsAnotherProcesssOomScoreAdj) {
  // Issue 16: oom_score_adj was written by pid. Now through a pin: not written once the pinned process
  // is gone, even when a new process holds its pid.
  boost::asio::io_context io;
  guardian::io::SystemActuator actuator(io, "/proc", "/sys/fs/cgroup");
  const pid_t live = sleeper();
  auto live_pin = actuator.pin(live);
  ASSERT_TRUE(live_pin) << live_pin.error().describe();
  const auto written = actuator.setOomScoreAdj(live_pin.value(), 700);
  EXPECT_TRUE(written.ok) << written.detail;
  EXPECT_EQ(readFile("/proc/" + std::to_string(live) + "/oom_score_adj"), "700\n");
  ::kill(live, SIGKILL);
  ::waitpid(live, nullptr, 0);
  const pid_t second = sleeperWithPid(live);
  if (second < 0) {
    EXPECT_EQ(actuator.setOomScoreAdj(live_pin.value(), 900).detail, "gone");
    GTEST_SKIP() << "SKIPPED (the recycled half): clone3 with set_tid is not permitted here ("
                 << std::strerror(errno) << ")";
  }
  ASSERT_EQ(second, live);
  const std::string before = readFile("/proc/" + std::to_string(second) + "/oom_score_adj");
  EXPECT_EQ(actuator.setOomScoreAdj(live_pin.value(), 900).detail, "gone");
  EXPECT_EQ(readFile("/proc/" + std::to_string(second) + "/oom_score_adj"), before) << "the new process was written";
  ::kill(second, SIGKILL);
  ::waitpid(second, nullptr, 0);
}

TEST(PidfdKill, KillsThePinnedProcessAndReleasesItsMemory) {
  boost::asio::io_context io;
  guardian::io::SystemActuator actuator(io, "/proc", "/sys/fs/cgroup");
  ProcessPopulation population;
  const pid_t victim = population.spawn({64 * 1024 * 1024, 0, 0});
  ASSERT_GT(victim, 0);
  auto pinned = actuator.pin(victim);
  ASSERT_TRUE(pinned);
  const guardian::io::ActionResult result = actuator.kill(pinned.value(), 0);
  EXPECT_TRUE(result.ok) << result.detail;
  EXPECT_EQ(result.detail.rfind("SIGKILL sent", 0), 0U) << result.detail;
  // process_mrelease after the signal: the memory is released, or the victim had already exited.
  const guardian::io::ActionResult released = actuator.release(pinned.value());
  EXPECT_TRUE(released.ok) << released.detail;
  EXPECT_NE(released.detail.find("process_mrelease"), std::string::npos) << released.detail;
  int status = 0;
  ASSERT_EQ(::waitpid(victim, &status, 0), victim);
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
}

TEST(PidfdKill, SigtermThenSigkillAfterTheGrace) {
  boost::asio::io_context io;
  guardian::io::SystemActuator actuator(io, "/proc", "/sys/fs/cgroup");
  // A process that ignores SIGTERM: only the SIGKILL after the grace ends it.
  const pid_t stubborn = ::fork();
  if (stubborn == 0) {
    ::signal(SIGTERM, SIG_IGN);
    for (;;) {
      ::pause();
    }
  }
  ::usleep(50000);
  auto pinned = actuator.pin(stubborn);
  ASSERT_TRUE(pinned);
  const auto start = std::chrono::steady_clock::now();
  const guardian::io::ActionResult result = actuator.kill(pinned.value(), 200);
  EXPECT_NE(result.detail.find("SIGTERM sent"), std::string::npos) << result.detail;
  EXPECT_TRUE(alive(stubborn));
  io.run();  // the grace timer
  int status = 0;
  ASSERT_EQ(::waitpid(stubborn, &status, 0), stubborn);
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
  EXPECT_GE(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(200));
}

class OwnCgroup : public ::testing::Test {
 protected:
  std::string root = "/sys/fs/cgroup/unified";
  std::string cgroup = "/oomguard-act-" + std::to_string(::getpid());
  std::string directory = root + cgroup;
  std::vector<pid_t> children;

  void SetUp() override {
    if (::access((root + "/cgroup.procs").c_str(), W_OK) != 0) {
      GTEST_SKIP() << "SKIPPED: no writable cgroup2 mount at " << root;
    }
    ASSERT_EQ(::mkdir(directory.c_str(), 0755), 0);
    if (::access((directory + "/cgroup.kill").c_str(), W_OK) != 0) {
      GTEST_SKIP() << "SKIPPED: no cgroup.kill (kernel < 5.14)";
    }
  }
  void TearDown() override {
    for (const pid_t pid : children) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
    }
    ::rmdir(directory.c_str());
  }
  pid_t spawnInside() {
    const pid_t pid = ::fork();
    if (pid == 0) {
      writeFile(directory + "/cgroup.procs", std::to_string(::getpid()));
      for (;;) {
        ::pause();
      }
    }
    children.push_back(pid);
    return pid;
  }
  void waitPopulated(size_t count) {
    for (int i = 0; i < 200; ++i) {
      std::istringstream procs(readFile(directory + "/cgroup.procs"));
      size_t lines = 0;
      std::string line;
      while (std::getline(procs, line)) {
        ++lines;
      }
      if (lines >= count) {
        return;
      }
      ::usleep(10000);
    }
    FAIL() << "the children did not join " << directory;
  }
};

TEST_F(OwnCgroup, CgroupKillKillsTheWholeGroup) {
  boost::asio::io_context io;
  guardian::io::SystemActuator actuator(io, "/proc", root);
  for (int i = 0; i < 3; ++i) {
    spawnInside();
  }
  waitPopulated(3);
  const guardian::io::ActionResult result = actuator.killCgroup(cgroup);
  EXPECT_TRUE(result.ok) << result.detail;
  for (const pid_t pid : children) {
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
  }
  children.clear();
  EXPECT_NE(readFile(directory + "/cgroup.events").find("populated 0"), std::string::npos);
}

TEST_F(OwnCgroup, DryRunTouchesNothing) {
  guardian::io::DryRunActuator actuator;
  const pid_t pid = spawnInside();
  waitPopulated(1);
  const std::string adj_before = readFile("/proc/" + std::to_string(pid) + "/oom_score_adj");
  const std::string panic_on_oom_before = readFile("/proc/sys/vm/panic_on_oom");
  auto pinned = actuator.pin(pid);
  ASSERT_TRUE(pinned);
  EXPECT_NE(actuator.kill(pinned.value(), 0).detail.find("dry-run: would send SIGKILL"), std::string::npos);
  EXPECT_TRUE(actuator.killCgroup(cgroup).ok);
  EXPECT_TRUE(actuator.setOomScoreAdj(pinned.value(), 1000).ok);
  EXPECT_TRUE(actuator.setOomGroup(cgroup, true).ok);
  EXPECT_TRUE(actuator.writeSysctl("vm.panic_on_oom", 2).ok);
  EXPECT_TRUE(actuator.panic().ok);
  ::usleep(100000);
  EXPECT_TRUE(alive(pid));
  EXPECT_EQ(readFile("/proc/" + std::to_string(pid) + "/oom_score_adj"), adj_before);
  EXPECT_NE(readFile(directory + "/cgroup.events").find("populated 1"), std::string::npos);
  EXPECT_EQ(readFile("/proc/sys/vm/panic_on_oom"), panic_on_oom_before) << "dry-run wrote the sysctl";
}

// The fallbacks for older kernels, forced on here: no cgroup.kill, no pidfd.
TEST_F(OwnCgroup, GroupKillWithoutCgroupKillSignalsEveryTask) {
  boost::asio::io_context io;
  guardian::io::SystemActuator actuator(io, "/proc", root, guardian::io::SystemActuator::Features{true, false});
  for (int i = 0; i < 3; ++i) {
    spawnInside();
  }
  waitPopulated(3);
  const guardian::io::ActionResult result = actuator.killCgroup(cgroup);
  EXPECT_TRUE(result.ok) << result.detail;
  EXPECT_NE(result.detail.find("no cgroup.kill: SIGKILL sent to 3 tasks"), std::string::npos) << result.detail;
  for (const pid_t pid : children) {
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
  }
  children.clear();
}

TEST(PidfdKill, WithoutPidfdTheKillGoesByPid) {
  boost::asio::io_context io;
  guardian::io::SystemActuator actuator(io, "/proc", "/sys/fs/cgroup", guardian::io::SystemActuator::Features{false, true});
  const pid_t victim = sleeper();
  auto pinned = actuator.pin(victim);
  ASSERT_TRUE(pinned);
  EXPECT_FALSE(pinned.value()->pinned());
  EXPECT_FALSE(pinned.value()->exited());
  const guardian::io::ActionResult result = actuator.kill(pinned.value(), 0);
  EXPECT_EQ(result.detail, "SIGKILL sent by pid (no pidfd on this kernel)");
  int status = 0;
  ASSERT_EQ(::waitpid(victim, &status, 0), victim);
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
  EXPECT_FALSE(actuator.pin(victim).ok()) << "a reaped pid cannot be pinned";
}

TEST(KillPathProbe, ThisKernelHasEverything) {
  std::string fallbacks;
  const auto features = guardian::io::SystemActuator::probe("/sys/fs/cgroup/unified", fallbacks);
  EXPECT_TRUE(features.pidfd);
  EXPECT_TRUE(fallbacks.find("pidfd") == std::string::npos) << fallbacks;
}

// The daemon in mode "act" sets oom_score_adj on a rule's processes and re-applies it to newcomers.
TEST_F(OwnCgroup, ProtectionIsAppliedAndReappliedToNewcomers) {
  const std::string config_path = fs::temp_directory_path() / ("oomguard-act-" + std::to_string(::getpid()) + ".json");
  // Raising oom_score_adj needs no privilege, so "low" (500) works everywhere.
  writeFile(config_path, R"({"mode": "act", "refresh_interval_s": 0.2, "read_kmsg": false, "history": null,
    "self": {"oom_score_adj": null, "mlock": false}, "host": {"pressure": null},
    "cgroups": [{"match": ")" + cgroup + R"(", "protection": "low"}, {"match": "/**", "pressure": null}]})");
  boost::asio::io_context io;
  std::ostringstream log_text;
  std::ostringstream summary;
  guardian::io::EventLog log(log_text, [] { return std::chrono::system_clock::now(); });
  guardian::exporter::NullMetrics metrics;
  guardian::io::SystemActuator actuator(io, "/proc", root);
  guardian::daemon::DaemonOptions options;
  options.cgroup_root = root;
  options.handle_signals = false;
  options.protect_self = false;
  guardian::daemon::Daemon daemon(io, guardian::config::loadConfigFile(config_path), options, log, metrics, actuator, summary);
  const pid_t first = spawnInside();
  waitPopulated(1);
  daemon.start();
  std::thread loop([&] { io.run(); });
  auto adj_of = [](pid_t pid) { return readFile("/proc/" + std::to_string(pid) + "/oom_score_adj"); };
  auto wait_adj = [&](pid_t pid) {
    for (int i = 0; i < 300 && adj_of(pid) != "500\n"; ++i) {
      ::usleep(10000);
    }
    return adj_of(pid);
  };
  EXPECT_EQ(wait_adj(first), "500\n");
  const pid_t newcomer = spawnInside();
  waitPopulated(2);
  EXPECT_EQ(wait_adj(newcomer), "500\n") << "not re-applied to a process that joined later";
  boost::asio::post(io, [&] { daemon.stop(); });
  loop.join();
  EXPECT_GE(daemon.stats().protections_applied, 2U);
  std::error_code ignored;
  fs::remove(config_path, ignored);
}

}  // namespace
}  // namespace oomguard::testing
