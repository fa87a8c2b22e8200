// When data is missing, no kill, and no stale reading stands in for a fresh one: the Decider on a
// fixture node with a fake clock, where a reading, a ranking's read, a limit, a candidate's place or a
// level budget is missing or stale. Each case was a review finding in which the old code killed on what
// it could not see, or did not look when it should have.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <string>

#include "decider_fixture.hpp"

namespace oomguard::guardian::daemon {
namespace {

using policies::DecisionResult;

TEST_F(DeciderTest, AMissingReadingNeverKills) {
  start(kHeadroom);
  std::filesystem::remove(fixture.root / "cgroup/pod/memory.current");
  const auto outcome = actInPod();
  EXPECT_EQ(outcome.result, DecisionResult::kNoData);
  EXPECT_NE(outcome.why.value_or("").find("memory.current"), std::string::npos) << outcome.why.value_or("");
  EXPECT_TRUE(actuator.actions.empty());
  EXPECT_EQ(stats.kills_no_data, 0U) << "a cgroup on its way out is no failure: its domain goes with it";
}

// A "high" event is judged against memory.high now (eventStillStands); unread, it stood, and killed.
TEST_F(DeciderTest, AnUnreadableMemoryHighMakesNoKillOnAHighEvent) {
  start(R"([{"match": "/pod", "act": {"action": "kill-worst", "when": {"on_memory_high": true}}}, {"match": "/**"}])");
  fixture.setCurrent(NodeFixture::kLimitBytes / 2);
  fixture.write("cgroup/pod/memory.high", "half\n");
  executor->markSnapshot();
  auto state = rankings->rerankMemcg(facts, "/pod");
  ASSERT_TRUE(state.ok());
  policies::DomainObservation event;
  event.events_high = 1;
  const auto outcome = decider->act("/pod", *state.value(), *decider->actRuleFor("/pod"), event, fixture.now_us, *executor);
  EXPECT_EQ(outcome.result, DecisionResult::kNoData);
  EXPECT_NE(outcome.why.value_or("").find("memory.high"), std::string::npos) << outcome.why.value_or("");
  EXPECT_TRUE(actuator.actions.empty());
  EXPECT_EQ(stats.kills_no_data, 1U);
}

// A child cgroup of the domain that cannot be read (here its cgroup.procs is malformed) drops out of the
// walk: the ranking may miss the kernel's first candidate, and the neighbour would be killed instead.
TEST_F(DeciderTest, ARankingWithAnUnreadableCgroupMakesNoKill) {
  start(kHeadroom);
  fixture.setCurrent(NodeFixture::kLimitBytes / 100 * 95);
  fixture.write("cgroup/pod/app/cgroup.procs", "not a pid\n");  // the leaker's cgroup
  const auto outcome = actInPod();
  EXPECT_EQ(outcome.result, DecisionResult::kNoData);
  EXPECT_NE(outcome.why.value_or("").find("may miss a candidate"), std::string::npos) << outcome.why.value_or("");
  EXPECT_TRUE(actuator.actions.empty()) << "the sidecar is the only one the ranking saw";
  // Read again, the ranking is whole and the leaker is taken.
  fixture.write("cgroup/pod/app/cgroup.procs", std::to_string(big) + "\n");
  const auto again = actInPod();
  ASSERT_EQ(again.result, DecisionResult::kKilled) << again.why.value_or("");
  EXPECT_EQ(again.target->victim.pid, big);
}

// The watch set re-reads a limit at its own pace; a decision reads memory.max now. A limit raised since
// must not make a kill (95 % of the old limit is 47.5 % of the new one).
TEST_F(DeciderTest, ALimitRaisedSinceTheWatchSetReadItMakesNoKill) {
  start(kHeadroom);
  watch_set->add("/pod");
  ASSERT_NE(watch_set->find("/pod"), nullptr);
  ASSERT_EQ(watch_set->find("/pod")->memory_max_bytes, NodeFixture::kLimitBytes);
  fixture.setCurrent(NodeFixture::kLimitBytes / 100 * 95);
  fixture.write("cgroup/pod/memory.max", std::to_string(2 * NodeFixture::kLimitBytes) + "\n");
  const auto outcome = actInPod();
  EXPECT_EQ(outcome.result, DecisionResult::kBelowThreshold);
  EXPECT_TRUE(actuator.actions.empty());
  EXPECT_EQ(watch_set->find("/pod")->memory_max_bytes, NodeFixture::kLimitBytes) << "still the watch set's copy";
}

// A domain watched through the host's allocations is read when half its room could be gone, or every
// sixth refresh. Its budget was measured against its old rule's threshold: a reload (here 10 % -> 60 %,
// which 50 % usage crosses) must have it read at the next refresh, not up to 30 s later.
TEST_F(DeciderTest, AReloadJudgesNoDomainByItsOldBudget) {
  start(kHeadroom);
  fixture.setCurrent(NodeFixture::kLimitBytes / 2);
  fixture.write("proc/vmstat", "pgalloc_normal 1000000\n");
  ASSERT_TRUE(rankings->rerankMemcg(facts, "/pod").ok());
  EXPECT_TRUE(decider->checkLevels(fixture.now_us, true).crossed.empty());
  config = config::parseConfig(
      R"({"mode": "act", "refresh_interval_s": 1, "cgroups": [{"match": "/pod", "act": {"action": "kill-worst",
          "when": {"headroom_below": 0.60}}}, {"match": "/**"}]})",
      "test");
  decider->configChanged();
  fixture.now_us += 1'000'000;  // the refresh that follows a reload
  const auto crossed = decider->checkLevels(fixture.now_us, true).crossed;
  ASSERT_EQ(crossed.size(), 1U) << "judged by the budget of the old 10 % threshold";
  EXPECT_EQ(crossed.front().first, "/pod");
}

// A stall allocates nothing: a rule with a pressure threshold is read at every refresh, not only once
// the host has allocated half its room.
TEST_F(DeciderTest, AHeldPressureRuleIsReadAtEveryRefresh) {
  start(R"([{"match": "/pod", "act": {"action": "kill-worst", "when": {"headroom_below": 0.10,
             "pressure": {"kind": "some", "avg10": 0.3, "held_s": 2}}}}, {"match": "/**"}])");
  fixture.setCurrent(NodeFixture::kLimitBytes / 2);
  fixture.write("proc/vmstat", "pgalloc_normal 1000000\n");
  fixture.write("cgroup/pod/memory.pressure", "some avg10=0.00 avg60=0.00 avg300=0.00 total=0\n"
                                              "full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n");
  ASSERT_TRUE(rankings->rerankMemcg(facts, "/pod").ok());
  for (int refresh = 0; refresh < 3; ++refresh) {
    EXPECT_TRUE(decider->checkLevels(fixture.now_us, true).crossed.empty());
    fixture.now_us += 1'000'000;
  }
  EXPECT_EQ(stats.level_reads, 3U);
}

class HostDecisionTest : public DeciderTest {
 protected:
  // The host in mode act over its threshold, ranked once by a refresh.
  void startHost(const std::string& rules, const std::string& extra = "") {
    start(rules, extra + R"("host": {"act": {"action": "kill-worst", "when": {"mem_available_below": 0.10}}}, )");
    rankings->refresh(facts, *watch_set, {});
    fixture.now_us += 2'000'000;
    fixture.write("proc/meminfo", "MemTotal: 8388608 kB\nMemFree: 262144 kB\nMemAvailable: 262144 kB\n"
                                  "SwapTotal: 0 kB\nSwapFree: 0 kB\n");
  }
  policies::Outcome actOnHost(Rankings::HostReread reread) {
    executor->markSnapshot();
    rankings->rerankHost(facts, reread);
    const config::ActRule* rule = decider->actRuleFor("/");
    EXPECT_NE(rule, nullptr);
    return decider->act("/", *rankings->find("/"), *rule, policies::DomainObservation{}, fixture.now_us, *executor);
  }
};

// Found in review: a process new to the host's top below rescan_candidates kept an empty cgroup, so
// the rules that protect its cgroup did not apply and the executor's membership check passed on "".
TEST_F(HostDecisionTest, ACandidateNewToTheTopBelowTheRescanIsPlacedBeforeItsRulesApply) {
  namespace fs = std::filesystem;
  fs::remove_all(fixture.root / ("proc/" + std::to_string(medium)));
  fixture.write("cgroup/pod/side/cgroup.procs", "");
  startHost(R"([{"match": "/pod/**", "preference": "omit"}, {"match": "/**"}])", R"("rescan_candidates": 1, )");
  ASSERT_EQ(rankings->find("/")->top.size(), 1U);
  fixture.addProcess(medium, "sidecar", "/pod/side", 200 * 1024);  // started since the refresh
  const auto outcome = actOnHost(Rankings::HostReread::kEveryProcess);
  const auto& top = rankings->find("/")->top;
  ASSERT_EQ(top.size(), 2U);
  EXPECT_EQ(top[1].pid, medium);
  EXPECT_EQ(top[1].cgroup, "/pod/side") << "read although it ranks below rescan_candidates";
  EXPECT_EQ(outcome.result, DecisionResult::kNoVictim) << "both are omitted by their cgroup's rule";
  EXPECT_TRUE(actuator.actions.empty());
}

TEST_F(HostDecisionTest, ACandidateWhoseCgroupCannotBeReadIsNeverKilled) {
  namespace fs = std::filesystem;
  fs::remove_all(fixture.root / ("proc/" + std::to_string(medium)));
  fixture.write("cgroup/pod/side/cgroup.procs", "");
  startHost(R"([{"match": "/pod/app", "preference": "omit"}, {"match": "/**"}])", R"("rescan_candidates": 1, )");
  fixture.addProcess(medium, "sidecar", "/pod/side", 200 * 1024);
  fs::remove(fixture.root / ("proc/" + std::to_string(medium) + "/cgroup"));  // where it is: unknown
  const auto outcome = actOnHost(Rankings::HostReread::kEveryProcess);
  EXPECT_EQ(outcome.result, DecisionResult::kNoVictim) << outcome.why.value_or("");
  EXPECT_TRUE(actuator.actions.empty()) << "its rules may protect it";
}

// Found in review: rankHost found the gate closed and read only the refresh's top and the newcomers;
// the gate opened by the time act() ran, and the kill rested on that partial read.
TEST_F(HostDecisionTest, AKillNeverRestsOnAHostReadThatLeftOutOldProcesses) {
  startHost(R"([{"match": "/**"}])");
  const auto partial = actOnHost(Rankings::HostReread::kTopAndNewcomers);
  EXPECT_EQ(partial.result, DecisionResult::kHeld);
  EXPECT_NE(partial.held_by.value_or("").find("reads every process"), std::string::npos);
  EXPECT_TRUE(actuator.actions.empty());
  const auto whole = actOnHost(Rankings::HostReread::kEveryProcess);
  ASSERT_EQ(whole.result, DecisionResult::kKilled) << whole.why.value_or("");
  EXPECT_EQ(whole.target->victim.pid, big);
}

TEST_F(HostDecisionTest, AHostRankingWithAMalformedProcessMakesNoKill) {
  startHost(R"([{"match": "/**"}])");
  fixture.write("proc/" + std::to_string(medium) + "/status", "Name:\tsidecar\nVmRSS:\tlots kB\n");
  const auto outcome = actOnHost(Rankings::HostReread::kEveryProcess);
  EXPECT_EQ(outcome.result, DecisionResult::kNoData) << outcome.why.value_or("");
  EXPECT_TRUE(actuator.actions.empty());
}

}  // namespace
}  // namespace oomguard::guardian::daemon
