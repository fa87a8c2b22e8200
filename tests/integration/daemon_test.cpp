// `oomguard run` on this machine's real cgroup2 mount (/sys/fs/cgroup/unified: PSI files, no memory
// controller). The test creates its own child cgroup, arms a CPU pressure trigger there (the same
// mechanism as memory triggers), makes it fire with CPU-bound processes, and checks that the watch set
// follows cgroups created and removed. It removes everything it created.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <linux/capability.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "daemon_process.hpp"

namespace oomguard::testing {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;
using Clock = std::chrono::steady_clock;

constexpr const char* kUnified = "/sys/fs/cgroup/unified";

void writeFile(const std::string& path, const std::string& text) {
  std::ofstream out(path);
  out << text;
}

class DaemonOnUnified : public ::testing::Test {
 protected:
  std::string name = "oomguard-it-" + std::to_string(::getpid());
  std::string cgroup = "/" + name;
  std::string directory = std::string(kUnified) + cgroup;
  std::string config_path = fs::temp_directory_path() / ("oomguard-it-" + std::to_string(::getpid()) + ".json");
  std::vector<pid_t> burners;
  pid_t sleeper = 0;

  void SetUp() override {
    if (::access((std::string(kUnified) + "/cgroup.procs").c_str(), W_OK) != 0 ||
        ::access((std::string(kUnified) + "/cpu.pressure").c_str(), R_OK) != 0) {
      GTEST_SKIP() << "SKIPPED: no writable cgroup2 mount with PSI at " << kUnified
                   << " (the daemon's cgroup tests need one)";
    }
    ASSERT_EQ(::mkdir(directory.c_str(), 0755), 0) << "cannot create " << directory;
    writeConfig(100000);
    // PSI triggers are written only into populated cgroups (see guardian::daemon::Daemon::armablePressure): one sleeper
    // keeps ours populated.
    sleeper = spawnSleeperIn(directory);
  }

  // A process that sleeps in the cgroup directory `dir`; killed in TearDown.
  pid_t spawnSleeperIn(const std::string& dir) {
    const pid_t pid = ::fork();
    if (pid == 0) {
      writeFile(dir + "/cgroup.procs", std::to_string(::getpid()));
      for (;;) {
        ::pause();
      }
    }
    burners.push_back(pid);
    // Wait until it is in (cgroup.procs lists it).
    for (int i = 0; i < 200; ++i) {
      std::ifstream procs(dir + "/cgroup.procs");
      for (pid_t listed = 0; procs >> listed;) {
        if (listed == pid) {
          return pid;
        }
      }
      ::usleep(5000);
    }
    return pid;
  }

  // SIGUSR1 until the watch set shows `triggers` PSI triggers (they wait for a refresh once their
  // cgroup is 2 s old), at most `seconds`; the last watch_set line.
  std::optional<Json> waitForTriggers(DaemonProcess& daemon, int triggers, int seconds) {
    std::optional<Json> last;
    for (int i = 0; i < seconds * 4; ++i) {
      daemon.signal(SIGUSR1);
      last = daemon.waitFor("watch_set", std::chrono::seconds(5));
      if (!last || last->at("pressure_triggers").get<int>() == triggers) {
        return last;
      }
      ::usleep(250000);
    }
    return last;
  }

  void TearDown() override {
    for (const pid_t pid : burners) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
    }
    // Remove our cgroups, deepest first.
    std::vector<fs::path> dirs;
    std::error_code ignored;
    if (fs::exists(directory, ignored)) {
      for (const auto& entry : fs::recursive_directory_iterator(directory, ignored)) {
        if (entry.is_directory(ignored)) {
          dirs.push_back(entry.path());
        }
      }
    }
    std::sort(dirs.begin(), dirs.end(), [](const auto& a, const auto& b) { return a.string().size() > b.string().size(); });
    for (const auto& dir : dirs) {
      ::rmdir(dir.c_str());
    }
    ::rmdir(directory.c_str());
    fs::remove(config_path, ignored);
  }

