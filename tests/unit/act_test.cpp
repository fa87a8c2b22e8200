#include <gtest/gtest.h>

#include "policies/act.hpp"

namespace oomguard::policies {
namespace {

VictimCandidate candidate(pid_t pid, long points, Preference preference = Preference::kNone) {
  VictimCandidate c;
  c.pid = pid;
  c.comm = "p" + std::to_string(pid);
  c.points = points;
  c.preference = preference;
  return c;
}

std::vector<pid_t> pidsOf(const std::vector<VictimCandidate>& candidates) {
  std::vector<pid_t> pids;
  for (const auto& c : candidates) {
    pids.push_back(c.pid);
  }
  return pids;
}

TEST(ProtectionClass, DocumentedValues) {
  EXPECT_EQ(oomScoreAdjFor(ProtectionClass::kCritical), -998);
  EXPECT_EQ(oomScoreAdjFor(ProtectionClass::kHigh), -500);
  EXPECT_EQ(oomScoreAdjFor(ProtectionClass::kNormal), 0);
  EXPECT_EQ(oomScoreAdjFor(ProtectionClass::kLow), 500);
  EXPECT_EQ(oomScoreAdjFor(ProtectionClass::kSacrificial), 1000);
  EXPECT_EQ(parseProtectionClass("sacrificial"), ProtectionClass::kSacrificial);
  EXPECT_FALSE(parseProtectionClass("vip").has_value());
}

TEST(GuardianOrder, PreferenceIsAKeyAboveThePointsNeverBlended) {
  // A preferred task with few points goes before a huge one; avoided ones come last; omitted never.
  const std::vector<VictimCandidate> all = {candidate(10, 900000), candidate(11, 5, Preference::kPrefer),
                                            candidate(12, 5000000, Preference::kAvoid),
                                            candidate(13, 9000000, Preference::kOmit), candidate(14, 1000)};
  EXPECT_EQ(pidsOf(guardianOrder(all)), (std::vector<pid_t>{11, 10, 14, 12}));
}

TEST(GuardianOrder, NeverKillSet) {
  auto init = candidate(1, 100);
  auto kernel_says_no = candidate(2, 100);
  kernel_says_no.killable = false;
  auto disabled = candidate(3, 100);
  disabled.oom_score_adj = -1000;
  auto self = candidate(4, 10000000);
  self.never_kill = true;
  auto ok = candidate(5, 1);
  EXPECT_EQ(pidsOf(guardianOrder({init, kernel_says_no, disabled, self, ok})), (std::vector<pid_t>{5}));
  EXPECT_NE(exclusionReason(self)->find("protected"), std::string::npos);
  EXPECT_EQ(*exclusionReason(init), "pid 1");
}

TEST(ChooseVictim, KillWorstTakesTheHeadOfTheGuardiansOrder) {
  const auto choice = chooseVictim(Action::kKillWorst, {candidate(10, 50), candidate(11, 70), candidate(12, 60)});
  ASSERT_TRUE(choice.victim);
  EXPECT_EQ(choice.victim->pid, 11);
  const auto none = chooseVictim(Action::kKillWorst, {candidate(1, 50)});
  EXPECT_FALSE(none.victim);
  EXPECT_EQ(none.reason, "no candidate may be killed");
}

TEST(ChooseVictim, KillAllocatingTakesTheFastestGrowerNotTheBiggest) {
  auto big = candidate(10, 500000);
  big.growth_pages = 10;
  auto leaker = candidate(11, 20000);
  leaker.growth_pages = 15000;
  auto shrinking = candidate(12, 30000);
  shrinking.growth_pages = -200;
  const auto choice = chooseVictim(Action::kKillAllocating, {big, leaker, shrinking});
  ASSERT_TRUE(choice.victim);
  EXPECT_EQ(choice.victim->pid, 11);
  EXPECT_NE(choice.reason.find("15000 pages"), std::string::npos);
  // Nobody grew: no victim (and no kill).
  big.growth_pages = 0;
  leaker.growth_pages = -5;
  EXPECT_FALSE(chooseVictim(Action::kKillAllocating, {big, leaker}).victim);
  // No trend data at all: no victim.
  EXPECT_FALSE(chooseVictim(Action::kKillAllocating, {candidate(10, 5), candidate(11, 6)}).victim);
}

TEST(ChooseVictim, KillAllocatingCountsGrowthPerOomGroup) {
  // Three small growers in one oom.group cgroup outgrow one bigger single grower.
  std::vector<VictimCandidate> all;
  for (pid_t pid : {20, 21, 22}) {
    auto member = candidate(pid, 1000);
    member.growth_pages = 400;
    member.group_kill_cgroup = "/pods/web";
    all.push_back(member);
  }
  auto single = candidate(30, 1000);
  single.growth_pages = 1000;
  all.push_back(single);
  const auto choice = chooseVictim(Action::kKillAllocating, all);
  ASSERT_TRUE(choice.victim);
  EXPECT_EQ(choice.victim->group_kill_cgroup, std::optional<std::string>("/pods/web"));
}

TEST(ChooseVictim, KillAllocatingHonoursPreference) {
  auto preferred = candidate(10, 100, Preference::kPrefer);
  preferred.growth_pages = 5;
  auto other = candidate(11, 100);
  other.growth_pages = 50000;
  EXPECT_EQ(chooseVictim(Action::kKillAllocating, {other, preferred}).victim->pid, 10);
}

TEST(Thresholds, PressureMustBeHeldForTheDuration) {
  Thresholds thresholds;
  thresholds.pressure_kind = "full";
  thresholds.pressure_avg10 = 0.20;
  thresholds.pressure_held_us = 2'000'000;
  ThresholdState state;
  DomainObservation high;
  high.full_avg10 = 0.35;
  DomainObservation low;
  low.full_avg10 = 0.05;
  EXPECT_FALSE(thresholdCrossed(thresholds, high, state, 10'000'000));  // starts the clock
  EXPECT_FALSE(thresholdCrossed(thresholds, high, state, 11'500'000));  // 1.5 s
  const auto crossed = thresholdCrossed(thresholds, high, state, 12'000'000);
  ASSERT_TRUE(crossed);
  EXPECT_NE(crossed->text.find("for 2.0 s"), std::string::npos) << crossed->text;
  // Dropping below resets the clock.
  EXPECT_FALSE(thresholdCrossed(thresholds, low, state, 12'100'000));
  EXPECT_FALSE(thresholdCrossed(thresholds, high, state, 13'000'000));
  EXPECT_FALSE(thresholdCrossed(thresholds, high, state, 14'900'000));
  EXPECT_TRUE(thresholdCrossed(thresholds, high, state, 15'000'000));
}

// After a kill avg10 lags (a 10 s average): held pressure is then judged by the stall since the first
// reading after the victim has gone, in windows, so the victim's own stall does not choose a second,
// innocent victim.
TEST(Thresholds, AfterAKillPressureIsTheStallSinceNotTheLaggingAverage) {
  Thresholds thresholds;
  thresholds.pressure_kind = "some";
  thresholds.pressure_avg10 = 0.20;
  thresholds.pressure_held_us = 500'000;
  ThresholdState state;
  auto reading = [](double avg10, uint64_t total_us) {
    DomainObservation observation;
    observation.some_avg10 = avg10;
    observation.some_total_us = total_us;
    return observation;
  };
  EXPECT_FALSE(thresholdCrossed(thresholds, reading(0.60, 1'000'000), state, 10'000'000));
  EXPECT_TRUE(thresholdCrossed(thresholds, reading(0.60, 1'300'000), state, 10'500'000));
  restartPressureHold(state);  // the victim is killed, then released
  // avg10 still 0.5, but the stall has stopped: never crossed, however long avg10 lags.
  EXPECT_FALSE(thresholdCrossed(thresholds, reading(0.50, 1'400'000), state, 11'000'000));  // the baseline
  EXPECT_FALSE(thresholdCrossed(thresholds, reading(0.45, 1'410'000), state, 12'000'000));
  EXPECT_FALSE(thresholdCrossed(thresholds, reading(0.40, 1'420'000), state, 14'000'000));
  // Judged in windows: a leaker that starts later is seen within one window, not averaged with the calm.
  const auto later = thresholdCrossed(thresholds, reading(0.40, 1'920'000), state, 15'000'000);
  ASSERT_TRUE(later);
  EXPECT_NE(later->text.find("of the last 1.0 s (after a kill)"), std::string::npos) << later->text;
  // A second leaker: the stall since the baseline reaches the threshold's share, over at least 1 s.
  restartPressureHold(state);
  EXPECT_FALSE(thresholdCrossed(thresholds, reading(0.40, 2'000'000), state, 20'000'000));
  EXPECT_FALSE(thresholdCrossed(thresholds, reading(0.40, 2'300'000), state, 20'600'000)) << "within the window";
  const auto crossed = thresholdCrossed(thresholds, reading(0.42, 2'500'000), state, 21'000'000);
  ASSERT_TRUE(crossed);  // 0.5 s of stall in 1 s
  EXPECT_NE(crossed->text.find("(after a kill)"), std::string::npos) << crossed->text;
  // Without a total (an older reading), nothing is crossed after a kill.
  restartPressureHold(state);
  DomainObservation without_total;
  without_total.some_avg10 = 0.9;
  EXPECT_FALSE(thresholdCrossed(thresholds, without_total, state, 30'000'000));
  // Once avg10 falls below the threshold, avg10 is judged again as before.
  EXPECT_FALSE(thresholdCrossed(thresholds, reading(0.10, 3'000'000), state, 31'000'000));
  EXPECT_FALSE(thresholdCrossed(thresholds, reading(0.30, 3'100'000), state, 32'000'000));
  EXPECT_TRUE(thresholdCrossed(thresholds, reading(0.30, 3'100'000), state, 32'500'000));
}

TEST(Thresholds, MissingDataNeverCrosses) {
  Thresholds thresholds;
  thresholds.pressure_kind = "some";
  thresholds.pressure_avg10 = 0.1;
  thresholds.headroom_below = 0.1;
  thresholds.mem_available_below = 0.1;
  ThresholdState state;
  EXPECT_FALSE(thresholdCrossed(thresholds, DomainObservation{}, state, 1));
}

TEST(Thresholds, HeadroomEventsAndHostFloors) {
  ThresholdState state;
  Thresholds headroom;
  headroom.headroom_below = 0.05;
  DomainObservation near_limit;
  near_limit.memory_max_bytes = 1000;
  near_limit.memory_current_bytes = 960;
  EXPECT_TRUE(thresholdCrossed(headroom, near_limit, state, 1));
  near_limit.memory_current_bytes = 900;
  EXPECT_FALSE(thresholdCrossed(headroom, near_limit, state, 1));

  Thresholds events;
  events.on_memory_max = true;
  DomainObservation max_hit;
  max_hit.events_max = 3;
  EXPECT_EQ(thresholdCrossed(events, max_hit, state, 1)->text, "memory.events max rose by 3");
  max_hit.events_max = 0;
  max_hit.events_high = 9;
  EXPECT_FALSE(thresholdCrossed(events, max_hit, state, 1));

  Thresholds host;
  host.mem_available_below = 0.05;
  DomainObservation tight;
  tight.mem_total_kb = 1000000;
  tight.mem_available_kb = 40000;
  EXPECT_TRUE(thresholdCrossed(host, tight, state, 1));
  tight.mem_available_kb = 60000;
  EXPECT_FALSE(thresholdCrossed(host, tight, state, 1));
}

TEST(Thresholds, AMaxOrHighRiseIsStaleOnceUsageIsFarBelowTheLimit) {
  // beat-the-kernel in the lab: "high rose by 3" read 25 ms after the killed leaker had gone, the domain
  // at 24 of its 128 MiB memory.high, chose the innocent neighbour.
  ThresholdState state;
  Thresholds high;
  high.on_memory_high = true;
  DomainObservation after_kill;
  after_kill.events_high = 3;
  after_kill.memory_high_bytes = 128U << 20;
  after_kill.memory_current_bytes = 24U << 20;
  EXPECT_FALSE(thresholdCrossed(high, after_kill, state, 1));
  // A leak the kernel holds at memory.high by reclaim: usage within a few pages of it, or over it.
  after_kill.memory_current_bytes = (128U << 20) - (1U << 20);
  EXPECT_TRUE(thresholdCrossed(high, after_kill, state, 1));
  after_kill.memory_current_bytes = (130U << 20);
  EXPECT_TRUE(thresholdCrossed(high, after_kill, state, 1));
  // Nothing read: the event is taken as it is.
  after_kill.memory_current_bytes.reset();
  EXPECT_TRUE(thresholdCrossed(high, after_kill, state, 1));

  Thresholds max;
  max.on_memory_max = true;
  DomainObservation max_hit;
  max_hit.events_max = 1;
  max_hit.memory_max_bytes = 1000U << 20;
  max_hit.memory_current_bytes = 500U << 20;
  EXPECT_FALSE(thresholdCrossed(max, max_hit, state, 1));
  max_hit.memory_current_bytes = 990U << 20;
  EXPECT_TRUE(thresholdCrossed(max, max_hit, state, 1));
}

TEST(KillGate, OurVictimInProgressBlocksASecondKillUntilReleased) {
  KillGate gate(2'000'000, 10);
  EXPECT_FALSE(gate.refusal("/pod", 0));
  gate.recordKill("/pod/leaker", 101, 0);
  // The domain that holds the victim, and every domain above it, wait; a sibling domain does not.
  ASSERT_TRUE(gate.refusal("/pod", 100'000));
  EXPECT_NE(gate.refusal("/pod", 100'000)->find("waiting on victim 101"), std::string::npos);
  EXPECT_TRUE(gate.refusal("/", 100'000));
  EXPECT_TRUE(gate.refusal("/pod/leaker", 100'000));
  EXPECT_FALSE(gate.refusal("/other", 100'000));
  EXPECT_FALSE(gate.refusal("/pod/neighbour", 100'000)) << "a domain below that does not hold the victim";
  // Released (gone) at 150 ms: the next kill may follow at once, no fixed cooldown.
  gate.release(101);
  EXPECT_FALSE(gate.refusal("/pod", 150'000));
}

TEST(KillGate, AVictimThatNeverGoesIsWaitedOnAtMostTheBound) {
  KillGate gate(2'000'000, 10);
  gate.recordKill("/pod", 7, 1'000'000);
  EXPECT_TRUE(gate.refusal("/pod", 2'999'999));
  EXPECT_FALSE(gate.refusal("/pod", 3'000'000)) << "the kernel's reaper gives up too";
  gate.expire(3'000'000);
  EXPECT_TRUE(gate.inProgress().empty());
}

TEST(KillGate, AVictimGivenASigtermGraceIsWaitedOnForTheGracePlusTheBound) {
  // Under SIGTERM the victim keeps its memory until it exits or the grace ends in SIGKILL: a wait that
  // ran out during the grace let the next decision take a second process for the same OOM.
  KillGate gate(2'000'000, 10);
  gate.recordKill("/pod/leaker", 7, 1'000'000, "", 10'000'000);
  EXPECT_TRUE(gate.refusal("/pod", 5'000'000)) << "past the bound, inside the grace";
  EXPECT_TRUE(gate.refusal("/pod", 12'999'999)) << "the grace, then the bound";
  EXPECT_FALSE(gate.refusal("/pod", 13'000'000));
  gate.expire(12'000'000);
  EXPECT_EQ(gate.inProgress().size(), 1U) << "not forgotten before its wait ends";
  gate.expire(13'000'000);
  EXPECT_TRUE(gate.inProgress().empty());
}

TEST(KillGate, TheKernelsVictimBlocksOomguardInItsDomain) {
  // The innocent-neighbour case: the kernel is already killing the leaker when memory.events says
  // max; oomguard must not pick the next task.
  KillGate gate(2'000'000, 10);
  gate.recordKernelKill("/pod", 0, 0);  // memory.events oom_kill rose in /pod's subtree
  ASSERT_TRUE(gate.refusal("/pod", 10'000));
  EXPECT_NE(gate.refusal("/pod", 10'000)->find("the kernel's victim"), std::string::npos);
  EXPECT_TRUE(gate.refusal("/pod/inner", 10'000)) << "unknown place: any domain in the subtree may hold it";
  EXPECT_TRUE(gate.refusal("/", 10'000));
  EXPECT_FALSE(gate.refusal("/elsewhere", 10'000));
  // The kmsg report names it: the entry becomes exact.
  gate.recordKernelKill("/pod/leaker", 4242, 20'000);
  ASSERT_EQ(gate.inProgress().size(), 1U);
  EXPECT_EQ(gate.inProgress().front().pid, 4242);
  EXPECT_FALSE(gate.refusal("/pod/inner", 30'000));
  EXPECT_NE(gate.refusal("/pod", 30'000)->find("waiting on victim 4242"), std::string::npos);
  gate.release(4242);
  EXPECT_FALSE(gate.refusal("/pod", 40'000));
}

TEST(KillGate, SeveralLeakersAreStoppedOneAfterAnother) {
  KillGate gate(2'000'000, 10);
  uint64_t now = 0;
  for (pid_t leaker = 1; leaker <= 4; ++leaker) {
    ASSERT_FALSE(gate.refusal("/pod", now)) << "leaker " << leaker;
    gate.recordKill("/pod", leaker, now);
    now += 80'000;  // its memory is released 80 ms later
    EXPECT_TRUE(gate.refusal("/pod", now - 1));
    gate.release(leaker);
  }
}

TEST(KillGate, TheCapHoldsEveryDomain) {
  KillGate gate(1'000, 3);
  gate.recordKill("/a", 1, 0);
  gate.recordKill("/b", 2, 1'000'000);
  gate.recordKill("/c", 3, 2'000'000);
  ASSERT_TRUE(gate.refusal("/d", 30'000'000));
  EXPECT_NE(gate.refusal("/d", 30'000'000)->find("kill cap"), std::string::npos);
  EXPECT_FALSE(gate.refusal("/d", 60'000'001));  // the first kill left the window
}

TEST(KillGate, ATenantsOwnKillsSpendItsOwnBudget) {
  // Issue 16: a tenant that kept tripping its own pressure-limit used up the node-wide cap (6 a minute)
  // and the host's kills were held. Its kills now spend a budget of the pod's own.
  KillGate gate(2'000'000, 3);
  const std::string pod = "/kubepods.slice/kubepods-pod1.slice";
  uint64_t now_us = 0;
  for (pid_t pid = 10; pid < 13; ++pid) {
    ASSERT_FALSE(gate.refusal(pod, now_us, pod));
    gate.recordKill(pod + "/c", pid, now_us, pod);
    gate.release(pid);
    now_us += 1'000'000;
  }
  ASSERT_TRUE(gate.refusal(pod, now_us, pod));
  EXPECT_NE(gate.refusal(pod, now_us, pod)->find("the pod's own kill cap"), std::string::npos);
  EXPECT_FALSE(gate.refusal("/", now_us)) << "the node's cap is untouched";
  EXPECT_FALSE(gate.refusal("/kubepods.slice/kubepods-pod2.slice", now_us, "/kubepods.slice/kubepods-pod2.slice"))
      << "another tenant's budget is untouched";
  // The node's own kills do not spend the tenant's budget either; a minute later the pod's is back.
  gate.recordKill("/", 99, now_us);
  gate.release(99);
  gate.expire(now_us + 60'000'000);
  EXPECT_FALSE(gate.refusal(pod, now_us + 60'000'000, pod));
}

TEST(KillGate, ACgroupKillIsReleasedWhenTheCgroupIsEmpty) {
  KillGate gate(2'000'000, 10);
  gate.recordKill("/pod/app", 0, 0);
  EXPECT_TRUE(gate.refusal("/pod", 1));
  gate.releaseCgroup("/pod/app");
  EXPECT_FALSE(gate.refusal("/pod", 2));
}

TEST(GrowthTracker, GrowthOverTheWindow) {
  GrowthTracker tracker(10'000'000);
  EXPECT_FALSE(tracker.growth(7));
  tracker.sample(7, 0, 100);
  EXPECT_FALSE(tracker.growth(7));
  tracker.sample(7, 5'000'000, 400);
  EXPECT_EQ(tracker.growth(7), 300);
  // The anchor is the newest sample at or before the window's start (12 s - 10 s = 2 s): the 0 s one.
  tracker.sample(7, 12'000'000, 900);
  EXPECT_EQ(tracker.growth(7), 800);
  // At 16 s the window starts at 6 s: the 5 s sample becomes the anchor and the 0 s one leaves.
  tracker.sample(7, 16'000'000, 1000);
  EXPECT_EQ(tracker.growth(7), 600);
  tracker.sample(8, 12'000'000, 10);
  tracker.forgetOlderThan(16'000'001);
  EXPECT_EQ(tracker.size(), 0U);
}

TEST(GrowthTracker, StartUpGrowthInsideTheWindowIsNotGrowingNow) {
  GrowthTracker tracker(10'000'000);
  // A neighbour caught by a refresh half-way through its start-up allocation, then at rest.
  tracker.sample(7, 0, 2'000);
  tracker.sample(7, 5'000'000, 12'000);
  tracker.sample(7, 5'600'000, 12'000);
  EXPECT_EQ(tracker.growth(7), 10'000);  // still inside the window
  EXPECT_TRUE(tracker.growingNow(7));    // the rest is younger than a second: the start-up still counts
  tracker.sample(7, 6'100'000, 12'000);
  EXPECT_FALSE(tracker.growingNow(7));   // a second at rest: not allocating now
  // A newcomer: nothing at the refresh before it, its charge at the decision.
  tracker.sample(8, 5'000'000, 0);
  tracker.sample(8, 6'100'000, 4'000);
  EXPECT_TRUE(tracker.growingNow(8));
  // One sample is no growth.
  tracker.sample(9, 6'100'000, 4'000);
  EXPECT_FALSE(tracker.growingNow(9));
  EXPECT_FALSE(tracker.growingNow(10));
}

}  // namespace
}  // namespace oomguard::policies
