// The limit probes of young cgroups (WatchSet::probeYoungLimits) on a fixture tree with a fake clock: a
// cgroup that appears while running gets its memory.max read at 50, 200, 600, 1500 and 3000 ms of age,
// so a container whose limit is written just after mkdir is an OOM domain long before the refresh. And
// which limits the refresh re-reads: memory.swap.max only while the host has swap.
#include "guardian/daemon/watch_set.hpp"

#include <gtest/gtest.h>

#include <filesystem>
#include <sstream>
#include <string>
#include <vector>

#include "daemon_fixture.hpp"

namespace oomguard::guardian::daemon {
namespace {

class CountingListener final : public WatchSet::Listener {
 public:
  int young = 0;
  std::vector<std::string> found;
  void onMemoryEvents(const std::string&, bool) override {}
  void onPressure(const std::string&, bool, const std::string&) override {}
  void onDomainGone(const std::string&) override {}
  void onCgroupRemoved(const std::string&) override {}
  void onEventArrived() override {}
  void onYoungCgroup() override { ++young; }
  void onDomainFound(const std::string& cgroup) override { found.push_back(cgroup); }
};

// A WatchSet on the fixture tree with `config_text`, made by make() (a test may set up the tree first).
class WatchSetTest : public ::testing::Test {
 protected:
  explicit WatchSetTest(const std::string& config_text) : config(config::parseConfig(config_text, "test")) {}
  NodeFixture fixture;
  boost::asio::io_context io;
  config::Config config;
  std::ostringstream log_text;
  io::EventLog log{log_text, [] { return std::chrono::system_clock::now(); }};
  DaemonStats stats;
  CountingListener listener;
  std::unique_ptr<io::Node> node;
  std::unique_ptr<WatchSet> watch_set;