  // CPU pressure: unprivileged triggers need windows in multiples of 2 s, so use 2 s.
  void writeConfig(uint64_t stall_us, const std::string& extra = "", int refresh_interval_s = 1) {
    writeFile(config_path, R"({"refresh_interval_s": )" + std::to_string(refresh_interval_s) + R"(, "read_kmsg": false, "history": null, "self": {"oom_score_adj": null, "mlock": false},
      "host": {"pressure": null},
      "cgroups": [{"match": ")" + cgroup + R"(/**", "watch_events": true, "pressure_only_if_limited": false,
                   "pressure": {"resource": "cpu", "kind": "some", "stall_us": )" +
                                   std::to_string(stall_us) + R"(, "window_ms": 2000}}])" + extra + "}");
  }

  DaemonProcess start() {
    // Port 0: the metrics server takes any free port, so runs never collide on 9743.
    return DaemonProcess(
        {OOMGUARD_BINARY, "--cgroup-root", kUnified, "run", "--config", config_path, "--metrics-listen", "127.0.0.1:0"});
  }

  void startBurners(size_t count) {
    for (size_t i = 0; i < count; ++i) {
      const pid_t pid = ::fork();
      if (pid == 0) {
        writeFile(directory + "/cgroup.procs", std::to_string(::getpid()));
        volatile uint64_t spin = 0;
        for (;;) {
          spin = spin + 1;
        }
      }
      burners.push_back(pid);
    }
  }
};

TEST_F(DaemonOnUnified, PressureTriggerFiresAndTheLoopDecides) {
  auto daemon = start();
  const auto started = daemon.waitFor("started", std::chrono::seconds(10));
  ASSERT_TRUE(started) << "the daemon did not start";
  EXPECT_EQ(started->at("pressure_triggers").get<int>(), 1) << "one trigger, on our cgroup";
  // The libraries' start-up pages were given back before the first refresh ("N KiB in M mappings", with
  // nothing kept or failed); the loop below runs on them.
  const std::string released = started->value("startup_pages_released", "");
  EXPECT_TRUE(!released.empty() && released[0] >= '1' && released[0] <= '9' &&
              released.ends_with(" mappings") && released.find(';') == std::string::npos)
      << released;
  // Two cores, four busy processes in our cgroup: tasks wait for CPU, so "some" CPU pressure rises.
  startBurners(4);
  const auto decision = daemon.waitFor("decision", std::chrono::seconds(20), [&](const Json& line) {
    return line.at("trigger").value("kind", "") == "pressure" && line.at("trigger").value("cgroup", "") == cgroup;
  });
  ASSERT_TRUE(decision) << "no pressure decision for " << cgroup;
  EXPECT_EQ(decision->at("trigger").at("resource"), "cpu");
  EXPECT_GT(decision->at("trigger").at("some_avg10").get<double>(), 0.0);
  EXPECT_EQ(decision->at("action"), "none");
  EXPECT_EQ(decision->at("mode"), "observe");
  // No memory.max here: the decision concerns the host domain.
  EXPECT_EQ(decision->at("domain").at("kind"), "host");

  daemon.signal(SIGTERM);
  const auto before = Clock::now();
  EXPECT_EQ(daemon.waitExit(std::chrono::seconds(2)), 0);
  EXPECT_LT(Clock::now() - before, std::chrono::seconds(1)) << "SIGTERM must stop it within 1 s";
}

TEST_F(DaemonOnUnified, WatchSetFollowsTheTree) {
  auto daemon = start();
  ASSERT_TRUE(daemon.waitFor("started", std::chrono::seconds(10)));
  const auto baseline = [&] {
    daemon.signal(SIGUSR1);
    return daemon.waitFor("watch_set", std::chrono::seconds(5));
  }();
  ASSERT_TRUE(baseline);

  const std::vector<std::string> created = {"/a", "/a/b", "/a/b/c", "/d"};
  for (const auto& child : created) {
    ASSERT_EQ(::mkdir((directory + child).c_str(), 0755), 0);
  }
  for (const auto& child : created) {
    EXPECT_TRUE(daemon.waitFor("cgroup_added", std::chrono::seconds(5),
                               [&](const Json& line) { return line.at("cgroup") == cgroup + child; }))
        << "not added: " << child;
  }
  // New cgroups get no PSI trigger while they are young and empty: a trigger written while the cgroup
  // is being removed trips a kernel bug (tests/e2e/README.md, "Kernel bugs").
  daemon.signal(SIGUSR1);
  const auto young = daemon.waitFor("watch_set", std::chrono::seconds(5));
  ASSERT_TRUE(young);
  EXPECT_EQ(young->at("pressure_triggers").get<int>(), 1) << "only our populated cgroup";
  // A task in /a/b/c populates it and its ancestors: once 2 s old, each gets its own trigger (the rule
  // matches the whole subtree); /d stays empty and unarmed.
  const pid_t inside = spawnSleeperIn(directory + "/a/b/c");
  const auto grown = waitForTriggers(daemon, 4, 10);
  ASSERT_TRUE(grown);
  EXPECT_EQ(grown->at("pressure_triggers").get<int>(), 4);
  writeFile(directory + "/cgroup.procs", std::to_string(inside));  // out again, so /a/b/c can go

  for (const char* child : {"/a/b/c", "/a/b", "/d"}) {
    ASSERT_EQ(::rmdir((directory + child).c_str()), 0);
  }
  for (const char* child : {"/a/b/c", "/a/b", "/d"}) {
    EXPECT_TRUE(daemon.waitFor("cgroup_removed", std::chrono::seconds(5),
                               [&](const Json& line) { return line.at("cgroup") == cgroup + child; }))
        << "not removed: " << child;
  }
  daemon.signal(SIGUSR1);
  const auto shrunk = daemon.waitFor("watch_set", std::chrono::seconds(5));
  ASSERT_TRUE(shrunk);
  // What the daemon watches under our cgroup equals the tree there, and no fd leaked on the way.
  std::vector<std::string> watched;
  for (const auto& path : shrunk->at("cgroups")) {
    if (path.get<std::string>().rfind(cgroup, 0) == 0) {
      watched.push_back(path.get<std::string>());
    }
  }
  EXPECT_EQ(watched, (std::vector<std::string>{cgroup, cgroup + "/a"}));
  EXPECT_EQ(shrunk->at("pressure_triggers").get<int>(), 2);
  // /a still holds its trigger's fd and its directory watch.
  EXPECT_EQ(shrunk->at("open_fds").get<int>(), baseline->at("open_fds").get<int>() + 1);
  EXPECT_EQ(shrunk->at("inotify_watches").get<int>(), baseline->at("inotify_watches").get<int>() + 1);

  ASSERT_EQ(::rmdir((directory + "/a").c_str()), 0);
  ASSERT_TRUE(daemon.waitFor("cgroup_removed", std::chrono::seconds(5),
                             [&](const Json& line) { return line.at("cgroup") == cgroup + "/a"; }));
  daemon.signal(SIGUSR1);
  const auto back = daemon.waitFor("watch_set", std::chrono::seconds(5));
  ASSERT_TRUE(back);
  // Back to where it started: nothing leaked.
  EXPECT_EQ(back->at("open_fds"), baseline->at("open_fds"));
  EXPECT_EQ(back->at("inotify_watches"), baseline->at("inotify_watches"));
  EXPECT_EQ(back->at("pressure_triggers"), baseline->at("pressure_triggers"));
  EXPECT_EQ(back->at("watched_cgroups"), baseline->at("watched_cgroups"));

  daemon.signal(SIGTERM);
  EXPECT_EQ(daemon.waitExit(std::chrono::seconds(2)), 0);
}

TEST_F(DaemonOnUnified, SighupRefusesABadConfigAndKeepsTheOld) {
  auto daemon = start();
  ASSERT_TRUE(daemon.waitFor("started", std::chrono::seconds(10)));
  writeConfig(5000000);  // stall above the window: invalid
  daemon.signal(SIGHUP);
  const auto refused = daemon.waitFor("config_reload", std::chrono::seconds(5));
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->at("result"), "refused");
  EXPECT_NE(refused->at("reason").get<std::string>().find("/cgroups/0/pressure/stall_us"), std::string::npos)
      << refused->dump();
  writeConfig(200000, "", 40);
  daemon.signal(SIGHUP);
  const auto applied = daemon.waitFor("config_reload", std::chrono::seconds(5));
  ASSERT_TRUE(applied);
  EXPECT_EQ(applied->at("result"), "applied");
  EXPECT_EQ(applied->at("pressure_triggers").get<int>(), 1);
  // /healthz's stall limit follows the new refresh interval (three of them): it was set once at start,
  // and a reload to a slower refresh failed the probes of a healthy daemon.
  EXPECT_EQ(applied->at("health_stall_limit_ms").get<int64_t>(), 120'000) << applied->dump();
  daemon.signal(SIGINT);
  EXPECT_EQ(daemon.waitExit(std::chrono::seconds(2)), 0);
}

// systemd's Type=notify, as the unit starts it: READY=1 after the first ranking, WATCHDOG=1 from the
// loop at half WATCHDOG_USEC, RELOADING=1 then READY=1 on SIGHUP, STOPPING=1 on SIGTERM. A datagram
// socket stands in for systemd's (the protocol is the socket; nothing else of systemd is involved).
TEST_F(DaemonOnUnified, TellsTheServiceManagerReadyWatchdogReloadAndStop) {
  const std::string socket_path = "/tmp/oomguard-notify-it-" + std::to_string(::getpid());
  const int listener = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::strncpy(address.sun_path, socket_path.c_str(), sizeof address.sun_path - 1);
  ::unlink(socket_path.c_str());
  ASSERT_EQ(::bind(listener, reinterpret_cast<const sockaddr*>(&address), sizeof address), 0);
  // The next datagram within `timeout_ms` ("" when none came).
  auto next = [&](int timeout_ms) {
    pollfd pfd{listener, POLLIN, 0};
    char buffer[512];
    if (::poll(&pfd, 1, timeout_ms) <= 0) {
      return std::string();
    }
    const ssize_t n = ::recv(listener, buffer, sizeof buffer, 0);
    return n > 0 ? std::string(buffer, static_cast<size_t>(n)) : std::string();
  };
  ::setenv("NOTIFY_SOCKET", socket_path.c_str(), 1);
  ::setenv("WATCHDOG_USEC", "400000", 1);  // pings every 200 ms
  auto daemon = start();
  ::unsetenv("NOTIFY_SOCKET");
  ::unsetenv("WATCHDOG_USEC");
  const std::string ready = next(10000);
  EXPECT_EQ(ready.rfind("READY=1\nSTATUS=", 0), 0U) << ready;
  EXPECT_NE(ready.find("OOM domains ranked"), std::string::npos) << ready;
  ASSERT_TRUE(daemon.waitFor("started", std::chrono::seconds(5)));  // logged before READY=1 was sent
  EXPECT_EQ(next(1000), "WATCHDOG=1");
  EXPECT_EQ(next(1000), "WATCHDOG=1");
  daemon.signal(SIGHUP);
  std::string reloading = next(2000);
  while (reloading == "WATCHDOG=1") {
    reloading = next(2000);
  }
  EXPECT_EQ(reloading.rfind("RELOADING=1\nMONOTONIC_USEC=", 0), 0U) << reloading;
  std::string after = next(2000);
  while (after == "WATCHDOG=1") {
    after = next(2000);
  }
  EXPECT_EQ(after, "READY=1");
  daemon.signal(SIGTERM);
  std::string stopping = next(2000);
  while (stopping == "WATCHDOG=1") {
    stopping = next(2000);
  }
  EXPECT_EQ(stopping, "STOPPING=1");
  EXPECT_EQ(daemon.waitExit(std::chrono::seconds(2)), 0);
  ::close(listener);
  ::unlink(socket_path.c_str());
}

TEST_F(DaemonOnUnified, SighupOntoHostileConfigsKeepsTheOldAndTheLoop) {
  auto daemon = start();
  ASSERT_TRUE(daemon.waitFor("started", std::chrono::seconds(10)));
  auto reloadRefused = [&](const std::string& why, const std::string& expected) {
    daemon.signal(SIGHUP);
    const auto reply = daemon.waitFor("config_reload", std::chrono::seconds(5));
    ASSERT_TRUE(reply) << why << ": no answer (the loop is blocked or the daemon died)";
    EXPECT_EQ(reply->at("result"), "refused") << why;
    EXPECT_NE(reply->at("reason").get<std::string>().find(expected), std::string::npos) << why << ": " << reply->dump();
  };
  // A number beyond a double once stopped the daemon (exit 1); a repeated key was "last one wins".
  writeFile(config_path, R"({"refresh_interval_s": 1e400})");
  reloadRefused("overflow", "/refresh_interval_s: number 1e400 is beyond the range of a double");
  writeFile(config_path, R"({"mode": "act", "mode": "observe"})");
  reloadRefused("duplicate", "/mode: duplicate key");
  // Settings bound at start are refused with their path instead of a silent "applied".
  writeConfig(100000, R"(, "metrics": {"listen": "127.0.0.1:19743", "top_k": 3})");
  reloadRefused("metrics", "/metrics/top_k changed; these take effect only at a restart");
  // A FIFO with no writer once blocked the event loop forever.
  fs::remove(config_path);
  ASSERT_EQ(::mkfifo(config_path.c_str(), 0600), 0);
  reloadRefused("fifo", "not a regular file");
  fs::remove(config_path);
  writeConfig(200000);
  daemon.signal(SIGHUP);
  const auto applied = daemon.waitFor("config_reload", std::chrono::seconds(5));
  ASSERT_TRUE(applied);
  EXPECT_EQ(applied->at("result"), "applied") << "--metrics-listen's override is not a change";
  daemon.signal(SIGTERM);
  EXPECT_EQ(daemon.waitExit(std::chrono::seconds(2)), 0);
}

}  // namespace
}  // namespace oomguard::testing
