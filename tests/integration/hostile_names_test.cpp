// Real processes (prctl(PR_SET_NAME)) and a real cgroup with hostile names against the commands a user
// runs: every JSON output stays valid JSON, every human output is free of control characters. Before,
// one such process anywhere on the machine made `top --json` exit 1 (type_error 316), and ESC/BEL
// reached the terminal raw.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>

#include "common/run_command.hpp"
#include "guardian/io/actuator.hpp"

namespace oomguard::testing {
namespace {

// Not valid UTF-8, and a terminal sequence that would clear the screen, and a bell.
const std::string kHostileName = std::string("\xff\xfe") + "\x1b[2J\x07x";  // 15 bytes max for comm
constexpr const char* kUnified = "/sys/fs/cgroup/unified";

CommandResult run(const std::string& arguments) {
  return runCommand(std::string(OOMGUARD_BINARY) + " " + arguments + " 2>&1");
}

// No byte below 0x20 but newline, no DEL, and no raw invalid UTF-8 lead byte 0xFF/0xFE.
::testing::AssertionResult terminalSafe(const std::string& text) {
  for (size_t i = 0; i < text.size(); ++i) {
    const auto byte = static_cast<unsigned char>(text[i]);
    if ((byte < 0x20 && byte != '\n') || byte == 0x7F || byte == 0xFF || byte == 0xFE) {
      return ::testing::AssertionFailure() << "raw byte 0x" << std::hex << static_cast<int>(byte) << " at " << std::dec
                                           << i << " in:\n" << text.substr(i > 80 ? i - 80 : 0, 160);
    }
  }
  return ::testing::AssertionSuccess();
}

std::string readComm(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/comm");
  std::string comm;
  std::getline(in, comm);
  return comm;
}

class HostileNames : public ::testing::Test {
 protected:
  pid_t child = -1;
  std::string cgroup_dir;

  void SetUp() override {
    int ready[2];
    ASSERT_EQ(::pipe(ready), 0);
    child = ::fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
      ::prctl(PR_SET_NAME, kHostileName.c_str(), 0, 0, 0);
      char byte = 1;
      (void)!::write(ready[1], &byte, 1);
      for (;;) {
        ::pause();
      }
    }
    ::close(ready[1]);
    char byte = 0;
    ASSERT_EQ(::read(ready[0], &byte, 1), 1);
    ::close(ready[0]);
    ASSERT_EQ(readComm(child), kHostileName);
    // A cgroup named with ESC and BEL too, where this machine lets us make one (cgroup2 mount).
    const std::string dir = std::string(kUnified) + "/oomguard-it-\x1b]0;pwned\x07-" + std::to_string(::getpid());
    if (::access((std::string(kUnified) + "/cgroup.procs").c_str(), W_OK) == 0 && ::mkdir(dir.c_str(), 0755) == 0) {
      cgroup_dir = dir;
      std::ofstream(dir + "/cgroup.procs") << child;
    } else {
      std::fprintf(stderr, "NARROWED: no writable cgroup2 mount at %s; the hostile cgroup name is not tested\n", kUnified);
    }
  }