  void make(size_t trigger_budget = io::kMaxOpenFiles) {
    node = std::make_unique<io::Node>(fixture.procRoot(), fixture.cgroupRoot());
    node->triggerBudget().setMax(trigger_budget);
    watch_set = std::make_unique<WatchSet>(io, *node, config, log, stats, fixture.clock, listener);
  }
};

class YoungCgroups : public WatchSetTest {
 protected:
  YoungCgroups() : WatchSetTest(R"({"mode": "act", "cgroups": [{"match": "/**"}]})") {}
  void SetUp() override {
    make();
    watch_set->add("/");  // the start-up walk: /pod and its children are preexisting
    stats.refreshes = 1;  // running from now on
  }
  void mkdir(const std::string& name) const { std::filesystem::create_directories(fixture.root / ("cgroup" + name)); }
  void at(uint64_t age_us, uint64_t added_us) { fixture.now_us = added_us + age_us; }
};

TEST_F(YoungCgroups, StartUpCgroupsAreNotProbed) {
  EXPECT_EQ(listener.young, 0);
  EXPECT_TRUE(listener.found.empty()) << "the start-up walk's domains are ranked by the first refresh";
  EXPECT_FALSE(watch_set->nextYoungProbeUs());
}

TEST_F(YoungCgroups, ALimitWrittenAfterMkdirIsFoundAtTheNextProbe) {
  const uint64_t added = fixture.now_us;
  mkdir("/ctr");
  fixture.write("cgroup/ctr/memory.max", "max\n");  // as runc finds it at mkdir
  watch_set->add("/ctr");
  EXPECT_EQ(listener.young, 1);
  ASSERT_FALSE(watch_set->find("/ctr")->limited);
  EXPECT_EQ(watch_set->nextYoungProbeUs(), added + 50'000);
  at(50'000, added);
  EXPECT_TRUE(watch_set->probeYoungLimits(fixture.now_us).empty());
  EXPECT_EQ(watch_set->nextYoungProbeUs(), added + 200'000);
  fixture.write("cgroup/ctr/memory.max", "134217728\n");  // the runtime writes the limit
  fixture.write("cgroup/ctr/memory.swap.max", "0\n");
  at(199'999, added);
  EXPECT_TRUE(watch_set->probeYoungLimits(fixture.now_us).empty()) << "not due yet";
  at(200'000, added);
  EXPECT_EQ(watch_set->probeYoungLimits(fixture.now_us), (std::vector<std::string>{"/ctr"}));
  EXPECT_EQ(listener.found, (std::vector<std::string>{"/ctr"}));
  EXPECT_TRUE(watch_set->find("/ctr")->limited);
  EXPECT_EQ(watch_set->find("/ctr")->memory_max_bytes, uint64_t{134217728});
  EXPECT_FALSE(watch_set->nextYoungProbeUs()) << "a limited cgroup needs no more probes";
}

TEST_F(YoungCgroups, ACgroupMadeWithItsLimitIsADomainAtOnce) {
  mkdir("/ready");
  fixture.write("cgroup/ready/memory.max", "67108864\n");
  watch_set->add("/ready");
  EXPECT_EQ(listener.found, (std::vector<std::string>{"/ready"}));
  EXPECT_EQ(listener.young, 0);
  EXPECT_FALSE(watch_set->nextYoungProbeUs());
}

TEST_F(YoungCgroups, ACgroupThatNeverGetsALimitIsProbedFiveTimesThenLeftToTheRefresh) {
  const uint64_t added = fixture.now_us;
  mkdir("/session.scope");
  watch_set->add("/session.scope");
  int probes = 0;
  while (const auto due = watch_set->nextYoungProbeUs()) {
    fixture.now_us = *due;
    EXPECT_TRUE(watch_set->probeYoungLimits(fixture.now_us).empty());
    ASSERT_LT(++probes, 10);
  }
  EXPECT_EQ(probes, 5);
  EXPECT_EQ(fixture.now_us, added + 3'000'000);
}

TEST_F(YoungCgroups, AProbeLateByAWholeSecondReadsOnceNotOncePerMissedAge) {
  const uint64_t added = fixture.now_us;
  mkdir("/late");
  watch_set->add("/late");
  at(1'000'000, added);  // the 50, 200 and 600 ms probes all due: one read
  EXPECT_TRUE(watch_set->probeYoungLimits(fixture.now_us).empty());
  EXPECT_EQ(watch_set->nextYoungProbeUs(), added + 1'500'000);
}

TEST_F(YoungCgroups, ARemovedCgroupIsForgotten) {
  mkdir("/gone");
  watch_set->add("/gone");
  watch_set->remove("/gone");
  EXPECT_FALSE(watch_set->nextYoungProbeUs());
  fixture.now_us += 50'000;
  EXPECT_TRUE(watch_set->probeYoungLimits(fixture.now_us).empty());
}

// memory.swap.max counts in a domain's size only while the host has swap (mem_cgroup_get_max adds
// min(swap.max, total swap)): without swap it is not read; when swap appears, every limit is read again
// at that refresh, before the ranking uses it.
TEST_F(YoungCgroups, SwapMaxIsReadOnlyWhileTheHostHasSwapAndAtOnceWhenSwapAppears) {
  mkdir("/ctr");
  fixture.write("cgroup/ctr/memory.max", "134217728\n");
  fixture.write("cgroup/ctr/memory.swap.max", "0\n");
  watch_set->add("/ctr");
  EXPECT_EQ(watch_set->find("/ctr")->swap_max_bytes, uint64_t{0}) << "before the first refresh swap is unknown: read";
  fixture.write("cgroup/ctr/memory.swap.max", "67108864\n");
  fixture.now_us += 31'000'000;  // no longer young: its limits are read only by a full scan from now on
  watch_set->refreshLimits(fixture.now_us, true, 0);
  EXPECT_TRUE(watch_set->find("/ctr")->limited);
  EXPECT_FALSE(watch_set->find("/ctr")->swap_max_bytes) << "no swap: memory.swap.max is not read";
  fixture.now_us += 5'000'000;
  watch_set->refreshLimits(fixture.now_us, false, 1024ULL * 1024);
  EXPECT_EQ(watch_set->find("/ctr")->swap_max_bytes, uint64_t{67108864})
      << "swap appeared: every limit is read again at this refresh, full scan or not";
  fixture.write("cgroup/ctr/memory.swap.max", "0\n");
  fixture.now_us += 5'000'000;
  watch_set->refreshLimits(fixture.now_us, false, 1024ULL * 1024);
  EXPECT_EQ(watch_set->find("/ctr")->swap_max_bytes, uint64_t{67108864})
      << "swap still there: the next refresh without a full scan reads no limit";
}

// The PSI triggers kept within the node's trigger budget (the open-file limit less a reserve): past it a
// cgroup's trigger waits, said once in the log, and is armed at the refresh after another is given back.
// Fixture pressure files are regular files: the trigger is written and its wait ends at once, unarmed by
// epoll, which is all this needs.
class TriggerBudget : public WatchSetTest {
 protected:
  TriggerBudget()
      : WatchSetTest(R"({"cgroups": [{"match": "/**", "pressure_only_if_limited": false,
                       "pressure": {"resource": "memory", "kind": "some", "stall_us": 100000, "window_ms": 1000}}]})") {}

  void SetUp() override {
    for (const char* name : {"/a", "/b", "/c"}) {
      std::filesystem::create_directories(fixture.root / ("cgroup" + std::string(name)));
      fixture.write("cgroup" + std::string(name) + "/cgroup.events", "populated 1\nfrozen 0\n");
      fixture.write("cgroup" + std::string(name) + "/memory.pressure", "some avg10=0.00 avg60=0.00 avg300=0.00 total=0\n");
    }
    make(2);
  }
  [[nodiscard]] size_t cappedLines() const {
    size_t count = 0;
    std::istringstream lines(log_text.str());
    for (std::string line; std::getline(lines, line);) {
      count += line.find("\"event\":\"pressure_triggers_capped\"") != std::string::npos ? 1 : 0;
    }
    return count;
  }
};

// The children are taken in inode order (creation order on cgroupfs); a fixture's inode numbers are the
// file system's choice (ext4 reuses freed ones, XFS spreads directories), so which of the three waits is
// found, not assumed.
TEST_F(TriggerBudget, TriggersPastTheBudgetWaitAndAreArmedWhenOneIsGivenBack) {
  watch_set->add("/");
  EXPECT_EQ(watch_set->armedPressureTriggers(), size_t{2}) << "two of /a, /b, /c; the third waits (the root has none)";
  EXPECT_EQ(node->triggerBudget().used(), size_t{2});
  EXPECT_EQ(cappedLines(), size_t{1});
  std::vector<std::string> armed;
  std::vector<std::string> waiting;
  for (const char* name : {"/a", "/b", "/c"}) {
    const auto* watched = watch_set->find(name);
    ASSERT_NE(watched, nullptr) << name;
    EXPECT_NE(static_cast<bool>(watched->pressure), watched->pressure_pending) << name << ": armed or waiting";
    (watched->pressure_pending ? waiting : armed).emplace_back(name);
  }
  ASSERT_EQ(armed.size(), size_t{2});
  ASSERT_EQ(waiting.size(), size_t{1});
  watch_set->refreshLimits(fixture.now_us, true, 0);
  EXPECT_EQ(watch_set->armedPressureTriggers(), size_t{2});
  EXPECT_TRUE(watch_set->find(waiting[0])->pressure_pending) << "no trigger given back: it still waits";
  EXPECT_EQ(cappedLines(), size_t{1}) << "said once, not at every refresh";
  std::filesystem::remove_all(fixture.root / ("cgroup" + armed[0]));
  watch_set->remove(armed[0]);
  EXPECT_EQ(node->triggerBudget().used(), size_t{1}) << "the removed cgroup's trigger is given back";
  watch_set->refreshLimits(fixture.now_us, true, 0);
  EXPECT_EQ(watch_set->armedPressureTriggers(), size_t{2}) << armed[1] << " and now " << waiting[0];
  EXPECT_TRUE(watch_set->find(waiting[0])->pressure);
  EXPECT_FALSE(watch_set->find(waiting[0])->pressure_pending);
  EXPECT_EQ(node->triggerBudget().used(), size_t{2});
  EXPECT_EQ(cappedLines(), size_t{1}) << "no cgroup waits now: nothing more said";
}

TEST_F(TriggerBudget, ChurnAtTheCapIsSaidOnceNotOncePerArmedTrigger) {
  std::filesystem::create_directories(fixture.root / "cgroup/d");
  fixture.write("cgroup/d/cgroup.events", "populated 1\nfrozen 0\n");
  fixture.write("cgroup/d/memory.pressure", "some avg10=0.00 avg60=0.00 avg300=0.00 total=0\n");
  watch_set->add("/");  // two of /a../d armed (inode order), two wait
  EXPECT_EQ(cappedLines(), size_t{1});
  std::filesystem::remove_all(fixture.root / "cgroup/a");
  watch_set->remove("/a");
  watch_set->refreshLimits(fixture.now_us, true, 0);  // whichever waited armed if /a held one; one waits
  EXPECT_EQ(watch_set->armedPressureTriggers(), size_t{2});
  EXPECT_EQ(cappedLines(), size_t{1}) << "still capped: not said again";
  std::filesystem::remove_all(fixture.root / "cgroup/b");
  watch_set->remove("/b");
  watch_set->refreshLimits(fixture.now_us, true, 0);  // /c and /d armed: none waits
  watch_set->refreshLimits(fixture.now_us, true, 0);
  EXPECT_EQ(watch_set->armedPressureTriggers(), size_t{2});
  std::filesystem::create_directories(fixture.root / "cgroup/e");
  fixture.write("cgroup/e/cgroup.events", "populated 1\nfrozen 0\n");
  fixture.write("cgroup/e/memory.pressure", "some avg10=0.00 avg60=0.00 avg300=0.00 total=0\n");
  fixture.now_us += 3'000'000;  // old enough to be armed
  watch_set->add("/e");
  fixture.now_us += 3'000'000;
  watch_set->refreshLimits(fixture.now_us, true, 0);
  EXPECT_EQ(cappedLines(), size_t{2}) << "capped again after a stretch with none waiting: said again";
}

}  // namespace
}  // namespace oomguard::guardian::daemon
