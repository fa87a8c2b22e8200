#include <gtest/gtest.h>

#include "cgroupfs/parse.hpp"
#include "test_util.hpp"

namespace oomguard::cgroupfs {
namespace {

using testing::readFixture;

// --- /proc/<pid>/status -------------------------------------------------------------------------

TEST(ParseProcStatus, RealUserProcessFromThisHost) {
  const auto status = parseProcStatus(readFixture("host-6.18/status-self"));
  ASSERT_TRUE(status.ok()) << status.error().describe();
  EXPECT_EQ(status.value().comm, "cp");
  EXPECT_TRUE(status.value().has_mm);
  EXPECT_EQ(status.value().kthread, std::optional<bool>(false));
  EXPECT_EQ(status.value().threads, 1);
  // Values as captured: every Rss/VmSwap/VmPTE is a multiple of the 4 kB page.
  EXPECT_EQ(status.value().rss_anon_kb % 4, 0U);
  EXPECT_GT(status.value().rss_file_kb, 0U);
  EXPECT_GT(status.value().pgtables_kb, 0U);
}

TEST(ParseProcStatus, RealKernelThreadHasNoMm) {
  const auto status = parseProcStatus(readFixture("host-6.18/status-kthread"));
  ASSERT_TRUE(status.ok()) << status.error().describe();
  EXPECT_EQ(status.value().comm, "kthreadd");
  EXPECT_EQ(status.value().tgid, 2);
  EXPECT_EQ(status.value().ppid, 0);
  EXPECT_FALSE(status.value().has_mm);
  EXPECT_EQ(status.value().kthread, std::optional<bool>(true));
}

TEST(ParseProcStatus, ExactFieldsAndCommWithSpaces) {
  const auto status = parseProcStatus(readFixture("tree-basic/proc/106/status"));
  ASSERT_TRUE(status.ok()) << status.error().describe();
  EXPECT_EQ(status.value().comm, "batch job");
  EXPECT_EQ(status.value().rss_anon_kb, 307200U);
  EXPECT_EQ(status.value().rss_file_kb, 0U);
  EXPECT_EQ(status.value().pgtables_kb, 800U);
  EXPECT_EQ(status.value().swap_kb, 0U);
}

TEST(ParseProcStatus, OlderKernelWithoutKthreadLine) {
  const auto status = parseProcStatus("Name:\tx\nTgid:\t5\nPPid:\t1\nUid:\t1000\t1000\t1000\t1000\nThreads:\t3\n");
  ASSERT_TRUE(status.ok()) << status.error().describe();
  EXPECT_FALSE(status.value().kthread.has_value());
  EXPECT_EQ(status.value().uid, 1000U);
  EXPECT_EQ(status.value().threads, 3);
}

TEST(ParseProcStatus, HostileSizesAreRefusedNotWrapped) {
  // u64 max in kB once wrapped into negative or small points.
  const std::string base = "Name:\tx\nTgid:\t5\nPPid:\t1\nUid:\t0\t0\t0\t0\nThreads:\t1\n";
  const auto huge = parseProcStatus(base + "RssAnon:\t18446744073709551615 kB\n");
  ASSERT_FALSE(huge.ok());
  EXPECT_NE(huge.error().message.find("RssAnon"), std::string::npos) << huge.error().message;
  EXPECT_FALSE(parseProcStatus(base + "RssAnon:\t9223372036854775807 kB\n").ok());
  EXPECT_FALSE(parseProcStatus(base + "VmSwap:\t1125899906842625 kB\n").ok());  // 2^50 + 1
  const auto largest = parseProcStatus(base + "RssAnon:\t1125899906842624 kB\nRssFile:\t0 kB\nRssShmem:\t0 kB\n"
                                              "VmSwap:\t0 kB\nVmPTE:\t0 kB\nVmSize:\t1 kB\n");  // 2^50 kB: 1 EiB
  ASSERT_TRUE(largest.ok());
  EXPECT_EQ(largest.value().rss_anon_kb, 1125899906842624U);
}

struct MalformedCase {
  const char* name;
  const char* text;
  const char* reason;  // a substring of the error message
};

void PrintTo(const MalformedCase& value, std::ostream* out) { *out << value.name; }

class ParseProcStatusMalformed : public ::testing::TestWithParam<MalformedCase> {};

TEST_P(ParseProcStatusMalformed, IsAnErrorNamingTheReason) {
  const auto status = parseProcStatus(GetParam().text);
  ASSERT_FALSE(status.ok());
  EXPECT_TRUE(status.error().malformed());
  EXPECT_NE(status.error().message.find(GetParam().reason), std::string::npos) << status.error().message;
}

INSTANTIATE_TEST_SUITE_P(
    Cases, ParseProcStatusMalformed,
    ::testing::Values(
        MalformedCase{"empty", "", "missing one of"},
        MalformedCase{"bad_number", "Name:\tx\nTgid:\tabc\nPPid:\t1\nUid:\t0\nThreads:\t1\n", "bad value for Tgid"},
        MalformedCase{"bad_kb", "Name:\tx\nTgid:\t1\nPPid:\t1\nUid:\t0\nThreads:\t1\nVmSize:\t1 kB\nRssAnon:\tlots kB\n",
                      "bad value for RssAnon"},
        MalformedCase{"missing_unit", "Name:\tx\nTgid:\t1\nPPid:\t1\nUid:\t0\nThreads:\t1\nVmSize:\t1 kB\nRssAnon:\t12\n",
                      "bad value for RssAnon"},
        MalformedCase{"mm_without_rss",
                      "Name:\tx\nTgid:\t1\nPPid:\t1\nUid:\t0\nThreads:\t1\nVmSize:\t1 kB\nRssAnon:\t4 kB\n", "lacks one of"},
        MalformedCase{"negative_kb",
                      "Name:\tx\nTgid:\t1\nPPid:\t1\nUid:\t0\nThreads:\t1\nVmSize:\t1 kB\nRssAnon:\t-4 kB\n", "RssAnon"},
        MalformedCase{"bad_kthread", "Name:\tx\nTgid:\t1\nPPid:\t1\nUid:\t0\nThreads:\t1\nKthread:\t7\n", "Kthread"}),
    [](const auto& test_info) { return std::string(test_info.param.name); });

// --- single values --------------------------------------------------------------------------------

TEST(ParseOomScoreAdj, RangeIsEnforced) {
  EXPECT_EQ(parseOomScoreAdj("0\n").value(), 0);
  EXPECT_EQ(parseOomScoreAdj("-1000\n").value(), -1000);
  EXPECT_EQ(parseOomScoreAdj("1000").value(), 1000);
  EXPECT_FALSE(parseOomScoreAdj("1001\n").ok());
  EXPECT_FALSE(parseOomScoreAdj("-1001\n").ok());
  EXPECT_FALSE(parseOomScoreAdj("").ok());
  EXPECT_FALSE(parseOomScoreAdj("12 13\n").ok());
}

TEST(ParseLimit, MaxOrBytes) {
  EXPECT_EQ(parseLimit("max\n").value(), LimitBytes{});
  EXPECT_EQ(parseLimit("134217728\n").value(), LimitBytes{134217728});
  EXPECT_FALSE(parseLimit("128M\n").ok());
  EXPECT_FALSE(parseLimit("\n").ok());
}

TEST(ParseKernelRelease, Variants) {
  const auto debian = parseKernelRelease("6.12.117+deb12-amd64\n").value();
  EXPECT_EQ(debian.major, 6);
  EXPECT_EQ(debian.minor, 12);
  EXPECT_EQ(debian.patch, 117);
  EXPECT_TRUE(debian.atLeast(5, 9));
  const auto host = parseKernelRelease(readFixture("host-6.18/osrelease")).value();
  EXPECT_EQ(host.major, 6);
  EXPECT_EQ(host.minor, 18);
  EXPECT_EQ(parseKernelRelease("5.8-rc1").value().minor, 8);
  EXPECT_FALSE(parseKernelRelease("5.8-rc1").value().atLeast(5, 9));
  EXPECT_FALSE(parseKernelRelease("linux").ok());
}

// --- /proc/<pid>/cgroup -------------------------------------------------------------------------

TEST(ParseCgroupV2Path, HybridHierarchyFromThisHost) {
  const auto path = parseCgroupV2Path(readFixture("host-6.18/cgroup-v1-hybrid"));
  ASSERT_TRUE(path.ok()) << path.error().describe();
  EXPECT_EQ(path.value(), "/");
}

TEST(ParseCgroupV2Path, PureV2AndDeleted) {
  EXPECT_EQ(parseCgroupV2Path("0::/kubepods.slice/x.scope\n").value(), "/kubepods.slice/x.scope");
  EXPECT_EQ(parseCgroupV2Path("0::/gone (deleted)\n").value(), "/gone");
  EXPECT_FALSE(parseCgroupV2Path("4:memory:/foo\n").ok());
  EXPECT_FALSE(parseCgroupV2Path("0::relative\n").ok());
}

// --- /proc/meminfo --------------------------------------------------------------------------------

TEST(ParseMemInfo, RealFileFromThisHost) {
  const auto info = parseMemInfo(readFixture("host-6.18/meminfo"));
  ASSERT_TRUE(info.ok()) << info.error().describe();
  EXPECT_GT(info.value().mem_total_kb, 1024U * 1024U);
  EXPECT_TRUE(info.value().mem_available_kb.has_value());
  EXPECT_TRUE(info.value().commit_limit_kb.has_value());
  EXPECT_TRUE(info.value().committed_as_kb.has_value());
}

TEST(ParseMemInfo, ExactValuesAndErrors) {
  const auto info = parseMemInfo(readFixture("tree-basic/proc/meminfo")).value();
  EXPECT_EQ(info.mem_total_kb, 1004000U);
  EXPECT_EQ(info.swap_total_kb, 262140U);
  EXPECT_EQ(info.swap_free_kb, 250000U);
  EXPECT_EQ(info.mem_available_kb, std::optional<uint64_t>(600000));
  EXPECT_FALSE(parseMemInfo("MemFree: 1 kB\nSwapTotal: 0 kB\nSwapFree: 0 kB\n").ok());
  EXPECT_FALSE(parseMemInfo("MemTotal: x kB\nMemFree: 1 kB\nSwapTotal: 0 kB\nSwapFree: 0 kB\n").ok());
}

// --- /proc/vmstat ---------------------------------------------------------------------------------

TEST(ParseAllocatedPages, RealFileFromThisHost) {
  // pgalloc_dma 0, pgalloc_dma32 0, pgalloc_normal 831161561, pgalloc_movable 0, pgalloc_device 0.
  EXPECT_EQ(parseAllocatedPages(readFixture("host-6.18/vmstat")).value(), 831161561U);
}

TEST(ParseAllocatedPages, SumsEveryZoneAndRefusesWhatIsNotACount) {
  EXPECT_EQ(parseAllocatedPages("nr_free_pages 5\npgalloc_dma32 7\npgalloc_normal 100\npgfree 3\n").value(), 107U);
  EXPECT_EQ(parseAllocatedPages("pgalloc_normal 100").value(), 100U);  // no final newline
  EXPECT_FALSE(parseAllocatedPages("nr_free_pages 5\npgfree 3\n").ok());  // no counter at all
  EXPECT_FALSE(parseAllocatedPages("pgalloc_normal -1\n").ok());
  EXPECT_FALSE(parseAllocatedPages("pgalloc_normal 12x\n").ok());
  EXPECT_FALSE(parseAllocatedPages("pgalloc_normal\n").ok());
  EXPECT_FALSE(parseAllocatedPages("pgalloc_normal 99999999999999999999999\n").ok());
}

// --- PSI ------------------------------------------------------------------------------------------

TEST(ParsePressure, RealFilesFromThisHost) {
  for (const char* name : {"host-6.18/pressure-memory", "host-6.18/pressure-cpu", "host-6.18/pressure-io",
                           "host-6.18/unified-cpu.pressure"}) {
    const auto pressure = parsePressure(readFixture(name));
    ASSERT_TRUE(pressure.ok()) << name << ": " << pressure.error().describe();
    EXPECT_TRUE(pressure.value().full.has_value()) << name;
  }
}

TEST(ParsePressure, ExactValues) {
  const auto pressure =
      parsePressure("some avg10=1.50 avg60=0.25 avg300=0.00 total=123456\nfull avg10=0.10 avg60=0.00 avg300=0.00 total=42\n")
          .value();
  EXPECT_DOUBLE_EQ(pressure.some.avg10, 1.5);
  EXPECT_DOUBLE_EQ(pressure.some.avg60, 0.25);
  EXPECT_EQ(pressure.some.total_us, 123456U);
  ASSERT_TRUE(pressure.full.has_value());
  EXPECT_EQ(pressure.full->total_us, 42U);
  EXPECT_FALSE(parsePressure("some avg10=x avg60=0 avg300=0 total=0\n").ok());
  EXPECT_FALSE(parsePressure("full avg10=0 avg60=0 avg300=0 total=0\n").ok());
  EXPECT_FALSE(parsePressure("some avg10=0.00 avg60=0.00 total=0\n").ok());
  EXPECT_FALSE(parsePressure("other avg10=0 avg60=0 avg300=0 total=0\n").ok());
}

// --- flat keyed files -----------------------------------------------------------------------------

TEST(ParseMemoryEvents, KnownKeysUnknownTolerated) {
  const auto events = parseMemoryEvents("low 1\nhigh 93\nmax 19\noom 2\noom_kill 4\noom_group_kill 1\nnew_key 7\n").value();
  EXPECT_EQ(events.low, 1U);
  EXPECT_EQ(events.high, 93U);
  EXPECT_EQ(events.max, 19U);
  EXPECT_EQ(events.oom, 2U);
  EXPECT_EQ(events.oom_kill, 4U);
  EXPECT_EQ(events.oom_group_kill, 1U);
  // An older kernel without oom_group_kill.
  EXPECT_EQ(parseMemoryEvents("low 0\nhigh 0\nmax 0\noom 0\noom_kill 3\n").value().oom_kill, 3U);
  EXPECT_FALSE(parseMemoryEvents("low\n").ok());
  EXPECT_FALSE(parseMemoryEvents("low -1\n").ok());
}

TEST(ParseFlatKeyed, KeepsFileOrder) {
  const auto entries = parseFlatKeyed("populated 1\nfrozen 0\n").value();
  ASSERT_EQ(entries.size(), 2U);
  EXPECT_EQ(entries[0].first, "populated");
  EXPECT_EQ(entries[1].second, 0U);
  EXPECT_TRUE(parseFlatKeyed("").value().empty());
}

TEST(ParsePidList, OrderKeptAndGarbageRefused) {
  EXPECT_EQ(parsePidList("5\n3\n9\n").value(), (std::vector<pid_t>{5, 3, 9}));
  EXPECT_TRUE(parsePidList("").value().empty());
  EXPECT_FALSE(parsePidList("5\nx\n").ok());
  EXPECT_FALSE(parsePidList("0\n").ok());
}

TEST(ParseWordList, Controllers) {
  EXPECT_EQ(parseWordList("cpuset cpu io memory\n").value(), (std::vector<std::string>{"cpuset", "cpu", "io", "memory"}));
  EXPECT_TRUE(parseWordList("\n").value().empty());
  EXPECT_EQ(parseWordList(readFixture("host-6.18/unified-cgroup.controllers")).value().size(), 1U);
}

TEST(ParseBuddyInfo, RealFileFromThisHost) {
  const auto zones = parseBuddyInfo(readFixture("host-6.18/buddyinfo"));
  ASSERT_TRUE(zones.ok()) << zones.error().describe();
  ASSERT_EQ(zones.value().size(), 3U);
  EXPECT_EQ(zones.value()[0].zone, "DMA");
  EXPECT_EQ(zones.value()[2].zone, "Normal");
  EXPECT_EQ(zones.value()[2].free_blocks_by_order.size(), 11U);
  EXPECT_FALSE(parseBuddyInfo("Node x, zone DMA 1 2\n").ok());
  EXPECT_FALSE(parseBuddyInfo("Node 0, zone DMA 1 two\n").ok());
}

}  // namespace
}  // namespace oomguard::cgroupfs