  void TearDown() override {
    if (child > 0) {
      ::kill(child, SIGKILL);
      ::waitpid(child, nullptr, 0);
    }
    if (!cgroup_dir.empty()) {
      for (int attempt = 0; attempt < 100 && ::rmdir(cgroup_dir.c_str()) != 0; ++attempt) {
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
      }
    }
  }
};

TEST_F(HostileNames, JsonOutputsStayValidJson) {
  const std::string pid = std::to_string(child);
  for (const std::string& arguments : {std::string("top --all --json"), std::string("top --json"),
                                       std::string("top --json --by cgroup --all"), "explain " + pid + " --json",
                                       std::string("doctor --json")}) {
    const auto result = run(arguments);
    EXPECT_EQ(result.exit_code, 0) << arguments << ":\n" << result.out.substr(0, 400);
    nlohmann::json document;
    ASSERT_NO_THROW(document = nlohmann::json::parse(result.out)) << arguments;
    if (arguments.starts_with("top --all")) {
      bool found = false;
      for (const auto& candidate : document.at("candidates")) {
        if (candidate.at("pid").get<pid_t>() == child) {
          found = true;
          // Invalid bytes become U+FFFD; the control characters are JSON-escaped and survive.
          EXPECT_EQ(candidate.at("comm"), "\xEF\xBF\xBD\xEF\xBF\xBD\x1b[2J\x07x");
          if (!cgroup_dir.empty()) {
            EXPECT_NE(candidate.at("cgroup").get<std::string>().find("\x1b]0;pwned\x07"), std::string::npos);
          }
        }
      }
      EXPECT_TRUE(found) << "pid " << child << " not in top --all";
    }
  }
}

TEST_F(HostileNames, HumanOutputsEscapeControlCharacters) {
  const std::string pid = std::to_string(child);
  for (const std::string& arguments : {std::string("top --all"), std::string("top --by cgroup --all"),
                                       "explain " + pid, std::string("doctor")}) {
    const auto result = run(arguments);
    EXPECT_EQ(result.exit_code, 0) << arguments;
    EXPECT_TRUE(terminalSafe(result.out)) << arguments;
  }
  const auto top = run("top --all");
  EXPECT_NE(top.out.find("\\xFF\\xFE\\x1B"), std::string::npos) << "the name is shown escaped (cut to its guardian::text::column)";
  const auto explain = run("explain " + pid);
  EXPECT_NE(explain.out.find("\\xFF\\xFE\\x1B[2J\\x07x"), std::string::npos) << explain.out.substr(0, 300);
  if (!cgroup_dir.empty()) {
    EXPECT_NE(explain.out.find("\\x1B]0;pwned\\x07"), std::string::npos) << explain.out.substr(0, 300);
  }
}

TEST(HostileConfig, ErrorMessagesAreTerminalSafe) {
  const std::string path = ::testing::TempDir() + "oomguard-hostile-" + std::to_string(::getpid()) + ".json";
  // JSON escapes decode to ESC and BEL, which the error message quotes back.
  std::ofstream(path) << R"({"mode": "\u001b[31mact\u0007"})";
  const auto result = run("check-config " + path);
  EXPECT_EQ(result.exit_code, 2);
  EXPECT_TRUE(terminalSafe(result.out));
  EXPECT_NE(result.out.find("/mode: must be one of"), std::string::npos) << result.out;
  ::unlink(path.c_str());
}

TEST(HostileArguments, RootsAndDomainsThatLeaveTheTreeAreRefused) {
  // Once: `top --domain /pods/a/..` read outside the cgroup root, `--cgroup-root /nonexistent` exited 0
  // with nothing, and `run` on a missing --proc-root kept running with totalpages 0.
  for (const char* arguments : {"top --domain /pods/a/..", "top --domain /./x", "top --domain //x",
                                "--cgroup-root /nonexistent-oomguard top", "--proc-root /nonexistent-oomguard top",
                                "--proc-root /nonexistent-oomguard run"}) {
    const auto result = run(arguments);
    EXPECT_EQ(result.exit_code, 2) << arguments << ": " << result.out;
  }
  EXPECT_NE(run("top --domain /pods/a/..").out.find("must stay below the cgroup root"), std::string::npos);
  const std::string empty = ::testing::TempDir() + "oomguard-empty-proc-" + std::to_string(::getpid());
  ASSERT_EQ(::mkdir(empty.c_str(), 0700), 0);
  const auto blind = run("--proc-root " + empty + " run --metrics-listen 127.0.0.1:0");
  EXPECT_EQ(blind.exit_code, 1) << blind.out;
  EXPECT_NE(blind.out.find("does not look like /proc"), std::string::npos) << blind.out;
  ::rmdir(empty.c_str());
}

TEST(HostileArguments, ActModeRefusesAProcTreeThatIsNotThisNamespacesProc) {
  // Once: a fixture tree whose only pid was a real unrelated process's pid made act mode kill that
  // process (the pidfd pins by pid in *this* namespace, whatever the tree says).
  const std::string fixture = std::string(OOMGUARD_SOURCE_DIR) + "/tests/fixtures/tree-basic";
  const std::string config = ::testing::TempDir() + "oomguard-act-" + std::to_string(::getpid()) + ".json";
  std::ofstream(config) << R"({"mode": "act", "cgroups": [{"match": "/**", "act": {"action": "kill-worst", "when": {"on_memory_max": true}}}]})";
  const auto refused = run("--proc-root " + fixture + "/proc --cgroup-root " + fixture + "/cgroup run --config " + config +
                           " --metrics-listen 127.0.0.1:0");
  EXPECT_EQ(refused.exit_code, 2) << refused.out;
  EXPECT_NE(refused.out.find("mode act refused: --proc-root"), std::string::npos) << refused.out;
  EXPECT_NE(refused.out.find("is not a procfs mount"), std::string::npos) << refused.out;
  ::unlink(config.c_str());
  EXPECT_TRUE(guardian::io::SystemActuator::rootsRefusal(fixture + "/proc", "/sys/fs/cgroup").has_value());
  // The live /proc passes its half; the cgroup root must be cgroup2.
  const auto live = guardian::io::SystemActuator::rootsRefusal("/proc", kUnified);
  if (live) {
    EXPECT_EQ(live->find("--proc-root"), std::string::npos) << *live;
  }
}

}  // namespace
}  // namespace oomguard::testing
