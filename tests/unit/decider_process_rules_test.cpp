// Process rules in the Decider's choice (Decider::candidates): a process rule's preference wins over its
// cgroup rule's; by comm, by uid and by command line (the fixture's /proc/<pid>/cmdline, NULs between
// the arguments).
#include <gtest/gtest.h>

#include "decider_fixture.hpp"

namespace oomguard::guardian::daemon {
namespace {

constexpr const char* kActInPod =
    R"([{"match": "/pod", "act": {"action": "kill-worst", "when": {"headroom_below": 0.10}}},
        {"match": "/pod/app", "preference": "prefer"}, {"match": "/**"}])";

class DeciderProcessRules : public DeciderTest {
 protected:
  // The victim of one decision in /pod with `processes` as the config's process rules.
  pid_t victimWith(const std::string& processes) {
    start(kActInPod, R"("processes": )" + processes + ", ");
    fixture.setCurrent(NodeFixture::kLimitBytes / 100 * 95);
    const auto outcome = actInPod();
    return outcome.target ? outcome.target->victim.pid : 0;
  }
};

TEST_F(DeciderProcessRules, AProcessRuleWinsOverItsCgroupRule) {
  // Without a process rule the leaker (the largest, in /pod/app: "prefer") is chosen.
  EXPECT_EQ(victimWith("[]"), big);
  actuator.actions.clear();
  // "avoid" by comm, over its cgroup rule's "prefer": the sidecar goes first.
  EXPECT_EQ(victimWith(R"([{"comm": "^leaker$", "preference": "avoid"}])"), medium);
}

TEST_F(DeciderProcessRules, ByUidAndByCommandLine) {
  // The fixture's processes run as uid 0.
  EXPECT_EQ(victimWith(R"([{"comm": "^leaker$", "uid": [0], "preference": "omit"}])"), medium);
  actuator.actions.clear();
  EXPECT_EQ(victimWith(R"([{"comm": "^leaker$", "uid": [1000], "preference": "omit"}])"), big)
      << "another uid: the rule does not match";
}

TEST_F(DeciderProcessRules, ACommandLineIsMatchedAsARefreshKeptItNeverReadByTheDecision) {
  fixture.write("proc/" + std::to_string(big) + "/cmdline", std::string("java\0-Dapp=ledger\0-jar\0l.jar\0", 29));
  // Not kept yet (no refresh since the process started): the rule that needs it does not match.
  EXPECT_EQ(victimWith(R"([{"cmdline": "-Dapp=ledger -jar", "preference": "omit"}])"), big);
  // A refresh keeps it (Executor::applyProtections reads it once); the next decision matches it.
  rankings->refresh(facts, *watch_set, {});
  HostScan scan;
  cgroupfs::ProcessSnapshot leaker;
  leaker.pid = big;
  leaker.status.comm = "leaker";
  leaker.status.has_mm = true;
  scan.processes.push_back(leaker);
  scan.by_pid[big] = 0;
  executor->applyProtections(scan, {});
  actuator.actions.clear();
  fixture.setCurrent(NodeFixture::kLimitBytes / 100 * 95);
  fixture.now_us += 10'000'000;  // past the first victim's wait
  const auto outcome = actInPod();
  ASSERT_TRUE(outcome.target) << outcome.why.value_or("");
  EXPECT_EQ(outcome.target->victim.pid, medium);
}

}  // namespace
}  // namespace oomguard::guardian::daemon
