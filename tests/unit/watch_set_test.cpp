// The limit probes of young cgroups (WatchSet::probeYoungLimits) on a fixture tree with a fake clock: a
// cgroup that appears while running gets its memory.max read at 50, 200, 600, 1500 and 3000 ms of age,
// so a container whose limit is written just after mkdir is an OOM domain long before the refresh. And
// which limits the refresh re-reads: memory.swap.max only while the host has swap.
#include "guardian/daemon/watch_set.hpp"

#include <gtest/gtest.h>

#include <filesystem>
#include <sstream>

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

class YoungCgroups : public ::testing::Test {
 protected:
  NodeFixture fixture;
  boost::asio::io_context io;
  config::Config config = config::parseConfig(R"({"mode": "act", "cgroups": [{"match": "/**"}]})", "test");
  std::ostringstream log_text;
  io::EventLog log{log_text, [] { return std::chrono::system_clock::now(); }};
  DaemonStats stats;
  CountingListener listener;
  std::unique_ptr<io::Node> node;
  std::unique_ptr<WatchSet> watch_set;

  void SetUp() override {
    node = std::make_unique<io::Node>(fixture.procRoot(), fixture.cgroupRoot());
    watch_set = std::make_unique<WatchSet>(io, *node, config, log, stats, fixture.clock, listener);
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

}  // namespace
}  // namespace oomguard::guardian::daemon
