// Rankings' refresh on a fixture node: quiet processes are taken from the last refresh, a change or a
// new process under a recycled pid is read at once, and the members of a limited cgroup follow
// newcomers without reading its cgroup.procs (one moved in after its first refresh too). Files only;
// nothing is spawned.
#include "guardian/daemon/rankings.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <sstream>

#include "daemon_fixture.hpp"

namespace oomguard::guardian::daemon {
namespace {

class RankingsTest : public ::testing::Test {
 protected:
  NodeFixture fixture;
  const pid_t one = ::getpid();
  const pid_t two = ::getppid();
  config::Config config = config::parseConfig(R"({"cgroups": [{"match": "/**"}]})", "test");
  std::unique_ptr<io::Node> node;
  std::ostringstream log_text;
  std::unique_ptr<io::EventLog> log;
  DaemonStats stats;
  NoListener listener;
  boost::asio::io_context io;
  std::unique_ptr<WatchSet> watch_set;
  std::unique_ptr<Rankings> rankings;
  io::NodeFacts facts;

  void SetUp() override {
    fixture.addProcess(one, "worker", "/pod/app", 100ULL * 1024);
    fixture.addProcess(two, "sidecar", "/pod/side", 50ULL * 1024);
    node = std::make_unique<io::Node>(fixture.procRoot(), fixture.cgroupRoot());
    log = std::make_unique<io::EventLog>(log_text, [] { return std::chrono::system_clock::now(); });
    watch_set = std::make_unique<WatchSet>(io, *node, config, *log, stats, fixture.clock, listener);
    watch_set->add("/");
    facts = node->readFacts().value();
    watch_set->refreshLimits(fixture.now_us, true, facts.meminfo.swap_total_kb);
    rankings = std::make_unique<Rankings>(*node, config, stats, fixture.clock, [](const DomainState&, bool) {});
  }

  // One refresh; the charge (kB) of `pid` as the host's ranking and /pod's see it.
  std::pair<uint64_t, uint64_t> refresh(pid_t pid) {
    fixture.now_us += 5'000'000;
    const HostScan& scan = rankings->refresh(facts, *watch_set, {"/pod"});
    const auto& process = scan.processes.at(scan.by_pid.at(pid));
    uint64_t in_pod = 0;
    for (const auto& candidate : rankings->find("/pod")->top) {
      if (candidate.pid == pid) {
        in_pod = candidate.points;
      }
    }
    return {process.status.rss_anon_kb, in_pod};
  }

  // After three refreshes of the fixture's processes, a process forked in `forked_in`, listed by one
  // refresh and then moved to `moved_to` (its /proc/<pid>/cgroup; the fixture's cgroup.procs are left
  // as they were, so only a placement can see the move). Returns what /pod's ranking gave it at the
  // refresh that first listed it, and the pid (any number: the fixture is files).
  std::pair<uint64_t, pid_t> forkThenMove(const std::string& forked_in, const std::string& moved_to) {
    for (int i = 0; i < 3; ++i) {
      refresh(one);
    }
    const pid_t newcomer = two + 100000;
    fixture.addProcess(newcomer, "forked", forked_in, 900ULL * 1024);
    const uint64_t first_points = refresh(newcomer).second;
    fixture.write("proc/" + std::to_string(newcomer) + "/cgroup", "0::" + moved_to + "\n");
    return {first_points, newcomer};
  }
};

TEST_F(RankingsTest, AQuietProcessIsReadOnceInSixRefreshesAndAChangeWithinThem) {
  // Read three times unchanged: quiet from then on.
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(refresh(one).first, 100ULL * 1024);
  }
  fixture.setRss(one, "worker", 400ULL * 1024);
  // The change is seen within kQuietEvery refreshes, and from the read that sees it on, every refresh
  // reads the process again.
  int refreshes_until_seen = 0;
  while (refresh(one).first != 400ULL * 1024) {
    ASSERT_LT(++refreshes_until_seen, static_cast<int>(Rankings::kQuietEvery)) << "a quiet process was never re-read";
  }
  fixture.setRss(one, "worker", 500ULL * 1024);
  EXPECT_EQ(refresh(one).first, 500ULL * 1024);
}

TEST_F(RankingsTest, QuietProcessesAreNotReadAtEveryRefresh) {
  size_t reads = 0;
  for (int i = 0; i < 12; ++i) {
    fixture.now_us += 5'000'000;
    const HostScan& scan = rankings->refresh(facts, *watch_set, {"/pod"});
    ASSERT_EQ(scan.processes.size(), 2U);
    for (const bool fresh : scan.fresh) {
      reads += fresh ? 1 : 0;
    }
  }
  // 3 reads each to become quiet, then one refresh in 6: 2 x (3 + about 9 / 6), far below 2 x 12.
  EXPECT_LE(reads, 2ULL * 5);
  EXPECT_GE(reads, 2ULL * 4);
}

TEST_F(RankingsTest, ANewProcessUnderARecycledPidIsReadAtOnce) {
  for (int i = 0; i < 3; ++i) {
    refresh(one);
  }
  // The old process exited and another got its pid: a new /proc/<pid> directory (a new inode). The old
  // one is kept aside until the new one exists: a disk filesystem may give a freed inode number to the
  // next directory made (procfs numbers on, and never so soon).
  const auto dir = fixture.root / ("proc/" + std::to_string(one));
  const auto aside = fixture.root / "exited";
  std::filesystem::rename(dir, aside);
  fixture.write("cgroup/pod/app/cgroup.procs", "");
  fixture.addProcess(one, "newcomer", "/pod/app", 700ULL * 1024);
  std::filesystem::remove_all(aside);
  const auto [host_kb, pod_points] = refresh(one);
  EXPECT_EQ(host_kb, 700ULL * 1024);
  EXPECT_GT(pod_points, 0U) << "the newcomer is a member of /pod from its first refresh";
}

TEST_F(RankingsTest, ANewcomerJoinsItsLimitedCgroupWithoutAReadOfCgroupProcs) {
  for (int i = 0; i < 3; ++i) {
    refresh(one);
  }
  // A process forked in /pod/side: placed by its /proc/<pid>/cgroup. The fixture's cgroup.procs is left
  // without it, so only the placement can put it in /pod (the refresh that reads every cgroup.procs is
  // one in six, and the next is not it).
  const pid_t newcomer = two + 100000;  // any number: the fixture is files
  fixture.addProcess(newcomer, "forked", "/pod/side", 900ULL * 1024);
  fixture.write("cgroup/pod/side/cgroup.procs", std::to_string(two) + "\n");
  const auto [host_kb, pod_points] = refresh(newcomer);
  EXPECT_EQ(host_kb, 900ULL * 1024);
  EXPECT_GT(pod_points, 0U);
  EXPECT_EQ(rankings->find("/pod")->top.front().pid, newcomer);
}

TEST_F(RankingsTest, ANewcomerMovedIntoItsCgroupAfterItsFirstRefreshJoinsItAtTheNext) {
  // Forked outside /pod and moved in just after the refresh that first listed it (a runtime's init, the
  // lab's hog -g): that refresh placed it where it was; the next one must find where it went, not wait
  // for the refresh that reads every cgroup.procs (one in six, and the next two are not it).
  const auto [first_points, newcomer] = forkThenMove("/elsewhere", "/pod/side");
  EXPECT_EQ(first_points, 0U);
  EXPECT_GT(refresh(newcomer).second, 0U) << "moved after its first refresh, it is a member of /pod at the next";
  EXPECT_EQ(rankings->find("/pod")->top.front().pid, newcomer);
}

TEST_F(RankingsTest, ANewcomerMovedBetweenMemberCgroupsIsListedOnceWhereItWent) {
  // Forked in /pod/app, moved to /pod/side after its first refresh: both are members of /pod, so the
  // second placement must take it out of the one and put it in the other, once.
  const auto [first_points, newcomer] = forkThenMove("/pod/app", "/pod/side");
  EXPECT_GT(first_points, 0U);
  refresh(newcomer);
  int listed = 0;
  for (const auto& candidate : rankings->find("/pod")->top) {
    if (candidate.pid == newcomer) {
      ++listed;
      EXPECT_EQ(candidate.cgroup, "/pod/side");
    }
  }
  EXPECT_EQ(listed, 1);
}

}  // namespace
}  // namespace oomguard::guardian::daemon
