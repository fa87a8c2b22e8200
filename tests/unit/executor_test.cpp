// The Executor on a fixture node with a fake clock: the re-check before a kill (the pinned pid must still
// be the chosen process), group kills and their release, protections only in mode act. Nothing is
// spawned or signalled (FakeActuator records).
#include "guardian/daemon/executor.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <sstream>

#include "daemon_fixture.hpp"
#include "guardian/daemon/rankings.hpp"
#include "guardian/exporter/metrics.hpp"

namespace oomguard::guardian::daemon {
namespace {

using policies::DecisionAction;
using policies::DecisionResult;

class ExecutorTest : public ::testing::Test {
 protected:
  NodeFixture fixture;
  const pid_t big = ::getpid();
  const pid_t medium = ::getppid();

  void SetUp() override {
    fixture.addProcess(big, "leaker", "/pod/app", 600 * 1024);
    fixture.addProcess(medium, "sidecar", "/pod/side", 200 * 1024);
  }

  void start(const std::string& config_text) {
    config = config::parseConfig(config_text, "test");
    node = std::make_unique<io::Node>(fixture.procRoot(), fixture.cgroupRoot());
    options.proc_root = fixture.procRoot();
    log = std::make_unique<io::EventLog>(log_text, [] { return std::chrono::system_clock::now(); });
    executor = std::make_unique<Executor>(*node, actuator, config, options, *log, metrics, stats, fixture.clock);
    executor->markSnapshot();
  }

  [[nodiscard]] policies::VictimCandidate candidate(pid_t pid, const std::string& comm, const std::string& cgroup) const {
    policies::VictimCandidate victim;
    victim.pid = pid;
    victim.comm = comm;
    victim.cgroup = cgroup;
    victim.points = 100;
    return victim;
  }

  policies::Outcome kill(const policies::VictimCandidate& victim) {
    policies::Outcome outcome;
    config::ActRule rule;
    rule.action = policies::Action::kKillWorst;
    executor->kill("/pod", victim, rule, "headroom", fixture.now_us, outcome);
    return outcome;
  }

  static constexpr const char* kAct = R"({"mode": "act"})";

