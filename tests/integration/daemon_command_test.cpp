// `oomguard run` refusing before it starts: bad configs and missing capabilities exit 2 at once.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/capability.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <string>

#include "daemon_process.hpp"
#include "daemon_test_support.hpp"

namespace oomguard::testing {
namespace {

namespace fs = std::filesystem;

constexpr const char* kUnified = "/sys/fs/cgroup/unified";

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

// Mode act without CAP_KILL: refused before anything is armed, exit 2, the capability named. The child
// drops CAP_KILL from its bounding set before exec, so the binary runs as uid 0 without it (as a
// service whose unit grants only the observe-mode set would).
TEST(DaemonCommand, ActWithoutCapKillIsRefusedAndSaysWhich) {
  if (::geteuid() != 0 || ::prctl(PR_CAPBSET_READ, CAP_SETPCAP) != 1) {
    GTEST_SKIP() << "SKIPPED: needs uid 0 with CAP_SETPCAP to drop a capability from a child's bounding set";
  }
  if (!fs::exists(std::string(kUnified) + "/cgroup.procs")) {
    GTEST_SKIP() << "SKIPPED: no cgroup2 mount at " << kUnified << " (mode act needs one)";
  }
  const std::string path = fs::temp_directory_path() / ("oomguard-act-" + std::to_string(::getpid()) + ".json");
  writeFile(path, R"({"mode": "act", "read_kmsg": false, "history": null, "self": {"oom_score_adj": null, "mlock": false},
                      "metrics": {"listen": "127.0.0.1:0"}})");
  int err[2];
  ASSERT_EQ(::pipe2(err, O_CLOEXEC), 0);
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(err[1], STDERR_FILENO);
    const int null = ::open("/dev/null", O_WRONLY);
    ::dup2(null, STDOUT_FILENO);
    if (::prctl(PR_CAPBSET_DROP, CAP_KILL) != 0) {
      ::_exit(126);
    }
    ::execl(OOMGUARD_BINARY, OOMGUARD_BINARY, "--cgroup-root", kUnified, "run", "--config", path.c_str(), nullptr);
    ::_exit(127);
  }
  ::close(err[1]);
  std::string text;
  char buffer[4096];
  for (ssize_t n; (n = ::read(err[0], buffer, sizeof buffer)) > 0;) {
    text.append(buffer, static_cast<size_t>(n));
  }
  ::close(err[0]);
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 2) << text;
  EXPECT_NE(text.find("mode act refused: this process has not got CAP_KILL"), std::string::npos) << text;
  std::error_code ignored;
  fs::remove(path, ignored);
}

}  // namespace
}  // namespace oomguard::testing
