// Kernel logs in their four forms (cgroupfs/kernel_log.hpp) and whole OOM reports gathered from them
// (cgroupfs/oom_report.hpp), on the real reports of tests/fixtures/kmsg-6.12 and on cut or odd input.
#include "cgroupfs/oom_report.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "cgroupfs/kernel_log.hpp"
#include "test_util.hpp"

namespace oomguard::cgroupfs {
namespace {

using testing::readFixture;

OomReportScan scanText(const std::string& text) {
  const auto messages = splitKernelLog(text);
  return scanOomReports(messages);
}

OomReportScan scanFixture(const std::string& name) {
  return scanText(readFixture("kmsg-6.12/" + name));
}

const std::vector<std::string> kHeader = *parseTaskTableHeader(
    "[  pid  ]   uid  tgid total_vm      rss rss_anon rss_file rss_shmem pgtables_bytes swapents "
    "oom_score_adj name");

// --- the four forms --------------------------------------------------------------------------------

TEST(SplitKernelLog, KmsgRecordsWithDictionaryLinesAndEscapes) {
  const auto messages = splitKernelLog(
      "6,193,1844122,-;acpi PNP0A08:00: _OSC: OS supports [ExtendedConfig]\n SUBSYSTEM=acpi\n "
      "DEVICE=+acpi:PNP0A08:00\n"
      "4,696,14885868,-;active_anon:111530\\x0a active_file:0 a\\x5cb \\x1b\n");
  ASSERT_EQ(messages.size(), 2U);
  EXPECT_EQ(messages[0].form, KernelLogForm::kKmsg);
  EXPECT_EQ(messages[0].sequence, 193U);
  EXPECT_EQ(messages[0].timestamp_us, 1844122U);
  EXPECT_EQ(messages[0].text, "acpi PNP0A08:00: _OSC: OS supports [ExtendedConfig]");
  EXPECT_EQ(messages[1].text, "active_anon:111530\n active_file:0 a\\b \x1b");
  EXPECT_EQ(messages[1].line, 4U);
}

TEST(SplitKernelLog, DmesgAndItsIndentedContinuations) {
  const auto messages = splitKernelLog(
      "[    4.966517] hog invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, oom_score_adj=0\r\n"
      "[    4.969027]  <TASK>\n"
      "[ 1234.567890] active_anon:1\n"
      "                active_file:0\n"
      "\n"
      "[    4.975000] [    141]     0   141    25850    12386    12256        0       130   139264        0  "
      "           0 hog\n");
  ASSERT_EQ(messages.size(), 4U);
  EXPECT_EQ(messages[0].form, KernelLogForm::kDmesg);
  EXPECT_EQ(messages[0].timestamp_us, 4966517U);
  EXPECT_EQ(messages[0].text, "hog invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, oom_score_adj=0");
  EXPECT_EQ(messages[1].text, " <TASK>");  // the message's own leading space stays
  EXPECT_EQ(messages[2].text, "active_anon:1\n active_file:0");
  EXPECT_EQ(messages[2].timestamp_us, 1234567890U);
  EXPECT_EQ(messages[3].text.substr(0, 9), "[    141]");  // a task row is never read as a timestamp
}

TEST(SplitKernelLog, DmesgDecorationsAndClockTimes) {
  const auto messages = splitKernelLog(
      "kern  :info  : [    4.972097] memory: usage 49152kB, limit 49152kB, failcnt 19\n"
      "[Mon Dec  2 10:00:00 2024] Out of memory: Killed process 1 (a)\n"
      "2024-12-02T10:00:00,123456+01:00 oom_reaper: reaped process 183 (big hog)\n");
  ASSERT_EQ(messages.size(), 3U);
  EXPECT_EQ(messages[0].text, "memory: usage 49152kB, limit 49152kB, failcnt 19");
  EXPECT_EQ(messages[0].timestamp_us, 4972097U);
  EXPECT_EQ(messages[1].text, "Out of memory: Killed process 1 (a)");
  EXPECT_FALSE(messages[1].timestamp_us);
  EXPECT_EQ(messages[2].form, KernelLogForm::kDmesg);
  EXPECT_EQ(messages[2].text, "oom_reaper: reaped process 183 (big hog)");
  EXPECT_EQ(messages[2].timestamp_us, uint64_t{36000} * 1000000 + 123456);
}

TEST(SplitKernelLog, JournalctlFormats) {
  const auto messages = splitKernelLog(
      std::string("-- Journal begins at Mon 2024-12-02 09:00:00 UTC. --\n"
                  "Dec 02 10:00:00 node-1 kernel: hog invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), "
                  "order=0, oom_score_adj=0\n"
                  "Dec 02 10:00:00.250000 node-1 kernel: Tasks state (memory values in pages):\n"
                  "[ 1234.567890] node-1 kernel: oom-kill:constraint=CONSTRAINT_NONE,pid=5\n"
                  "2024-12-02T10:00:00+0100 node-1 kernel: Total swap = 0kB\n"
                  "Mon 2024-12-02 10:00:00 UTC node-1 kernel: 130942 pages RAM\n"
                  "1733133600.123456 node-1 kernel: 12078 pages reserved\n"
                  "Dec 02 10:00:00 node-1 kernel: a\n") +
      std::string(31, ' ') + "b\n");  // indented as far as the message of the line before
  ASSERT_EQ(messages.size(), 8U);
  EXPECT_EQ(messages[0].form, KernelLogForm::kBare);
  for (size_t i = 1; i < messages.size(); ++i) {
    EXPECT_EQ(messages[i].form, KernelLogForm::kJournal) << i;
  }
  EXPECT_EQ(messages[1].text.substr(0, 20), "hog invoked oom-kill");
  EXPECT_FALSE(messages[1].timestamp_us);  // a second's resolution orders nothing within a report
  EXPECT_EQ(messages[2].timestamp_us, 36000250000U);
  EXPECT_EQ(messages[3].text, "oom-kill:constraint=CONSTRAINT_NONE,pid=5");
  EXPECT_EQ(messages[3].timestamp_us, 1234567890U);
  EXPECT_EQ(messages[4].text, "Total swap = 0kB");
  EXPECT_EQ(messages[5].text, "130942 pages RAM");
  EXPECT_EQ(messages[6].timestamp_us, 1733133600123456U);
  EXPECT_EQ(messages[7].text, "a\nb");
}

TEST(SplitKernelLog, BareMessagesStayAsTheyAre) {
  const auto messages =
      splitKernelLog("Out of memory: Killed process 9 (x)\n dump_stack_lvl+0x64/0x80\n\x01\xff garbage\n");
  ASSERT_EQ(messages.size(), 3U);
  EXPECT_EQ(messages[1].text, " dump_stack_lvl+0x64/0x80");
  EXPECT_EQ(messages[2].text, "\x01\xff garbage");
  EXPECT_EQ(unescapeKmsg("\\x4"), "\\x4");  // cut short: left as it is
}

// --- single lines ----------------------------------------------------------------------------------

TEST(TaskTable, RowsByTheHeadersColumnNames) {
  ASSERT_EQ(kHeader.size(), 11U);
  auto row = parseTaskTableRow(
      "[    151]     0   151     1274     1137     1024        0       113    45056        0             0 "
      "sl) eep (x",
      kHeader);
  ASSERT_TRUE(row);
  EXPECT_EQ(row->pid, 151);
  EXPECT_EQ(row->name, "sl) eep (x");
  EXPECT_TRUE(row->split_rss);
  EXPECT_EQ(row->rss_pages, 1137U);
  EXPECT_EQ(row->rss_anon_pages, 1024U);
  EXPECT_EQ(row->rss_shmem_pages, 113U);
  EXPECT_EQ(row->pgtables_bytes, 45056U);
  // A name that begins with a space keeps it; a negative oom_score_adj reads.
  row = parseTaskTableRow("[  7]  0  7  10  5  5  0  0  4096  3  -1000  lead", kHeader);
  ASSERT_TRUE(row);
  EXPECT_EQ(row->name, " lead");
  EXPECT_EQ(row->oom_score_adj, -1000);
  EXPECT_EQ(row->swapents_pages, 3U);
  // An older kernel's table: no split RSS.
  const auto old = parseTaskTableHeader(
      "[ pid ]   uid  tgid total_vm      rss pgtables_bytes swapents oom_score_adj name");
  ASSERT_TRUE(old);
  row = parseTaskTableRow("[  812]     0   812    10000     2000    65536       10           500 java", *old);
  ASSERT_TRUE(row);
  EXPECT_FALSE(row->split_rss);
  EXPECT_EQ(row->rss_pages, 2000U);
  EXPECT_EQ(row->oom_score_adj, 500);
}

TEST(TaskTable, MalformedRowsAreRefused) {
  EXPECT_FALSE(parseTaskTableRow("[  7]  0  7  10", kHeader));  // cut short
  EXPECT_FALSE(
      parseTaskTableRow("[  7]  0  7  10  5  5  0  0  4096  3  1001 x", kHeader));        // adj beyond 1000
  EXPECT_FALSE(parseTaskTableRow("[  7]  0  7  10  5  x  0  0  4096  3  0 x", kHeader));  // not a number
  EXPECT_FALSE(
      parseTaskTableRow("[  7]  0  7  10  99999999999999  5  0  0  4096  3  0 x", kHeader));  // > 2^40 pages
  EXPECT_FALSE(parseTaskTableRow("[ -7]  0  7  10  5  5  0  0  4096  3  0 x", kHeader));
  EXPECT_FALSE(parseTaskTableHeader("[  pid  ]   uid  tgid"));  // no name column
}

TEST(ZoneLines, PresentAndManaged) {
  const auto zone = parseZoneLine(
      "Node 1 DMA32 free:12kB boost:2048kB min:3544kB low:3916kB high:4288kB reserved_highatomic:0KB "
      "active_anon:249548kB "
      "present:262012kB managed:259736kB mlocked:0kB");
  ASSERT_TRUE(zone);
  EXPECT_EQ(zone->node, 1);
  EXPECT_EQ(zone->zone, "DMA32");
  EXPECT_EQ(zone->present_kb, 262012U);
  EXPECT_EQ(zone->managed_kb, 259736U);
  EXPECT_FALSE(parseZoneLine("Node 0 active_anon:446120kB inactive_anon:0kB"));
  EXPECT_FALSE(parseZoneLine("Node 0 DMA: 1*4kB (M) 0*8kB = 1796kB"));
}

// --- whole reports from the captured fixtures -----------------------------------------------------

TEST(ScanOomReports, Memcg) {
  const auto scan = scanFixture("memcg.txt");
  ASSERT_EQ(scan.reports.size(), 1U);
  EXPECT_TRUE(scan.incomplete.empty());
  EXPECT_EQ(scan.kmsg_messages, scan.messages);
  const auto& report = scan.reports[0];
  EXPECT_EQ(report.first_line, 1U);
  EXPECT_EQ(report.last_line, 101U);
  EXPECT_EQ(report.first_sequence, 355U);
  EXPECT_TRUE(report.invocation_seen);
  EXPECT_EQ(report.invocation.comm, "hog");
  EXPECT_EQ(report.invocation.gfp_mask, "0xcc0(GFP_KERNEL)");
  EXPECT_EQ(report.invoking_pid, 141);
  EXPECT_EQ(report.cpu, 0);
  EXPECT_EQ(report.kernel_release, "6.12.117+deb12-amd64");
  ASSERT_TRUE(report.memory && report.swap);
  EXPECT_EQ(report.memory->limit_kb, 49152U);
  EXPECT_EQ(report.swap->limit_kb, 0U);
  EXPECT_EQ(report.memcg_stats_cgroup, "/fxmemcg");
  ASSERT_EQ(report.tasks.size(), 1U);
  EXPECT_EQ(report.tasks[0].pid, 141);
  EXPECT_EQ(report.summary.oom_memcg, "/fxmemcg");
  EXPECT_EQ(report.victim.pid, 141);
  EXPECT_FALSE(report.kill_line_only);
  EXPECT_FALSE(report.group_cgroup);
}

TEST(ScanOomReports, GlobalAndCpusetCarryTheMemInfoTotals) {
  const auto global = scanFixture("global.txt");
  ASSERT_EQ(global.reports.size(), 1U);
  EXPECT_EQ(global.reports[0].ram_pages, 130942U);
  EXPECT_EQ(global.reports[0].reserved_pages, 12078U);
  EXPECT_EQ(global.reports[0].total_swap_kb, 0U);
  EXPECT_EQ(global.reports[0].zones.size(), 2U);  // DMA and DMA32 of node 0
  EXPECT_EQ(global.reports[0].tasks.size(), 2U);
  EXPECT_EQ(global.reports[0].victim.comm, "big hog");
  const auto cpuset = scanFixture("cpuset.txt");
  ASSERT_EQ(cpuset.reports.size(), 1U);
  const auto& report = cpuset.reports[0];
  EXPECT_EQ(report.summary.constraint, "CONSTRAINT_CPUSET");
  EXPECT_EQ(report.mems_allowed, "1");
  EXPECT_EQ(report.nodemask, "(null)");
  ASSERT_EQ(report.zones.size(), 1U);
  EXPECT_EQ(report.zones[0].node, 1);
  EXPECT_EQ(report.zones[0].present_kb, 262012U);
}

TEST(ScanOomReports, GroupKillAndItsMembers) {
  const auto scan = scanFixture("group.txt");
  ASSERT_EQ(scan.reports.size(), 1U);
  const auto& report = scan.reports[0];
  ASSERT_EQ(report.tasks.size(), 3U);
  EXPECT_EQ(report.tasks[0].name, "sl) eep (x");
  EXPECT_EQ(report.group_cgroup, "/fxgroup");
  ASSERT_EQ(report.group_killed.size(), 3U);
  EXPECT_EQ(report.group_killed[0].comm, "sl) eep (x");
  EXPECT_EQ(report.group_killed[2].pid, 155);
  EXPECT_EQ(report.last_line, 107U);
}

TEST(ScanOomReports, BurstHasTenWholeReportsAndFourKillLines) {
  const auto scan = scanFixture("burst.txt");
  ASSERT_EQ(scan.reports.size(), 14U);
  EXPECT_TRUE(scan.incomplete.empty());
  for (size_t i = 0; i < scan.reports.size(); ++i) {
    const auto& report = scan.reports[i];
    EXPECT_EQ(report.victim.comm, "burst" + std::to_string(i + 1));
    EXPECT_EQ(report.kill_line_only, i >= 10) << i;
    EXPECT_EQ(report.tasks.size(), i < 10 ? 1U : 0U) << i;
    EXPECT_EQ(report.summary.constraint, "CONSTRAINT_MEMCG");
  }
}

TEST(ScanOomReports, AllocatingTaskAndNonOomRecords) {
  const auto scan = scanFixture("allocating.txt");
  ASSERT_EQ(scan.reports.size(), 1U);
  EXPECT_TRUE(scan.reports[0].victim.allocating_task);
  EXPECT_EQ(scan.reports[0].tasks.size(), 3U);
  const auto none = scanFixture("dictionary.txt");
  EXPECT_TRUE(none.reports.empty());
  EXPECT_TRUE(none.incomplete.empty());
}

// --- cut and odd input --------------------------------------------------------------------------------

TEST(ScanOomReports, CutReportsAreIncomplete) {
  const std::string memcg = readFixture("kmsg-6.12/memcg.txt");
  const std::string head = memcg.substr(0, memcg.find("6,452,"));  // up to the table's header
  auto scan = scanText(head);
  EXPECT_TRUE(scan.reports.empty());
  ASSERT_EQ(scan.incomplete.size(), 1U);
  EXPECT_EQ(scan.incomplete[0].invoking_comm, "hog");
  EXPECT_NE(scan.incomplete[0].reason.find("input ends"), std::string::npos);
  // A cut report, then a whole one: the whole one is still read.
  scan = scanText(head + readFixture("kmsg-6.12/global.txt"));
  ASSERT_EQ(scan.reports.size(), 1U);
  EXPECT_EQ(scan.reports[0].victim.comm, "big hog");
  ASSERT_EQ(scan.incomplete.size(), 1U);
  EXPECT_NE(scan.incomplete[0].reason.find("new report begins"), std::string::npos);
  // Nothing to kill: the kernel panics after this line.
  scan = scanText(
      "x invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, oom_score_adj=0\n"
      "Out of memory and no killable processes...\n");
  ASSERT_EQ(scan.incomplete.size(), 1U);
  EXPECT_NE(scan.incomplete[0].reason.find("no killable process"), std::string::npos);
}

TEST(ScanOomReports, GarbageAndAllocationFailuresAreNoReports) {
  std::string noise;
  uint32_t state = 12345;
  for (int i = 0; i < 20000; ++i) {
    state = state * 1103515245 + 12345;
    noise.push_back(static_cast<char>(state >> 16));
  }
  EXPECT_TRUE(scanText(noise).reports.empty());
  EXPECT_TRUE(scanText("").reports.empty());
  // warn_alloc() prints a Mem-Info dump too, without any OOM.
  const auto scan =
      scanText("a: page allocation failure: order:4\nMem-Info:\n130942 pages RAM\n12078 pages reserved\n");
  EXPECT_TRUE(scan.reports.empty());
  EXPECT_TRUE(scan.incomplete.empty());
}

}  // namespace
}  // namespace oomguard::cgroupfs
