// The Decider on a fixture node with a fake clock: thresholds, the kill gate, protections and the choice,
// each returning a typed Outcome. No process is spawned or signalled (FakeActuator records).
#include "guardian/daemon/decider.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <optional>
#include <sstream>

#include "decider_fixture.hpp"
#include "guardian/daemon/executor.hpp"
#include "guardian/daemon/rankings.hpp"
#include "guardian/exporter/metrics.hpp"

namespace oomguard::guardian::daemon {
namespace {

using policies::DecisionAction;
using policies::DecisionResult;

TEST_F(DeciderTest, BelowTheThresholdNothingIsDone) {
  start(kHeadroom);
  fixture.setCurrent(NodeFixture::kLimitBytes / 2);
  const auto outcome = actInPod();
  EXPECT_EQ(outcome.policy, policies::Action::kKillWorst);
  EXPECT_EQ(outcome.result, DecisionResult::kBelowThreshold);
  EXPECT_EQ(outcome.action, DecisionAction::kNone);
  EXPECT_FALSE(outcome.reason);
  EXPECT_TRUE(actuator.actions.empty());
}

TEST_F(DeciderTest, ACrossedThresholdKillsTheKernelsFirstChoice) {
  start(kHeadroom);
  fixture.setCurrent(NodeFixture::kLimitBytes / 100 * 95);
  const auto outcome = actInPod();
  ASSERT_TRUE(outcome.reason);
  EXPECT_EQ(outcome.reason->kind, policies::CrossedBy::kHeadroom);
  EXPECT_EQ(outcome.action, DecisionAction::kKill);
  EXPECT_EQ(outcome.result, DecisionResult::kKilled) << outcome.detail.value_or("");
  ASSERT_TRUE(outcome.target);
  EXPECT_EQ(outcome.target->victim.pid, big);
  EXPECT_EQ(outcome.target->victim.cgroup, "/pod/app");
  EXPECT_TRUE(outcome.chosen_because);
  EXPECT_EQ(actuator.actions, (std::vector<std::string>{"kill " + std::to_string(big) + " grace 0"}));
  EXPECT_EQ(stats.kills, 1U);
}

TEST_F(DeciderTest, OneOomOneVictimUntilItIsGoneOrItsWaitRunsOut) {
  start(kHeadroom, R"("policy": {"victim_wait_s": 2}, )");
  fixture.setCurrent(NodeFixture::kLimitBytes / 100 * 95);
  ASSERT_EQ(actInPod().result, DecisionResult::kKilled);
  // The victim (a live process: its memory is not back) holds the domain.
  fixture.now_us += 500'000;
  const auto held = actInPod();
  EXPECT_EQ(held.result, DecisionResult::kHeld);
  ASSERT_TRUE(held.held_by);
  EXPECT_NE(held.held_by->find("victim"), std::string::npos) << *held.held_by;
  EXPECT_EQ(actuator.actions.size(), 1U);
  EXPECT_EQ(stats.kills_held, 1U);
  // Past the wait the gate lets the next selection run, as the kernel's oom_reaper does.
  fixture.now_us += 2'000'000;
  EXPECT_EQ(actInPod().result, DecisionResult::kKilled);
  EXPECT_EQ(actuator.actions.size(), 2U);
}

TEST_F(DeciderTest, AReapedVictimStillHoldsItsDomainUntilItExits) {
  // Three leakers at once in the VM: each victim took 176-340 ms to exit after process_mrelease had
  // already given its memory back, and the kernel killed the next leaker in the meantime.
  start(kHeadroom, R"("policy": {"victim_wait_s": 2}, )");
  actuator.reaps = true;
  fixture.setCurrent(NodeFixture::kLimitBytes / 100 * 95);
  const auto first = actInPod();
  ASSERT_EQ(first.result, DecisionResult::kKilled);
  EXPECT_EQ(first.target->victim.pid, big);

  // The reaped victim is still listed (it has not exited yet); the domain is still over its threshold.
  fixture.now_us += 20'000;
  // Reaped or not, the victim holds its domain until it has exited (a trigger that predates the kill
  // must not choose the neighbour: seen in beat-the-kernel).
  const auto next = actInPod();
  EXPECT_EQ(next.result, DecisionResult::kHeld);
  EXPECT_EQ(actuator.actions.size(), 1U);
}

TEST_F(DeciderTest, AnUnreapedVictimStillHoldsItsDomain) {
  start(kHeadroom, R"("policy": {"victim_wait_s": 2}, )");
  actuator.reaps = false;  // process_mrelease refused or unavailable: wait for the exit, as before
  fixture.setCurrent(NodeFixture::kLimitBytes / 100 * 95);
  ASSERT_EQ(actInPod().result, DecisionResult::kKilled);
  fixture.now_us += 20'000;
  EXPECT_EQ(actInPod().result, DecisionResult::kHeld);
  EXPECT_EQ(actuator.actions.size(), 1U);
}

TEST_F(DeciderTest, AVictimGoneBeforeItsKillIsReplacedOnlyWhileTheDomainIsStillOver) {
  // The race lab: a grower measured at the last refresh, the previous trial's leaker, had exited; it was
  // chosen twice ("gone") while the kernel killed the new leaker.
  start(kHeadroom);
  fixture.setCurrent(NodeFixture::kLimitBytes / 100 * 95);
  actuator.gone = {big};
  const auto still_over = actInPod();
  ASSERT_EQ(still_over.result, DecisionResult::kKilled) << still_over.why.value_or("");
  EXPECT_EQ(still_over.target->victim.pid, medium) << "the domain, read again, is still over: the next one";
  EXPECT_NE(still_over.chosen_because.value_or("").find("had gone"), std::string::npos)
      << still_over.chosen_because.value_or("");
}

TEST_F(DeciderTest, AVictimWhoseExitGaveTheMemoryBackIsNotReplacedByItsNeighbour) {
  start(kHeadroom);
  fixture.setCurrent(NodeFixture::kLimitBytes / 100 * 95);
  actuator.gone = {big};
  actuator.on_gone = [this](pid_t) { fixture.setCurrent(NodeFixture::kLimitBytes / 2); };  // its memory is back
  const auto outcome = actInPod();
  EXPECT_EQ(outcome.result, DecisionResult::kGone);
  EXPECT_TRUE(actuator.actions.empty()) << "never the neighbour of a leaker that has just died";
  EXPECT_NE(outcome.why.value_or("").find("no longer over its threshold"), std::string::npos);
}

// Seen in a review: the host decision re-read only the refresh's top and the newcomers, so a process
// that was small at the refresh and has leaked since (not a newcomer) was invisible, and the decision
// killed the refresh's top: an innocent, while the kernel would have chosen the leaker.
TEST_F(DeciderTest, TheHostDecisionThatMayKillSeesAnOldProcessThatGrewSinceTheRefresh) {
  start(R"([{"match": "/**"}])", R"("rescan_candidates": 1, "host": {"act": {"action": "kill-worst",
            "when": {"mem_available_below": 0.10}}}, )");
  rankings->refresh(facts, *watch_set, {});
  ASSERT_FALSE(rankings->find("/")->top.empty());
  EXPECT_EQ(rankings->find("/")->top.front().pid, big);  // 600 MiB against the sidecar's 200 MiB
  fixture.now_us += 2'000'000;
  fixture.setRss(medium, "sidecar", 2 * 1024 * 1024);  // leaked 1.8 GiB since the refresh
  fixture.write("proc/meminfo", "MemTotal: 8388608 kB\nMemFree: 262144 kB\nMemAvailable: 262144 kB\n"
                                "SwapTotal: 0 kB\nSwapFree: 0 kB\n");
  const config::ActRule* rule = decider->actRuleFor("/");
  ASSERT_NE(rule, nullptr);
  auto act = [&](Rankings::HostReread reread) {
    executor->markSnapshot();
    rankings->rerankHost(facts, reread);
    return decider->act("/", *rankings->find("/"), *rule, policies::DomainObservation{}, fixture.now_us, *executor);
  };
  // What the decision that cannot kill reads (its log's prediction) still names the refresh's top...
  rankings->rerankHost(facts, Rankings::HostReread::kTopAndNewcomers);
  EXPECT_EQ(rankings->find("/")->top.front().pid, big);
  // ...and the one that may kill reads every process: the leaker, as the kernel would choose.
  const auto outcome = act(Rankings::HostReread::kEveryProcess);
  ASSERT_TRUE(outcome.target) << outcome.why.value_or("");
  EXPECT_EQ(outcome.target->victim.pid, medium);
  EXPECT_EQ(outcome.result, DecisionResult::kKilled);
  EXPECT_EQ(actuator.actions, (std::vector<std::string>{"kill " + std::to_string(medium) + " grace 0"}));
}

// The host held over its threshold by what may not be killed: the level watch crosses every 100 ms,
// and a read of every process each time was 5% of a core at 500 processes. After a full read that
// found no victim, the decisions of the next second read the refresh's top and the newcomers.
TEST_F(DeciderTest, AHostWithNoOneToKillIsNotReadWholeTenTimesASecond) {
  start(R"([{"match": "/**", "preference": "omit"}])", R"("host": {"act": {"action": "kill-worst",
            "when": {"mem_available_below": 0.10}}}, )");
  rankings->refresh(facts, *watch_set, {});
  fixture.write("proc/meminfo", "MemTotal: 8388608 kB\nMemFree: 262144 kB\nMemAvailable: 262144 kB\n"
                                "SwapTotal: 0 kB\nSwapFree: 0 kB\n");
  const config::ActRule* rule = decider->actRuleFor("/");
  ASSERT_NE(rule, nullptr);
  fixture.write("proc/vmstat", "pgalloc_normal 1000000\n");
  // The allocations as the level watch reads them before a decision.
  auto levels = [&] { (void)decider->checkLevels(fixture.now_us, true); };
  auto decide = [&] {
    executor->markSnapshot();
    decider->rankHost(*rankings, facts, true, fixture.now_us, *executor);
    const auto outcome =
        decider->act("/", *rankings->find("/"), *rule, policies::DomainObservation{}, fixture.now_us, *executor);
    EXPECT_EQ(outcome.result, DecisionResult::kNoVictim);
    return rankings->lastHostRead();
  };
  levels();
  EXPECT_EQ(decide(), Rankings::HostReread::kEveryProcess);
  fixture.now_us += 100'000;
  levels();
  EXPECT_EQ(decide(), Rankings::HostReread::kTopAndNewcomers);
  // The host allocates (something grows): every process is read again at once.
  const uint64_t page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  fixture.write("proc/vmstat", "pgalloc_normal " + std::to_string(1000000 + Decider::kFullHostReadBackoffBytes / page) + "\n");
  fixture.now_us += 100'000;
  levels();
  EXPECT_EQ(decide(), Rankings::HostReread::kEveryProcess) << "the host allocated 64 MiB since";
  fixture.now_us += 100'000;
  levels();
  EXPECT_EQ(decide(), Rankings::HostReread::kTopAndNewcomers);
  fixture.now_us += Decider::kFullHostReadBackoffUs;
  levels();
  EXPECT_EQ(decide(), Rankings::HostReread::kEveryProcess) << "a full read again once a second";
  EXPECT_TRUE(actuator.actions.empty());
}

TEST_F(DeciderTest, PanicIsDecidedNotExecutedHere) {
  start(R"([{"match": "/pod", "act": {"action": "panic", "when": {"headroom_below": 0.10}}}, {"match": "/**"}])",
        R"("policy": {"allow_panic": true}, )");
  fixture.setCurrent(NodeFixture::kLimitBytes);
  const auto outcome = actInPod();
  EXPECT_EQ(outcome.action, DecisionAction::kPanic);
  EXPECT_EQ(outcome.result, DecisionResult::kPanicking);
  EXPECT_TRUE(actuator.actions.empty());
}

TEST_F(DeciderTest, AnOmittedCgroupIsPassedOver) {
  start(R"([{"match": "/pod", "act": {"action": "kill-worst", "when": {"headroom_below": 0.10}}},
            {"match": "/pod/app", "preference": "omit"}, {"match": "/**"}])");
  fixture.setCurrent(NodeFixture::kLimitBytes);
  const auto outcome = actInPod();
  ASSERT_TRUE(outcome.target);
  EXPECT_EQ(outcome.target->victim.pid, medium);
  EXPECT_EQ(outcome.result, DecisionResult::kKilled);
}

TEST_F(DeciderTest, ObserveModeHasNoActRule) {
  start(kHeadroom);
  config.mode = config::Mode::kObserve;
  EXPECT_EQ(decider->actRuleFor("/pod"), nullptr);
}

TEST_F(DeciderTest, AReloadToObserveLeavesNothingToWatch) {
  start(kHeadroom);
  ASSERT_TRUE(rankings->rerankMemcg(facts, "/pod").ok());
  EXPECT_TRUE(decider->checkLevels(fixture.now_us, true).crossed.empty());
  ASSERT_TRUE(decider->nextLevelDueUs());
  config.mode = config::Mode::kObserve;  // what a reload to mode observe leaves
  decider->domainsChanged();
  fixture.now_us += 10'000'000;
  EXPECT_TRUE(decider->checkLevels(fixture.now_us, false).crossed.empty());
  EXPECT_FALSE(decider->nextLevelDueUs()) << "a due time in the past re-arms the level timer at 0 forever";
}

TEST_F(DeciderTest, TheLevelWatchsLastReadingIsKeptForTheMetrics) {
  // The refresh publishes an acting domain's memory.current from here instead of reading it again.
  start(kHeadroom);
  EXPECT_FALSE(decider->levelReading("/pod")) << "nothing read yet";
  fixture.setCurrent(NodeFixture::kLimitBytes / 2);
  ASSERT_TRUE(rankings->rerankMemcg(facts, "/pod").ok());
  EXPECT_TRUE(decider->checkLevels(fixture.now_us, true).crossed.empty());
  const auto reading = decider->levelReading("/pod");
  ASSERT_TRUE(reading);
  EXPECT_EQ(reading->current_bytes, NodeFixture::kLimitBytes / 2);
  EXPECT_EQ(reading->at_us, fixture.now_us);
  EXPECT_EQ(reading->memory_max_bytes, NodeFixture::kLimitBytes);
  // A failed reading keeps the last good one, with its time: the refresh then reads for itself.
  std::filesystem::remove(fixture.root / "cgroup/pod/memory.current");
  const uint64_t read_at = fixture.now_us;
  const uint64_t reads = stats.level_reads;
  fixture.now_us += 10'000'000;
  (void)decider->checkLevels(fixture.now_us, true);
  EXPECT_GT(stats.level_reads, reads) << "the second reading was not even tried";
  ASSERT_TRUE(decider->levelReading("/pod"));
  EXPECT_EQ(decider->levelReading("/pod")->at_us, read_at);
  EXPECT_FALSE(decider->levelReading("/elsewhere"));
}

TEST_F(DeciderTest, LevelsAreReadWhenDueAndCrossingsReported) {
  start(kHeadroom);
  fixture.setCurrent(NodeFixture::kLimitBytes / 2);
  ASSERT_TRUE(rankings->rerankMemcg(facts, "/pod").ok());
  EXPECT_TRUE(decider->checkLevels(fixture.now_us, true).crossed.empty());
  const auto due = decider->nextLevelDueUs();
  ASSERT_TRUE(due);
  EXPECT_GT(*due, fixture.now_us);
  EXPECT_LE(*due, fixture.now_us + 1'000'000);  // never later than the refresh interval
  // Not due yet: nothing is read.
  const uint64_t reads = stats.level_reads;
  EXPECT_TRUE(decider->checkLevels(fixture.now_us + 1, false).crossed.empty());
  EXPECT_EQ(stats.level_reads, reads);
  fixture.setCurrent(NodeFixture::kLimitBytes / 100 * 95);
  const auto crossed = decider->checkLevels(*due, false).crossed;
  ASSERT_EQ(crossed.size(), 1U);
  EXPECT_EQ(crossed.front().first, "/pod");
}

TEST_F(DeciderTest, TheHostsAllocationsStandInForReadingEveryDomain) {
  // A fill rate assumed 8 times the default: ticks every 50 ms, many of them within one refresh (1 s).
  start(kHeadroom, R"("policy": {"assumed_fill_rate_mib_s": 4096}, )");
  fixture.setCurrent(NodeFixture::kLimitBytes / 2);  // room 0.4 of the limit to the threshold at 0.9
  const uint64_t page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  const uint64_t half_room_pages = NodeFixture::kLimitBytes / 5 / page;
  fixture.write("proc/vmstat", "pgalloc_dma32 10\npgalloc_normal 1000000\npgalloc_movable 0\n");
  ASSERT_TRUE(rankings->rerankMemcg(facts, "/pod").ok());
  EXPECT_TRUE(decider->checkLevels(fixture.now_us, true).crossed.empty());
  EXPECT_EQ(stats.level_reads, 1U);
  // Idle: each tick reads /proc/vmstat only.
  for (int tick = 0; tick < 3; ++tick) {
    fixture.now_us = *decider->nextLevelDueUs();
    EXPECT_TRUE(decider->checkLevels(fixture.now_us, false).crossed.empty());
  }
  EXPECT_EQ(stats.level_reads, 1U) << "memory.current read while the host allocated nothing";
  EXPECT_EQ(stats.allocation_reads, 4U);
  // Nor at a refresh: a domain watched through the allocations is re-read every 6 refreshes.
  EXPECT_TRUE(decider->checkLevels(fixture.now_us, true).crossed.empty());
  EXPECT_EQ(stats.level_reads, 1U);
  EXPECT_TRUE(decider->checkLevels(fixture.now_us + 6'000'000, true).crossed.empty());
  EXPECT_EQ(stats.level_reads, 2U) << "the safety net: read again after 6 refresh intervals";
  fixture.now_us += 6'000'000;
  const uint64_t idle_tick_us = *decider->nextLevelDueUs() - fixture.now_us;
  // The host allocates just under half the domain's room: still not read, but the ticks come closer.
  fixture.write("proc/vmstat", "pgalloc_dma32 10\npgalloc_normal " + std::to_string(1000000 + half_room_pages - 10) +
                                   "\npgalloc_movable 0\n");
  fixture.now_us = *decider->nextLevelDueUs();
  EXPECT_TRUE(decider->checkLevels(fixture.now_us, false).crossed.empty());
  EXPECT_EQ(stats.level_reads, 2U);
  EXPECT_LT(*decider->nextLevelDueUs() - fixture.now_us, idle_tick_us);
  // Half its room allocated somewhere on the host: the domain is read, and its crossing seen.
  fixture.write("proc/vmstat", "pgalloc_dma32 10\npgalloc_normal " + std::to_string(1000000 + half_room_pages + 10) +
                                   "\npgalloc_movable 0\n");
  fixture.setCurrent(NodeFixture::kLimitBytes / 100 * 95);
  fixture.now_us = *decider->nextLevelDueUs();
  const auto crossed = decider->checkLevels(fixture.now_us, false).crossed;
  EXPECT_EQ(stats.level_reads, 3U);
  ASSERT_EQ(crossed.size(), 1U);
  EXPECT_EQ(crossed.front().first, "/pod");
}

TEST_F(DeciderTest, APressureEventBreaksThroughTheAllocationShortcut) {
  // Idle ticks read only /proc/vmstat and touch no domain; a PSI trigger still has its domain read at
  // once, and a domain found between refreshes is watched from the next tick.
  start(R"([{"match": "/pod*", "act": {"action": "kill-worst", "when": {"headroom_below": 0.10}}}, {"match": "/**"}])",
        R"("policy": {"assumed_fill_rate_mib_s": 4096}, )");
  fixture.setCurrent(NodeFixture::kLimitBytes / 2);
  fixture.write("proc/vmstat", "pgalloc_normal 1000000\n");
  ASSERT_TRUE(rankings->rerankMemcg(facts, "/pod").ok());
  EXPECT_TRUE(decider->checkLevels(fixture.now_us, true).crossed.empty());
  for (int tick = 0; tick < 3; ++tick) {
    fixture.now_us = *decider->nextLevelDueUs();
    EXPECT_TRUE(decider->checkLevels(fixture.now_us, false).crossed.empty());
  }
  EXPECT_EQ(stats.level_reads, 1U);
  fixture.now_us += 1000;
  ASSERT_TRUE(decider->pressureEvent("/pod", fixture.now_us));
  EXPECT_EQ(*decider->nextLevelDueUs(), fixture.now_us);
  fixture.setCurrent(NodeFixture::kLimitBytes / 100 * 95);
  const auto crossed = decider->checkLevels(fixture.now_us, false).crossed;
  EXPECT_EQ(stats.level_reads, 2U);
  ASSERT_EQ(crossed.size(), 1U);
  EXPECT_EQ(crossed.front().first, "/pod");
  // A domain found between refreshes (Daemon::onDomainFound) is read at the next tick.
  fixture.setCurrent(NodeFixture::kLimitBytes / 2);
  fixture.now_us += 2'000'000;
  EXPECT_TRUE(decider->checkLevels(fixture.now_us, true).crossed.empty());
  fixture.now_us = *decider->nextLevelDueUs();
  EXPECT_TRUE(decider->checkLevels(fixture.now_us, false).crossed.empty());
  const uint64_t reads = stats.level_reads;
  std::filesystem::create_directories(fixture.root / "cgroup/pod2");
  fixture.write("cgroup/pod2/cgroup.procs", "");
  fixture.write("cgroup/pod2/memory.max", std::to_string(NodeFixture::kLimitBytes) + "\n");
  fixture.write("cgroup/pod2/memory.current", std::to_string(NodeFixture::kLimitBytes / 2) + "\n");
  ASSERT_TRUE(rankings->rerankMemcg(facts, "/pod2").ok());
  decider->domainsChanged();
  fixture.now_us += 1000;
  EXPECT_TRUE(decider->checkLevels(fixture.now_us, false).crossed.empty());
  EXPECT_EQ(stats.level_reads, reads + 1) << "the new domain waited for a budget or the refresh";
}

// Held pressure and a kill by someone else: avg10 still carries the stall of before it. The kernel's
// victim in the domain restarts the hold (else the next reading, held past held_s, killed a second
// process for the same OOM); a victim outside the domain does not.
class HeldPressure : public DeciderTest {
 protected:
  void SetUp() override {
    DeciderTest::SetUp();
    start(R"([{"match": "/pod", "act": {"action": "kill-worst",
                 "when": {"pressure": {"kind": "some", "avg10": 0.3, "held_s": 2}}}}, {"match": "/**"}])");
    fixture.write("cgroup/pod/memory.pressure",
                  "some avg10=50.00 avg60=20.00 avg300=5.00 total=9000000\n"
                  "full avg10=40.00 avg60=15.00 avg300=4.00 total=7000000\n");
    EXPECT_EQ(actInPod().result, DecisionResult::kBelowThreshold) << "above avg10, not held for 2 s yet";
  }
};

TEST_F(HeldPressure, TheKernelsVictimInTheDomainRestartsTheHold) {
  fixture.now_us += 1'500'000;
  decider->victimTaken("/pod/app", false);  // the kernel killed in /pod (its kmsg report)
  fixture.now_us += 1'000'000;
  EXPECT_EQ(actInPod().result, DecisionResult::kBelowThreshold) << "held 2.5 s, but the stall predates the kill";
  EXPECT_TRUE(actuator.actions.empty());
}

TEST_F(HeldPressure, AVictimOutsideTheDomainLeavesTheHold) {
  fixture.now_us += 1'500'000;
  decider->victimTaken("/other", false);
  decider->victimTaken("/pod2", true);  // somewhere below /pod2: not in /pod either
  fixture.now_us += 1'000'000;
  EXPECT_EQ(actInPod().result, DecisionResult::kKilled) << "held 2.5 s, no victim in /pod";
}

TEST_F(HeldPressure, AGoneDomainKeepsNoHeldPressureState) {
  EXPECT_TRUE(decider->checkLevels(fixture.now_us, true).crossed.empty());
  EXPECT_EQ(decider->heldPressureStates(), 1U) << "/pod's hold";
  ASSERT_TRUE(rankings->forget("/pod"));  // the pod is gone
  decider->domainsChanged();
  fixture.now_us += 1'000'000;
  decider->checkLevels(fixture.now_us, true);
  EXPECT_EQ(decider->heldPressureStates(), 0U) << "pods come and go: the states would only grow";
}

TEST_F(HeldPressure, AReloadThatDropsThePressureThresholdDropsItsState) {
  EXPECT_EQ(decider->heldPressureStates(), 1U) << "/pod's hold";
  config = config::parseConfig(R"({"mode": "act", "refresh_interval_s": 1, "cgroups": [{"match": "/pod",
      "act": {"action": "kill-worst", "when": {"headroom_below": 0.10}}}, {"match": "/**"}]})", "test");
  decider->configChanged();
  decider->checkLevels(fixture.now_us, true);
  EXPECT_EQ(decider->heldPressureStates(), 0U);
}

TEST_F(DeciderTest, ALevelWithoutPressureKeepsNoHeldPressureState) {
  start(kHeadroom);
  ASSERT_TRUE(rankings->rerankMemcg(facts, "/pod").ok());
  EXPECT_TRUE(decider->checkLevels(fixture.now_us, true).crossed.empty());
  EXPECT_GT(stats.level_reads, 0U);
  EXPECT_EQ(decider->heldPressureStates(), 0U) << "~120 B for each of hundreds of domains, never used";
}

TEST_F(DeciderTest, AFailedReadingKeepsTheWatchClose) {
  start(kHeadroom);
  fixture.setCurrent(NodeFixture::kLimitBytes / 100 * 80);  // near the threshold: a fast schedule
  ASSERT_TRUE(rankings->rerankMemcg(facts, "/pod").ok());
  EXPECT_TRUE(decider->checkLevels(fixture.now_us, true).crossed.empty());
  // memory.current cannot be read for a moment: no decision, and the next reading stays close (it
  // used to fall back to the refresh interval, blind for a whole refresh while a leak went on).
  std::filesystem::remove(fixture.root / "cgroup/pod/memory.current");
  fixture.now_us = *decider->nextLevelDueUs();
  EXPECT_TRUE(decider->checkLevels(fixture.now_us, false).crossed.empty());
  EXPECT_LE(*decider->nextLevelDueUs() - fixture.now_us, 100'000U);
}

TEST_F(DeciderTest, PressurePollsTheLevelsFastForAWindow) {
  start(kHeadroom);
  fixture.setCurrent(NodeFixture::kLimitBytes / 2);  // far from the threshold: the slow schedule
  ASSERT_TRUE(rankings->rerankMemcg(facts, "/pod").ok());
  EXPECT_TRUE(decider->checkLevels(fixture.now_us, true).crossed.empty());
  const uint64_t relaxed_us = *decider->nextLevelDueUs() - fixture.now_us;
  EXPECT_GT(relaxed_us, Decider::kPressurePollUs);
  // A PSI trigger fires: read now, then every kPressurePollUs for the PSI window.
  fixture.now_us += 1000;
  ASSERT_TRUE(decider->pressureEvent("/pod", fixture.now_us));
  EXPECT_EQ(*decider->nextLevelDueUs(), fixture.now_us);
  EXPECT_TRUE(decider->checkLevels(fixture.now_us, false).crossed.empty());
  EXPECT_EQ(*decider->nextLevelDueUs(), fixture.now_us + Decider::kPressurePollUs);
  // After the window without another trigger, the schedule relaxes again.
  fixture.now_us += Decider::kPressureWindowUs;
  EXPECT_TRUE(decider->checkLevels(fixture.now_us, true).crossed.empty());
  EXPECT_GT(*decider->nextLevelDueUs() - fixture.now_us, Decider::kPressurePollUs);
  // A domain without level thresholds has nothing to poll.
  EXPECT_FALSE(decider->pressureEvent("/elsewhere", fixture.now_us));
}

TEST_F(DeciderTest, AMemoryHighAtTheThresholdTurnsThePollIntoAnEvent) {
  start(R"([{"match": "/pod", "act": {"action": "kill-worst", "when": {"headroom_below": 0.10},
             "memory_high_at_threshold": true}}, {"match": "/**"}])");
  fixture.setCurrent(NodeFixture::kLimitBytes / 100 * 80);  // 10 % of the limit from the threshold
  ASSERT_TRUE(rankings->rerankMemcg(facts, "/pod").ok());
  EXPECT_TRUE(decider->checkLevels(fixture.now_us, true).crossed.empty());
  EXPECT_LT(*decider->nextLevelDueUs() - fixture.now_us, 1'000'000U) << "polled while memory.high is not set";
  fixture.write("cgroup/pod/memory.high", "max\n");
  executor->applyMemoryHigh({{"/pod", NodeFixture::kLimitBytes}});
  ASSERT_TRUE(executor->memoryHighInForce("/pod"));
  EXPECT_TRUE(decider->checkLevels(fixture.now_us, true).crossed.empty());
  EXPECT_EQ(*decider->nextLevelDueUs() - fixture.now_us, 1'000'000U) << "the refresh interval: the kernel will tell";
}

TEST_F(DeciderTest, KillAllocatingSeesTheGrowthOfALeakerThatStartedAfterTheRefresh) {
  start(R"([{"match": "/pod", "act": {"action": "kill-allocating", "when": {"headroom_below": 0.10}}},
            {"match": "/**"}])");
  // The refresh read only the sidecar; the leaker appeared after it.
  std::filesystem::remove_all(fixture.root / ("proc/" + std::to_string(big)));
  fixture.write("cgroup/pod/app/cgroup.procs", "");
  watch_set->refreshLimits(fixture.now_us, true, facts.meminfo.swap_total_kb);
  rankings->refresh(facts, *watch_set, {"/pod"});
  fixture.now_us += 2'000'000;
  fixture.addProcess(big, "leaker", "/pod/app", 600 * 1024);
  fixture.setCurrent(NodeFixture::kLimitBytes);
  const auto outcome = actInPod();
  ASSERT_TRUE(outcome.target) << outcome.why.value_or("");
  EXPECT_EQ(outcome.target->victim.pid, big);
  EXPECT_EQ(outcome.result, DecisionResult::kKilled);
}

TEST_F(DeciderTest, KillAllocatingSeesALeakerThatTheLastRefreshReadFirst) {
  start(R"([{"match": "/pod", "act": {"action": "kill-allocating", "when": {"headroom_below": 0.10}}},
            {"match": "/**"}])");
  // Seen in the race scenario: the leaker started between two refreshes, the second read it once, and
  // the decision 57 ms later (inside the decision's sample gap) found "no candidate still growing".
  std::filesystem::remove_all(fixture.root / ("proc/" + std::to_string(big)));
  fixture.write("cgroup/pod/app/cgroup.procs", "");
  watch_set->refreshLimits(fixture.now_us, true, facts.meminfo.swap_total_kb);
  rankings->refresh(facts, *watch_set, {"/pod"});
  fixture.now_us += 5'000'000;
  fixture.addProcess(big, "leaker", "/pod/app", 300 * 1024);
  rankings->refresh(facts, *watch_set, {"/pod"});
  fixture.now_us += 57'000;
  fixture.setRss(big, "leaker", 320 * 1024);
  fixture.setCurrent(NodeFixture::kLimitBytes);
  const auto outcome = actInPod();
  ASSERT_TRUE(outcome.target) << outcome.why.value_or("");
  EXPECT_EQ(outcome.target->victim.pid, big);
  EXPECT_EQ(outcome.result, DecisionResult::kKilled);
}

TEST_F(DeciderTest, KillAllocatingPassesOverANeighbourWhoseStartUpIsInsideTheWindow) {
  start(R"([{"match": "/pod", "act": {"action": "kill-allocating", "when": {"headroom_below": 0.10}}},
            {"match": "/**"}])");
  // A refresh caught the sidecar half-way through its start-up (50 MiB), the next one at rest (200 MiB):
  // 150 MiB of growth inside the default 10 s window. The leaker appeared after both.
  std::filesystem::remove_all(fixture.root / ("proc/" + std::to_string(big)));
  fixture.write("cgroup/pod/app/cgroup.procs", "");
  fixture.setRss(medium, "sidecar", 50 * 1024);
  watch_set->refreshLimits(fixture.now_us, true, facts.meminfo.swap_total_kb);
  rankings->refresh(facts, *watch_set, {"/pod"});
  fixture.now_us += 2'000'000;
  fixture.setRss(medium, "sidecar", 200 * 1024);
  rankings->refresh(facts, *watch_set, {"/pod"});
  fixture.now_us += 1'500'000;
  fixture.addProcess(big, "leaker", "/pod/app", 100 * 1024);
  fixture.setCurrent(NodeFixture::kLimitBytes);
  const auto outcome = actInPod();
  ASSERT_TRUE(outcome.target) << outcome.why.value_or("");
  EXPECT_EQ(outcome.target->victim.pid, big) << "the sidecar grew more in the window, but is not growing now";
  EXPECT_EQ(outcome.result, DecisionResult::kKilled);
}

}  // namespace
}  // namespace oomguard::guardian::daemon