  config::Config config;
  DaemonOptions options;
  std::unique_ptr<io::Node> node;
  std::ostringstream log_text;
  std::unique_ptr<io::EventLog> log;
  DaemonStats stats;
  FakeActuator actuator;
  exporter::NullMetrics metrics;
  std::unique_ptr<Executor> executor;
};

TEST_F(ExecutorTest, TheChosenProcessIsKilledAndHoldsItsDomains) {
  start(kAct);
  const auto outcome = kill(candidate(big, "leaker", "/pod/app"));
  EXPECT_EQ(outcome.action, DecisionAction::kKill);
  EXPECT_EQ(outcome.result, DecisionResult::kKilled);
  EXPECT_EQ(actuator.actions, (std::vector<std::string>{"kill " + std::to_string(big) + " grace 0"}));
  // The signal's time is kept (the decision's signal_us), and the memory is released after it.
  EXPECT_EQ(outcome.signalled_at_us, fixture.now_us);
  EXPECT_EQ(actuator.released, (std::vector<pid_t>{big}));
  EXPECT_NE(outcome.detail->find("released"), std::string::npos) << *outcome.detail;
  EXPECT_TRUE(executor->gate().refusal("/pod", fixture.now_us));
  EXPECT_TRUE(executor->gate().refusal("/", fixture.now_us));
  EXPECT_FALSE(executor->gate().refusal("/other", fixture.now_us));
}

TEST_F(ExecutorTest, AProcessThatIsNoLongerTheChosenOneIsNotKilled) {
  start(kAct);
  const auto renamed = kill(candidate(big, "other-comm", "/pod/app"));
  EXPECT_EQ(renamed.result, DecisionResult::kChanged);
  const auto moved = kill(candidate(big, "leaker", "/pod/side"));
  EXPECT_EQ(moved.result, DecisionResult::kChanged);
  const auto vanished = kill(candidate(4'000'000, "leaker", "/pod/app"));
  EXPECT_EQ(vanished.result, DecisionResult::kChanged);
  EXPECT_TRUE(actuator.actions.empty());
  EXPECT_EQ(stats.kills_no_data, 3U);
}

TEST_F(ExecutorTest, APidRecycledAfterTheSnapshotIsNotKilled) {
  start(kAct);
  fixture.addProcess(big, "leaker", "/pod/app", 600 * 1024, /*start_ticks=*/fixture.boot_ticks + 1);
  const auto outcome = kill(candidate(big, "leaker", "/pod/app"));
  EXPECT_EQ(outcome.result, DecisionResult::kChanged);
  ASSERT_TRUE(outcome.detail);
  EXPECT_NE(outcome.detail->find("recycled pid"), std::string::npos) << *outcome.detail;
  EXPECT_TRUE(actuator.actions.empty());
}

TEST_F(ExecutorTest, AGroupKillHoldsUntilTheCgroupIsEmpty) {
  start(kAct);
  auto victim = candidate(big, "leaker", "/pod/app");
  victim.group_kill_cgroup = "/pod/app";
  const auto outcome = kill(victim);
  EXPECT_EQ(outcome.action, DecisionAction::kKillCgroup);
  EXPECT_EQ(outcome.killed_cgroup, "/pod/app");
  EXPECT_EQ(actuator.actions, (std::vector<std::string>{"kill-cgroup /pod/app"}));
  executor->releaseVictims(fixture.now_us + 1000);
  EXPECT_TRUE(executor->gate().refusal("/pod", fixture.now_us + 1000));  // still has tasks
  fixture.write("cgroup/pod/app/cgroup.procs", "");
  executor->releaseVictims(fixture.now_us + 2000);
  EXPECT_FALSE(executor->gate().refusal("/pod", fixture.now_us + 2000));
}

TEST_F(ExecutorTest, ProtectionsAreWrittenOnlyInModeAct) {
  const std::string rules = R"("cgroups": [{"match": "/pod/app", "protection": -500}, {"match": "/**"}]})";
  start(R"({"mode": "observe", )" + rules);
  HostScan scan;
  cgroupfs::ProcessSnapshot process;
  process.pid = big;
  scan.processes.push_back(process);
  scan.by_pid[big] = 0;
  executor->applyProtections(scan, {"/", "/pod", "/pod/app", "/pod/side"});
  EXPECT_TRUE(actuator.actions.empty());

  start(R"({"mode": "act", )" + rules);
  executor->applyProtections(scan, {"/", "/pod", "/pod/app", "/pod/side"});
  EXPECT_EQ(actuator.actions, (std::vector<std::string>{"adj " + std::to_string(big) + " -500"}));
  EXPECT_EQ(stats.protections_applied, 1U);
}

TEST_F(ExecutorTest, TheKernelsVictimHoldsItsSubtree) {
  start(kAct);
  executor->recordKernelKill("/pod/app", 0, fixture.now_us);  // memory.events oom_kill: pid not known yet
  EXPECT_TRUE(executor->gate().refusal("/pod", fixture.now_us));
  EXPECT_FALSE(executor->gate().refusal("/elsewhere", fixture.now_us));
}

TEST_F(ExecutorTest, MemoryHighIsSetAtTheThresholdAndRestored) {
  start(R"({"mode": "act", "cgroups": [{"match": "/pod", "act": {"action": "kill-worst",
            "when": {"headroom_below": 0.25}, "memory_high_at_threshold": true}}, {"match": "/**"}]})");
  fixture.write("cgroup/pod/memory.high", "max\n");
  const std::vector<std::pair<std::string, uint64_t>> domains = {{"/pod", NodeFixture::kLimitBytes}};
  executor->applyMemoryHigh(domains);
  const uint64_t wanted = NodeFixture::kLimitBytes / 4 * 3;  // 768 MiB: a whole number of pages
  ASSERT_EQ(actuator.actions, (std::vector<std::string>{"memory.high /pod " + std::to_string(wanted)}));
  fixture.write("cgroup/pod/memory.high", std::to_string(wanted) + "\n");  // what the real write does
  executor->applyMemoryHigh(domains);
  EXPECT_EQ(actuator.actions.size(), 1U) << "already there: nothing written";
  executor->restoreMemoryHigh();
  EXPECT_EQ(actuator.actions.back(), "memory.high /pod max");
}

TEST_F(ExecutorTest, AMemoryHighSetBySomeoneElseIsLeftAlone) {
  start(R"({"mode": "act", "cgroups": [{"match": "/pod", "act": {"action": "kill-worst",
            "when": {"headroom_below": 0.25}, "memory_high_at_threshold": true}}, {"match": "/**"}]})");
  fixture.write("cgroup/pod/memory.high", "900000000\n");  // kubelet's MemoryQoS, say
  executor->applyMemoryHigh({{"/pod", NodeFixture::kLimitBytes}});
  executor->applyMemoryHigh({{"/pod", NodeFixture::kLimitBytes}});
  executor->restoreMemoryHigh();
  EXPECT_TRUE(actuator.actions.empty());
  const std::string text = log_text.str();
  EXPECT_NE(text.find("memory_high_left"), std::string::npos) << text;
  EXPECT_EQ(text.find("memory_high_left"), text.rfind("memory_high_left")) << "logged once: " << text;
}

TEST_F(ExecutorTest, MemoryHighOverrideLowersAForeignValueAboveTheThresholdAndPutsItBack) {
  start(R"({"mode": "act", "cgroups": [{"match": "/pod", "act": {"action": "kill-worst",
            "when": {"headroom_below": 0.25}, "memory_high_at_threshold": true, "memory_high_override": true}},
            {"match": "/**"}]})");
  fixture.write("cgroup/pod/memory.high", "1000000000\n");  // kubelet's MemoryQoS: above the threshold
  executor->applyMemoryHigh({{"/pod", NodeFixture::kLimitBytes}});
  const uint64_t wanted = NodeFixture::kLimitBytes / 4 * 3;
  ASSERT_EQ(actuator.actions, (std::vector<std::string>{"memory.high /pod " + std::to_string(wanted)}));
  EXPECT_NE(log_text.str().find("memory_high_override"), std::string::npos) << log_text.str();
  fixture.write("cgroup/pod/memory.high", std::to_string(wanted) + "\n");
  EXPECT_TRUE(executor->memoryHighInForce("/pod"));
  executor->restoreMemoryHigh();
  EXPECT_EQ(actuator.actions.back(), "memory.high /pod 1000000000") << "theirs goes back, not max";
}

TEST_F(ExecutorTest, MemoryHighOverrideLeavesAForeignValueBelowTheThresholdAlone) {
  start(R"({"mode": "act", "cgroups": [{"match": "/pod", "act": {"action": "kill-worst",
            "when": {"headroom_below": 0.25}, "memory_high_at_threshold": true, "memory_high_override": true}},
            {"match": "/**"}]})");
  fixture.write("cgroup/pod/memory.high", "500000000\n");  // already throttles before the threshold
  executor->applyMemoryHigh({{"/pod", NodeFixture::kLimitBytes}});
  executor->restoreMemoryHigh();
  EXPECT_TRUE(actuator.actions.empty());
  EXPECT_FALSE(executor->memoryHighInForce("/pod"));
}

TEST_F(ExecutorTest, MemoryHighIsNeverWrittenInObserveMode) {
  start(R"({"mode": "observe", "cgroups": [{"match": "/pod", "act": {"action": "kill-worst",
            "when": {"headroom_below": 0.25}, "memory_high_at_threshold": true}}, {"match": "/**"}]})");
  fixture.write("cgroup/pod/memory.high", "max\n");
  executor->applyMemoryHigh({{"/pod", NodeFixture::kLimitBytes}});
  EXPECT_TRUE(actuator.actions.empty());
}

}  // namespace
}  // namespace oomguard::guardian::daemon
