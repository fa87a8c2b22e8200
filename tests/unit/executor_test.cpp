// The Executor on a fixture node with a fake clock: the re-check before a kill (the pinned pid must still
// be the chosen process), group kills and their release, protections only in mode act. Nothing is
// spawned or signalled (FakeActuator records).
#include "guardian/daemon/executor.hpp"
#include "guardian/kube/workloads.hpp"

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
    hooks = std::make_unique<io::HookRunner>(io_context, [] { return monotonicNowUs(); });
    executor = std::make_unique<Executor>(*node, actuator, *hooks, config, options, *log, metrics, stats, fixture.clock);
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
  boost::asio::io_context io_context;  // the hooks' processes are watched on it
  std::unique_ptr<io::HookRunner> hooks;
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

TEST_F(ExecutorTest, AVictimUnderSigtermHoldsItsDomainThroughItsGrace) {
  // The victim keeps its memory while it handles SIGTERM: the bounded wait (victim_wait_s, 2 s by
  // default) starts only when the grace ends, or a second process would be killed for the same OOM.
  start(kAct);
  policies::Outcome outcome;
  config::ActRule rule;
  rule.action = policies::Action::kKillWorst;
  rule.sigterm_grace_ms = 10'000;
  executor->kill("/pod", candidate(big, "leaker", "/pod/app"), rule, "headroom", fixture.now_us, outcome);
  ASSERT_EQ(outcome.result, DecisionResult::kKilled);
  const uint64_t killed_us = fixture.now_us;
  executor->releaseVictims(killed_us + 5'000'000);
  EXPECT_TRUE(executor->gate().refusal("/pod", killed_us + 5'000'000)) << "inside the grace: still waited on";
  EXPECT_TRUE(executor->gate().refusal("/pod", killed_us + 11'900'000)) << "the grace, then the bounded wait";
  EXPECT_FALSE(executor->gate().refusal("/pod", killed_us + 12'000'000 + 1));
}

TEST_F(ExecutorTest, TheKernelsVictimIsReleasedOnlyWhenKnownGone) {
  // Gone (ESRCH) means its memory is back; a pin that fails otherwise (no descriptor left) tells
  // nothing, and the domain waits on the victim for the bounded time.
  start(kAct);
  actuator.gone.insert(medium);
  executor->recordKernelKill("/pod/side", medium, fixture.now_us);
  EXPECT_FALSE(executor->gate().refusal("/pod", fixture.now_us)) << "gone: released at once";
  actuator.unpinnable.insert(big);
  executor->recordKernelKill("/pod/app", big, fixture.now_us);
  EXPECT_TRUE(executor->gate().refusal("/pod", fixture.now_us + 1'000'000)) << "unknown: waited on";
  EXPECT_FALSE(executor->gate().refusal("/pod", fixture.now_us + 2'000'000)) << "for the bounded wait only";
}

TEST_F(ExecutorTest, AReloadChangesTheVictimWait) {
  start(kAct);
  kill(candidate(big, "leaker", "/pod/app"));
  EXPECT_FALSE(executor->gate().refusal("/pod", fixture.now_us + 3'000'000)) << "the default wait, 2 s";
  config.victim_wait_s = 5;  // what Daemon::reload does: the config in place, then configChanged()
  executor->configChanged();
  EXPECT_TRUE(executor->gate().refusal("/pod", fixture.now_us + 3'000'000)) << "the reloaded wait, 5 s";
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
  fixture.write("cgroup/pod/app/cgroup.events", "populated 1\nfrozen 0\n");
  executor->releaseVictims(fixture.now_us + 1000);
  EXPECT_TRUE(executor->gate().refusal("/pod", fixture.now_us + 1000));  // still has tasks
  fixture.write("cgroup/pod/app/cgroup.events", "populated 0\nfrozen 0\n");
  executor->releaseVictims(fixture.now_us + 2000);
  EXPECT_FALSE(executor->gate().refusal("/pod", fixture.now_us + 2000));
}

TEST_F(ExecutorTest, AGroupKillOfAPodCgroupHoldsUntilItsChildrenAreEmpty) {
  // Found in review: the gate was released when the killed cgroup's own cgroup.procs was empty, which a
  // pod cgroup's always is (its tasks live in its containers' cgroups): a second kill could follow while
  // the pod was still dying. "populated" in cgroup.events covers the whole subtree.
  start(kAct);
  auto victim = candidate(big, "leaker", "/pod/app");
  victim.group_kill_cgroup = "/pod";
  kill(victim);
  fixture.write("cgroup/pod/cgroup.procs", "");  // no task of its own
  fixture.write("cgroup/pod/cgroup.events", "populated 1\nfrozen 0\n");
  executor->releaseVictims(fixture.now_us + 1000);
  EXPECT_TRUE(executor->gate().refusal("/", fixture.now_us + 1000)) << "the pod is still dying";
  fixture.write("cgroup/pod/cgroup.events", "populated 0\nfrozen 0\n");
  executor->releaseVictims(fixture.now_us + 2000);
  EXPECT_FALSE(executor->gate().refusal("/", fixture.now_us + 2000));
}

