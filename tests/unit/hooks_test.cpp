// io::HookRunner with real processes: /bin/sh hooks that read their stdin and environment, exit with a
// status, hang past their timeout (with a child of their own), flood their output, or do not exist.
#include <gtest/gtest.h>

#include <signal.h>

#include <boost/asio/io_context.hpp>
#include <chrono>
#include <optional>
#include <string>

#include "guardian/config/config.hpp"
#include "guardian/io/hooks.hpp"

namespace oomguard::guardian::io {
namespace {

uint64_t nowUs() {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now().time_since_epoch()).count());
}

config::Hook shell(const std::string& script, uint32_t timeout_ms = 5000, size_t max_output_bytes = 4096) {
  return config::Hook{{"/bin/sh", "-c", script}, timeout_ms, max_output_bytes};
}

class HookRunnerTest : public ::testing::Test {
 protected:
  // Runs the loop for `ms` (again after it ran out of work: run_for returns at once on a stopped context).
  void turn(int ms) {
    io_.restart();
    io_.run_for(std::chrono::milliseconds(ms));
  }

  // Runs one hook to its outcome (at most 10 s of loop).
  HookOutcome runOne(const config::Hook& hook, const std::string& input = "", std::vector<std::string> env = {}) {
    std::optional<HookOutcome> got;
    runner_.run("pre_kill", hook, limits_, "victim-1", input, std::move(env),
                [&got](const HookOutcome& outcome) { got = outcome; });
    for (int i = 0; i < 1000 && !got; ++i) {
      turn(10);
    }
    EXPECT_TRUE(got.has_value()) << "no outcome within 10 s";
    return got.value_or(HookOutcome{});
  }

  boost::asio::io_context io_;
  HookRunner runner_{io_, nowUs};
  config::Hooks limits_;
};

