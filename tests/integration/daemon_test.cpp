// `oomguard run` on this machine's real cgroup2 mount (/sys/fs/cgroup/unified: PSI files, no memory
// controller). The test creates its own child cgroup, arms a CPU pressure trigger there (the same
// mechanism as memory triggers), makes it fire with CPU-bound processes, and checks that the watch set
// follows cgroups created and removed. It removes everything it created.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace oomguard::testing {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;
using Clock = std::chrono::steady_clock;

constexpr const char* kUnified = "/sys/fs/cgroup/unified";

// The daemon as a child process; its stdout is read line by line.
class DaemonProcess {
 public:
  explicit DaemonProcess(const std::vector<std::string>& args) {
    int out[2];
    if (::pipe2(out, O_CLOEXEC) != 0) {
      return;
    }
    pid_ = ::fork();
    if (pid_ == 0) {
      ::dup2(out[1], STDOUT_FILENO);
      const int null = ::open("/dev/null", O_WRONLY);
      ::dup2(null, STDERR_FILENO);
      std::vector<char*> argv;
      for (const auto& arg : args) {
        argv.push_back(const_cast<char*>(arg.c_str()));
      }
      argv.push_back(nullptr);
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
    ::close(out[1]);
    fd_ = out[0];
  }
  DaemonProcess(const DaemonProcess&) = delete;
  DaemonProcess& operator=(const DaemonProcess&) = delete;
  ~DaemonProcess() {
    if (pid_ > 0 && !exited_) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    if (fd_ >= 0) {
      ::close(fd_);
    }
  }

  // The next log line whose "event" is `event` and that satisfies `accept`, within `timeout`.
  std::optional<Json> waitFor(const std::string& event, std::chrono::milliseconds timeout,
                              const std::function<bool(const Json&)>& accept = [](const Json&) { return true; }) {
    const auto deadline = Clock::now() + timeout;
    for (;;) {
      while (auto line = nextLine()) {
        Json parsed = Json::parse(*line, nullptr, false);
        lines.push_back(*line);
        if (!parsed.is_discarded() && parsed.value("event", "") == event && accept(parsed)) {
          return parsed;
        }
      }
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
      if (left <= 0) {
        return std::nullopt;
      }
      pollfd pfd{fd_, POLLIN, 0};
      if (::poll(&pfd, 1, static_cast<int>(left)) <= 0) {
        return std::nullopt;
      }
      char chunk[65536];
      const ssize_t got = ::read(fd_, chunk, sizeof chunk);
      if (got <= 0) {
        return std::nullopt;  // the daemon closed stdout (exited)
      }
      pending_.append(chunk, static_cast<size_t>(got));
    }
  }

  void signal(int number) const { ::kill(pid_, number); }

  // Waits for exit; returns the exit status (or -1 on timeout).
  int waitExit(std::chrono::milliseconds timeout) {
    const auto deadline = Clock::now() + timeout;
    while (Clock::now() < deadline) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        exited_ = true;
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      }
      ::usleep(5000);
    }
    return -1;
  }

  std::vector<std::string> lines;

 private:
  std::optional<std::string> nextLine() {
    const auto newline = pending_.find('\n');
    if (newline == std::string::npos) {
      return std::nullopt;
    }
    std::string line = pending_.substr(0, newline);
    pending_.erase(0, newline + 1);
    return line;
  }

  pid_t pid_ = -1;
  int fd_ = -1;
  bool exited_ = false;
  std::string pending_;
};

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
  void writeConfig(uint64_t stall_us, const std::string& extra = "") {
    writeFile(config_path, R"({"refresh_interval_s": 1, "read_kmsg": false, "self": {"oom_score_adj": null, "mlock": false},
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
  writeConfig(200000);
  daemon.signal(SIGHUP);
  const auto applied = daemon.waitFor("config_reload", std::chrono::seconds(5));
  ASSERT_TRUE(applied);
  EXPECT_EQ(applied->at("result"), "applied");
  EXPECT_EQ(applied->at("pressure_triggers").get<int>(), 1);
  daemon.signal(SIGINT);
  EXPECT_EQ(daemon.waitExit(std::chrono::seconds(2)), 0);
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

TEST(DaemonCommand, HostileConfigFilesExitTwoAtOnce) {
  const std::string dir = fs::temp_directory_path() / ("oomguard-hostile-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const std::string fifo = dir + "/fifo.json";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  const std::string overflow = dir + "/overflow.json";
  writeFile(overflow, R"({"refresh_interval_s": 1e400})");
  for (const std::string& path : {fifo, std::string("/dev/zero"), overflow}) {
    DaemonProcess check({OOMGUARD_BINARY, "check-config", path});
    EXPECT_EQ(check.waitExit(std::chrono::seconds(5)), 2) << path;
    DaemonProcess run({OOMGUARD_BINARY, "run", "--config", path, "--metrics-listen", "127.0.0.1:0"});
    EXPECT_EQ(run.waitExit(std::chrono::seconds(5)), 2) << path;
  }
  // One address parser for check-config and run: both refuse what the other refuses.
  const std::string named = dir + "/named.json";
  writeFile(named, R"({"metrics": {"listen": "localhost:9743"}})");
  DaemonProcess check({OOMGUARD_BINARY, "check-config", named});
  EXPECT_EQ(check.waitExit(std::chrono::seconds(5)), 2);
  DaemonProcess flag({OOMGUARD_BINARY, "run", "--metrics-listen", "256.0.0.0:18090"});
  EXPECT_EQ(flag.waitExit(std::chrono::seconds(5)), 2);
  std::error_code ignored;
  fs::remove_all(dir, ignored);
}

TEST(DaemonCommand, BadConfigExitsTwoBeforeStarting) {
  const std::string path = fs::temp_directory_path() / ("oomguard-bad-" + std::to_string(::getpid()) + ".json");
  writeFile(path, R"({"cgroups": [{"match": "/x", "pressure": {"window_ms": 20}}]})");
  DaemonProcess daemon({OOMGUARD_BINARY, "run", "--config", path});
  EXPECT_EQ(daemon.waitExit(std::chrono::seconds(5)), 2);
  EXPECT_FALSE(daemon.waitFor("started", std::chrono::milliseconds(100)));
  DaemonProcess check({OOMGUARD_BINARY, "check-config", path});
  EXPECT_EQ(check.waitExit(std::chrono::seconds(5)), 2);
  DaemonProcess example({OOMGUARD_BINARY, "check-config", OOMGUARD_SOURCE_DIR "/examples/oomguard.json"});
  EXPECT_EQ(example.waitExit(std::chrono::seconds(5)), 0);
  std::error_code ignored;
  fs::remove(path, ignored);
}

}  // namespace
}  // namespace oomguard::testing