// Found in review: a group was killed through a member chosen at the last refresh (a grower) without
// checking that member was still there: the group of an exited grower may be innocent now.
TEST_F(ExecutorTest, AGroupIsKilledOnlyThroughAMemberThatIsStillThere) {
  start(kAct);
  auto victim = candidate(big, "leaker", "/pod/app");
  victim.group_kill_cgroup = "/pod/app";
  actuator.gone = {big};
  const auto gone = kill(victim);
  EXPECT_EQ(gone.result, DecisionResult::kGone);
  EXPECT_EQ(gone.action, DecisionAction::kKillCgroup);
  actuator.gone.clear();
  fixture.write("cgroup/pod/app/cgroup.procs", "");  // moved out of the group since it was ranked
  const auto moved = kill(victim);
  EXPECT_EQ(moved.result, DecisionResult::kChanged);
  EXPECT_TRUE(actuator.actions.empty());
}

// Protected since it was ranked (an operator or its own runtime wrote oom_score_adj): the kernel would
// pass it over now, and so does oomguard.
TEST_F(ExecutorTest, AVictimProtectedSinceItWasRankedIsNotKilled) {
  start(kAct);
  fixture.write("proc/" + std::to_string(big) + "/oom_score_adj", "-1000\n");
  const auto pinned = kill(candidate(big, "leaker", "/pod/app"));
  EXPECT_EQ(pinned.result, DecisionResult::kChanged);
  EXPECT_NE(pinned.detail.value_or("").find("oom_score_adj -1000 now"), std::string::npos) << pinned.detail.value_or("");
  EXPECT_TRUE(actuator.actions.empty());
  fixture.write("proc/" + std::to_string(big) + "/oom_score_adj", "-500\n");
  EXPECT_EQ(kill(candidate(big, "leaker", "/pod/app")).result, DecisionResult::kKilled) << "killable: the kernel's call";
}

// A pod's pressure-action kill-group names the whole pod cgroup, no member: nothing to pin or re-check.
TEST_F(ExecutorTest, AWholePodAskedForAsSuchIsKilledWithoutAMember) {
  start(kAct);
  policies::VictimCandidate pod;
  pod.cgroup = "/pod";
  pod.group_kill_cgroup = "/pod";
  const auto outcome = kill(pod);
  EXPECT_EQ(outcome.result, DecisionResult::kKilled) << outcome.detail.value_or("");
  EXPECT_EQ(actuator.actions, (std::vector<std::string>{"kill-cgroup /pod"}));
}