TEST_F(HookRunnerTest, ReadsTheEventOnStdinWithItsEnvironmentAndItsOwnOomScoreAdj) {
  limits_.oom_score_adj = 1000;  // raising is always allowed (700 may be below oom_score_adj_min)
  // The adj is written right after the spawn: the hook reads it a little later.
  const HookOutcome outcome = runOne(
      shell("cat; echo \" pid=$OOMGUARD_PID path=$PATH\"; sleep 0.2; cat /proc/self/oom_score_adj; echo err >&2"),
      R"({"event":"pre_kill"})", {"OOMGUARD_PID=1234"});
  EXPECT_EQ(outcome.result, "ok") << outcome.detail;
  EXPECT_EQ(outcome.detail, "exit 0");
  EXPECT_EQ(outcome.output, "{\"event\":\"pre_kill\"} pid=1234 path=/usr/sbin:/usr/bin:/sbin:/bin\n1000\nerr\n");
  EXPECT_FALSE(outcome.output_truncated);
  EXPECT_GT(outcome.pid, 0);
  EXPECT_GE(outcome.duration_us, 200'000U);
  EXPECT_EQ(runner_.running(), 0U);
}

TEST_F(HookRunnerTest, ANonZeroExitOrASignalIsAFailure) {
  HookOutcome outcome = runOne(shell("exit 3"));
  EXPECT_EQ(outcome.result, "failed");
  EXPECT_EQ(outcome.detail, "exit 3");
  outcome = runOne(shell("kill -TERM $$"));
  EXPECT_EQ(outcome.result, "failed");
  EXPECT_EQ(outcome.detail, "signal " + std::to_string(SIGTERM));
}

TEST_F(HookRunnerTest, AHangingHookAndWhatItStartedAreKilledAtItsTimeout) {
  // The hook leaves a child that would outlive it: the group kill takes both. The timeout leaves the
  // shell time to start its child and say so under a loaded CI (at 100 ms, once, it had not yet).
  const uint64_t start_us = nowUs();
  const HookOutcome outcome = runOne(shell("sleep 30 & echo child=$!; sleep 30", 1000));
  const uint64_t took_us = nowUs() - start_us;
  EXPECT_EQ(outcome.result, "timeout") << outcome.detail;
  EXPECT_NE(outcome.detail.find("killed (its process group) after"), std::string::npos) << outcome.detail;
  EXPECT_GE(took_us, 1'000'000U);
  EXPECT_LT(took_us, 5'000'000U);
  const auto at = outcome.output.find("child=");
  ASSERT_NE(at, std::string::npos) << outcome.output;
  const pid_t child = std::stoi(outcome.output.substr(at + 6));
  // Killed with its group; reaped by init (or a subreaper) soon after.
  bool gone = false;
  for (int i = 0; i < 200 && !gone; ++i) {
    const std::string state_file = "/proc/" + std::to_string(child) + "/stat";
    FILE* stat = std::fopen(state_file.c_str(), "r");
    if (stat == nullptr) {
      gone = true;
      break;
    }
    char line[512] = {};
    const bool read = std::fgets(line, sizeof line, stat) != nullptr;
    std::fclose(stat);
    const std::string text = read ? line : "";
    const auto close = text.rfind(')');
    gone = close != std::string::npos && close + 2 < text.size() && text[close + 2] == 'Z';
    if (!gone) {
      turn(10);
    }
  }
  EXPECT_TRUE(gone) << "the hook's child " << child << " outlived the timeout";
}

TEST_F(HookRunnerTest, AMissingExecutableIsReportedAndNeverStarts) {
  const HookOutcome outcome = runOne(config::Hook{{"/nonexistent/oomguard-hook"}, 500, 4096});
  EXPECT_EQ(outcome.result, "missing");
  EXPECT_NE(outcome.detail.find("/nonexistent/oomguard-hook"), std::string::npos) << outcome.detail;
  EXPECT_EQ(outcome.pid, 0);
}

TEST_F(HookRunnerTest, OutputIsBoundedAndAFloodNeverBlocksTheHook) {
  // 1 MiB through a 64 KiB pipe: the hook finishes only because the rest is read and dropped.
  const HookOutcome outcome = runOne(shell("head -c 1048576 /dev/zero | tr '\\0' x", 5000, 1000));
  EXPECT_EQ(outcome.result, "ok") << outcome.detail;
  EXPECT_EQ(outcome.output, std::string(1000, 'x'));
  EXPECT_TRUE(outcome.output_truncated);
}

TEST_F(HookRunnerTest, TheCapsDropAHookAndNeverCallBackFromWithinRun) {
  limits_.max_concurrent = 1;
  std::optional<HookOutcome> first;
  std::optional<HookOutcome> second;
  std::optional<HookOutcome> same_victim;
  runner_.run("warn", shell("sleep 0.3"), limits_, "a", "", {}, [&](const HookOutcome& o) { first = o; });
  runner_.run("warn", shell("true"), limits_, "b", "", {}, [&](const HookOutcome& o) { second = o; });
  EXPECT_FALSE(second) << "called back from within run()";
  limits_.max_concurrent = 4;
  runner_.run("warn", shell("true"), limits_, "a", "", {}, [&](const HookOutcome& o) { same_victim = o; });
  EXPECT_TRUE(runner_.runningFor("a"));
  for (int i = 0; i < 500 && !first; ++i) {
    turn(10);
  }
  ASSERT_TRUE(first && second && same_victim);
  EXPECT_EQ(first->result, "ok");
  EXPECT_EQ(second->result, "dropped");
  EXPECT_NE(second->detail.find("hooks.max_concurrent"), std::string::npos) << second->detail;
  EXPECT_EQ(same_victim->result, "dropped");
  EXPECT_NE(same_victim->detail.find("same victim"), std::string::npos) << same_victim->detail;

  // The warn hooks and the kill hooks are capped apart: one warn hook started in this minute leaves the
  // kill hooks' budget whole.
  limits_.max_per_minute = 1;
  EXPECT_EQ(runOne(shell("true")).result, "ok") << "a warning used up the kill hooks' budget";
  const HookOutcome again = runOne(shell("true"));
  EXPECT_EQ(again.result, "dropped");
  EXPECT_NE(again.detail.find("kill hooks started in the last minute"), std::string::npos) << again.detail;
}

TEST_F(HookRunnerTest, ARunningWarnHookNeverHoldsAKillHookBack) {
  limits_.max_concurrent = 1;
  std::optional<HookOutcome> warned;
  runner_.run("warn", shell("sleep 0.5"), limits_, "warn:/pod", "", {}, [&](const HookOutcome& o) { warned = o; });
  EXPECT_EQ(runOne(shell("true")).result, "ok") << "the warn hook took the kill hooks' only slot";
  EXPECT_FALSE(warned) << "the warn hook should still run";
  for (int i = 0; i < 200 && !warned; ++i) {
    turn(10);
  }
  ASSERT_TRUE(warned);
  EXPECT_EQ(warned->result, "ok");
}

TEST_F(HookRunnerTest, StopKillsWhatRunsAndCallsNothingBack) {
  bool called = false;
  runner_.run("post_kill", shell("sleep 30"), limits_, "a", "", {}, [&](const HookOutcome&) { called = true; });
  turn(50);
  EXPECT_EQ(runner_.running(), 1U);
  // An outcome run() has posted but the loop has not delivered yet is not delivered after stop() either.
  runner_.run("post_kill", config::Hook{{"/nonexistent/hook"}, 500, 4096}, limits_, "b", "", {},
              [&](const HookOutcome&) { called = true; });
  const uint64_t start_us = nowUs();
  runner_.stop();
  EXPECT_LT(nowUs() - start_us, 500'000U);
  EXPECT_EQ(runner_.running(), 0U);
  turn(100);
  EXPECT_FALSE(called);
}

}  // namespace
}  // namespace oomguard::guardian::io