TEST_F(ExecutorTest, ProtectionsAreWrittenOnlyInModeAct) {
  const std::string rules = R"("cgroups": [{"match": "/pod/app", "protection": -500}, {"match": "/**"}]})";
  start(R"({"mode": "observe", )" + rules);
  HostScan scan;
  cgroupfs::ProcessSnapshot process;
  process.pid = big;
  scan.processes.push_back(process);
  scan.by_pid[big] = 0;
  scan.read_boot_ticks = fixture.boot_ticks;
  executor->applyProtections(scan, {"/", "/pod", "/pod/app", "/pod/side"});
  EXPECT_TRUE(actuator.actions.empty());

  start(R"({"mode": "act", )" + rules);
  // The process under this pid started (tick 50'000) after a scan read at tick 40'000: a recycled pid,
  // not the process the scan saw. Nothing is written to it.
  scan.read_boot_ticks = 40'000;
  executor->applyProtections(scan, {"/", "/pod", "/pod/app", "/pod/side"});
  EXPECT_TRUE(actuator.actions.empty());
  scan.read_boot_ticks = fixture.boot_ticks;
  executor->applyProtections(scan, {"/", "/pod", "/pod/app", "/pod/side"});
  EXPECT_EQ(actuator.actions, (std::vector<std::string>{"adj " + std::to_string(big) + " -500"}));
  EXPECT_EQ(stats.protections_applied, 1U);
}

// A quiet process (taken from an earlier refresh, not read by this one) is compared by its
// oom_score_adj read now: a write of ours since its last read is not made again at every refresh, and a
// value someone else has put back is seen at once.
TEST_F(ExecutorTest, AQuietProcesssProtectionComparesTheValueReadNow) {
  start(R"({"mode": "act", "cgroups": [{"match": "/pod/app", "protection": -500}, {"match": "/**"}]})");
  HostScan scan;
  cgroupfs::ProcessSnapshot process;
  process.pid = big;
  process.oom_score_adj = 0;  // as its last read found it
  scan.processes.push_back(process);
  scan.fresh.push_back(false);
  scan.by_pid[big] = 0;
  scan.read_boot_ticks = fixture.boot_ticks;
  fixture.write("proc/" + std::to_string(big) + "/oom_score_adj", "-500\n");  // our write, since
  executor->applyProtections(scan, {"/", "/pod", "/pod/app", "/pod/side"});
  EXPECT_TRUE(actuator.actions.empty());
  fixture.write("proc/" + std::to_string(big) + "/oom_score_adj", "0\n");  // put back by someone else
  executor->applyProtections(scan, {"/", "/pod", "/pod/app", "/pod/side"});
  EXPECT_EQ(actuator.actions, (std::vector<std::string>{"adj " + std::to_string(big) + " -500"}));
}

// A process rule's protection is put back once no process rule matches the process (an exec into
// another program): to what it had before the first write, and only to that process (its start time);
// where its cgroup's rule sets a value, that value stands instead.
class ProcessRuleProtection : public ExecutorTest {
 protected:
  HostScan scan;
  void SetUp() override {
    ExecutorTest::SetUp();
    cgroupfs::ProcessSnapshot process;
    process.pid = big;
    process.status.comm = "leaker";
    process.status.has_mm = true;
    process.oom_score_adj = 100;  // as its runtime set it
    fixture.write("proc/" + std::to_string(big) + "/oom_score_adj", "100\n");
    scan.processes.push_back(process);
    scan.by_pid[big] = 0;
    scan.read_boot_ticks = fixture.boot_ticks;
  }
  // The process as the next refresh reads it: its name, and its oom_score_adj (in /proc too: the fake
  // actuator writes nothing).
  void runs(const std::string& comm, int adj) {
    scan.processes[0].status.comm = comm;
    scan.processes[0].oom_score_adj = adj;
    fixture.write("proc/" + std::to_string(big) + "/oom_score_adj", std::to_string(adj) + "\n");
  }
  [[nodiscard]] std::string adj(int value) const { return "adj " + std::to_string(big) + " " + std::to_string(value); }
};

TEST_F(ProcessRuleProtection, IsPutBackWhenTheProcessNoLongerMatches) {
  start(R"({"mode": "act", "processes": [{"comm": "^leaker$", "protection": -800}], "cgroups": [{"match": "/**"}]})");
  executor->applyProtections(scan, {"/", "/pod", "/pod/app", "/pod/side"});
  EXPECT_EQ(actuator.actions, (std::vector<std::string>{adj(-800)}));
  runs("leaker", -800);
  executor->applyProtections(scan, {"/", "/pod", "/pod/app", "/pod/side"});
  EXPECT_EQ(actuator.actions.size(), 1U) << "set already: nothing written";
  runs("postgres", -800);  // exec'd another program
  executor->applyProtections(scan, {"/", "/pod", "/pod/app", "/pod/side"});
  EXPECT_EQ(actuator.actions, (std::vector<std::string>{adj(-800), adj(100)})) << "the value before the rule's write";
  EXPECT_NE(log_text.str().find("\"restored\""), std::string::npos);
  runs("postgres", 100);
  executor->applyProtections(scan, {"/", "/pod", "/pod/app", "/pod/side"});
  EXPECT_EQ(actuator.actions.size(), 2U) << "put back once";
}

TEST_F(ProcessRuleProtection, AValueSetSinceByTheNewProgramStandsAndAnUnreadProcessIsNotJudged) {
  start(R"({"mode": "act", "processes": [{"comm": "^leaker$", "protection": -800}], "cgroups": [{"match": "/**"}]})");
  executor->applyProtections(scan, {"/", "/pod", "/pod/app", "/pod/side"});
  runs("leaker", -800);
  HostScan unread = scan;  // a refresh whose read of the process failed: not in its scan
  unread.processes.clear();
  unread.by_pid.clear();
  executor->applyProtections(unread, {"/", "/pod", "/pod/app", "/pod/side"});
  EXPECT_EQ(actuator.actions, (std::vector<std::string>{adj(-800)})) << "not judged unread";
  runs("postgres", 300);  // exec'd, and the new program set its own value
  executor->applyProtections(scan, {"/", "/pod", "/pod/app", "/pod/side"});
  EXPECT_EQ(actuator.actions, (std::vector<std::string>{adj(-800)})) << "the new program's 300 stands";
}

TEST_F(ProcessRuleProtection, ItsCgroupsRuleStandsInsteadAndARecycledPidIsLeftAlone) {
  start(R"({"mode": "act", "processes": [{"comm": "^leaker$", "protection": -800}],
            "cgroups": [{"match": "/pod/app", "protection": -500}, {"match": "/**"}]})");
  executor->applyProtections(scan, {"/", "/pod", "/pod/app", "/pod/side"});
  runs("postgres", -800);
  executor->applyProtections(scan, {"/", "/pod", "/pod/app", "/pod/side"});
  EXPECT_EQ(actuator.actions, (std::vector<std::string>{adj(-800), adj(-500)})) << "the cgroup's rule, not 100";

  start(R"({"mode": "act", "processes": [{"comm": "^leaker$", "protection": -800}], "cgroups": [{"match": "/**"}]})");
  actuator.actions.clear();
  runs("leaker", 100);
  executor->applyProtections(scan, {"/", "/pod", "/pod/app", "/pod/side"});
  EXPECT_EQ(actuator.actions, (std::vector<std::string>{adj(-800)}));
  // Another process under the same pid, started after the write (tick 50'001): not the one written.
  fixture.addProcess(big, "postgres", "/pod/app", 600 * 1024, 50'001);
  runs("postgres", -800);
  scan.read_boot_ticks = 60'000;
  executor->applyProtections(scan, {"/", "/pod", "/pod/app", "/pod/side"});
  EXPECT_EQ(actuator.actions, (std::vector<std::string>{adj(-800)})) << "a recycled pid keeps what it has";
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

TEST_F(ExecutorTest, AForeignMemoryHighIsForgottenWithItsDomain) {
  start(R"({"mode": "act", "cgroups": [{"match": "/pod", "act": {"action": "kill-worst",
            "when": {"headroom_below": 0.25}, "memory_high_at_threshold": true}}, {"match": "/**"}]})");
  fixture.write("cgroup/pod/memory.high", "900000000\n");
  executor->applyMemoryHigh({{"/pod", NodeFixture::kLimitBytes}});
  executor->applyMemoryHigh({});  // the pod is gone: its note goes too (pods come and go for months)
  executor->applyMemoryHigh({{"/pod", NodeFixture::kLimitBytes}});  // a new pod under the same path
  const std::string text = log_text.str();
  EXPECT_NE(text.find("memory_high_left"), text.rfind("memory_high_left")) << "said for each pod: " << text;
  EXPECT_TRUE(actuator.actions.empty());
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

TEST_F(ExecutorTest, APodsGraceIsBoundedByTheOperatorsOutsideProtectedNamespaces) {
  // Issue 16: a tenant's sigterm-grace-seconds replaced the operator's grace even when the operator
  // killed at once (0). Outside protected_namespaces the rule's grace is now the upper bound.
  const std::string pod_cgroup =
      "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod2c48913c_b29f_11e7_9350_020968147796.slice";
  const std::string container = pod_cgroup + "/cri-containerd-4f2d.scope";
  std::filesystem::create_directories(fixture.root / ("cgroup" + container));
  fixture.addProcess(big, "leaker", container, 600 * 1024);
  start(R"({"mode": "act", "kubernetes": {"protected_namespaces": ["platform"]}})");
  kube::Workloads workloads(config.kubernetes.tenant, 8LL << 30);
  executor->setWorkloads(&workloads);
  kube::KubePod pod;
  pod.uid = "2c48913c-b29f-11e7-9350-020968147796";
  pod.name = "web";
  pod.annotations = {{"oomguard.io/v1.sigterm-grace-seconds", "8"}};
  const auto graceFor = [&](const std::string& namespace_name, uint32_t rule_grace_ms,
                            const std::string& reason = "headroom") {
    pod.namespace_name = namespace_name;
    workloads.upsert(pod);
    actuator.actions.clear();
    config::ActRule rule;
    rule.action = policies::Action::kKillWorst;
    rule.sigterm_grace_ms = rule_grace_ms;
    policies::Outcome outcome;
    executor->kill("/", candidate(big, "leaker", container), rule, reason, fixture.now_us, outcome);
    executor->releaseVictims(fixture.now_us += 10'000'000);  // past the victim wait: the next kill may follow
    return actuator.actions.empty() ? "none: " + outcome.detail.value_or("") : actuator.actions.front();
  };
  const std::string kill = "kill " + std::to_string(big) + " grace ";
  EXPECT_EQ(graceFor("team-a", 0), kill + "0") << "the operator kills at once: so does the tenant's pod";
  EXPECT_EQ(graceFor("team-a", 3000), kill + "3000") << "8 s asked, 3 s allowed";
  EXPECT_EQ(graceFor("team-a", 20000), kill + "8000");
  EXPECT_EQ(graceFor("platform", 0), kill + "8000") << "a protected namespace's own grace stands";
  EXPECT_EQ(graceFor("team-a", 0, kPodPressureReason), kill + "8000") << "a kill the pod asked for takes its grace";
}

}  // namespace
}  // namespace oomguard::guardian::daemon
