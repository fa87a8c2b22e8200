// /dev/kmsg records and kernel OOM reports: the parsers and the report assembler in cgroupfs/kmsg.hpp, on
// real reports captured from kernel 6.12 (tests/fixtures/kmsg-6.12, see its README.md) and on malformed input.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "cgroupfs/kmsg.hpp"
#include "test_util.hpp"

namespace oomguard::cgroupfs {
namespace {

using testing::readFixture;

// --- helpers -------------------------------------------------------------------------------------

using oomguard::testing::kmsgFixtureRecords;

struct Replay {
  std::vector<KmsgRecord> records;
  std::vector<KernelOomEvent> events;
  std::vector<size_t> completed_by;  // for each event, the index of the record that completed it
  size_t parse_errors = 0;
};

// Parses every record and feeds its message and timestamp to `assembler`, as the daemon does.
void replayInto(const std::vector<std::string>& raw, OomReportAssembler& assembler, Replay& out) {
  for (const auto& text : raw) {
    auto record = parseKmsgRecord(text);
    if (!record) {
      ++out.parse_errors;
      ADD_FAILURE() << "record did not parse: " << text << " (" << record.error().describe() << ")";
      continue;
    }
    out.records.push_back(record.value());
    for (auto& event : assembler.feed(record.value().message, record.value().timestamp_us)) {
      out.events.push_back(std::move(event));
      out.completed_by.push_back(out.records.size() - 1);
    }
  }
}

Replay replayFixture(const std::string& name) {
  OomReportAssembler assembler;
  Replay replay;
  replayInto(kmsgFixtureRecords(name), assembler, replay);
  return replay;
}

// The timestamp of the first record whose message contains `needle` (0 when none does).
uint64_t timestampOf(const Replay& replay, std::string_view needle, size_t nth = 0) {
  for (const auto& record : replay.records) {
    if (record.message.find(needle) != std::string::npos && nth-- == 0) {
      return record.timestamp_us;
    }
  }
  return 0;
}

// One row of the report's "Tasks state" table (values in pages, pgtables in bytes).
struct TaskRow {
  pid_t pid = 0;
  uint64_t rss_anon = 0;
  uint64_t rss_file = 0;
  uint64_t rss_shmem = 0;
  uint64_t pgtables_bytes = 0;
  int oom_score_adj = 0;
  std::string name;
};

// Rows of every "Tasks state" table in the replay, read independently of the code under test:
// "[  pid  ]   uid  tgid total_vm      rss rss_anon rss_file rss_shmem pgtables_bytes swapents oom_score_adj name".
std::vector<TaskRow> taskRows(const Replay& replay) {
  std::vector<TaskRow> rows;
  for (const auto& record : replay.records) {
    const std::string& m = record.message;
    if (m.empty() || m.front() != '[' || m.starts_with("[  pid  ]")) {
      continue;
    }
    std::istringstream in(m.substr(1));
    TaskRow row;
    char bracket = 0;
    uint64_t uid = 0;
    uint64_t tgid = 0;
    uint64_t total_vm = 0;
    uint64_t rss = 0;
    uint64_t swapents = 0;
    if (!(in >> row.pid >> bracket >> uid >> tgid >> total_vm >> rss >> row.rss_anon >> row.rss_file >> row.rss_shmem >>
          row.pgtables_bytes >> swapents >> row.oom_score_adj) ||
        bracket != ']') {
      continue;
    }
    std::getline(in >> std::ws, row.name);
    rows.push_back(row);
  }
  return rows;
}

std::optional<TaskRow> taskRow(const Replay& replay, pid_t pid) {
  for (const auto& row : taskRows(replay)) {
    if (row.pid == pid) {
      return row;
    }
  }
  return std::nullopt;
}

const KernelOomKill* asKill(const KernelOomEvent& event) { return std::get_if<KernelOomKill>(&event); }
const KernelOomGroupKill* asGroup(const KernelOomEvent& event) { return std::get_if<KernelOomGroupKill>(&event); }
const KernelGroupMemberKilled* asMember(const KernelOomEvent& event) {
  return std::get_if<KernelGroupMemberKilled>(&event);
}

const char* const kFixtures[] = {"memcg.txt",  "group.txt",  "parent.txt", "global.txt",
                                 "allocating.txt", "cpuset.txt", "burst.txt",  "dictionary.txt"};

// --- records --------------------------------------------------------------------------------------

TEST(KmsgFixture, EveryRecordParsesInSequence) {
  for (const char* name : kFixtures) {
    SCOPED_TRACE(name);
    const auto raw = kmsgFixtureRecords(name);
    ASSERT_FALSE(raw.empty());
    uint64_t previous_seq = 0;
    uint64_t previous_ts = 0;
    for (size_t i = 0; i < raw.size(); ++i) {
      auto record = parseKmsgRecord(raw[i]);
      ASSERT_TRUE(record.ok()) << raw[i] << ": " << record.error().describe();
      const auto& r = record.value();
      // The message is the first line, exactly: what follows ';' up to the newline.
      const auto semicolon = raw[i].find(';');
      EXPECT_EQ(r.message, raw[i].substr(semicolon + 1, raw[i].find('\n') - semicolon - 1));
      EXPECT_FALSE(r.continuation) << raw[i];
      EXPECT_GE(r.level, 0);
      EXPECT_LE(r.level, 7);
      if (i > 0 && std::string_view(name) != "dictionary.txt") {
        EXPECT_EQ(r.sequence, previous_seq + 1) << "the capture is contiguous: " << raw[i];
        EXPECT_GE(r.timestamp_us, previous_ts) << raw[i];
      }
      previous_seq = r.sequence;
      previous_ts = r.timestamp_us;
    }
  }
}

TEST(KmsgFixture, HeaderFieldsOfRealOomRecords) {
  const auto raw = kmsgFixtureRecords("memcg.txt");
  ASSERT_GE(raw.size(), 3U);
  auto first = parseKmsgRecord(raw.front());
  ASSERT_TRUE(first.ok()) << first.error().describe();
  EXPECT_EQ(first.value().level, 4);  // KERN_WARNING
  EXPECT_EQ(first.value().facility, 0);
  EXPECT_EQ(first.value().sequence, 355U);
  EXPECT_EQ(first.value().timestamp_us, 4966517U);
  EXPECT_FALSE(first.value().continuation);
  EXPECT_EQ(first.value().message, "hog invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, oom_score_adj=0");

  auto last = parseKmsgRecord(raw.back());
  ASSERT_TRUE(last.ok()) << last.error().describe();
  EXPECT_EQ(last.value().level, 3);  // KERN_ERR
  EXPECT_EQ(last.value().sequence, 455U);
  EXPECT_EQ(last.value().timestamp_us, 4977029U);
  EXPECT_EQ(last.value().message,
            "Memory cgroup out of memory: Killed process 141 (hog) total-vm:103400kB, anon-rss:49024kB, file-rss:0kB, "
            "shmem-rss:520kB, UID:0 pgtables:136kB oom_score_adj:0");

  // A call-trace record: the message itself starts with a space; it is not a dictionary line.
  auto trace = parseKmsgRecord(raw[4]);
  ASSERT_TRUE(trace.ok());
  EXPECT_EQ(trace.value().message, " <TASK>");
}

TEST(KmsgFixture, DictionaryLinesAreNotPartOfTheMessage) {
  const auto raw = kmsgFixtureRecords("dictionary.txt");
  ASSERT_EQ(raw.size(), 3U);
  for (const auto& text : raw) {
    ASSERT_NE(text.find("\n SUBSYSTEM=acpi\n"), std::string::npos) << text;  // the fixture really has them
  }
  auto record = parseKmsgRecord(raw[0]);
  ASSERT_TRUE(record.ok()) << record.error().describe();
  EXPECT_EQ(record.value().level, 6);
  EXPECT_EQ(record.value().sequence, 193U);
  EXPECT_EQ(record.value().timestamp_us, 1844122U);
  EXPECT_EQ(record.value().message,
            "acpi PNP0A08:00: _OSC: OS supports [ExtendedConfig ASPM ClockPM Segments MSI HPX-Type3]");
  EXPECT_TRUE(replayFixture("dictionary.txt").events.empty());
}

struct RecordCase {
  const char* name;
  const char* text;
  bool ok;
  int level = 0;
  int facility = 0;
  uint64_t sequence = 0;
  uint64_t timestamp_us = 0;
  bool continuation = false;
  const char* message = "";
};

void PrintTo(const RecordCase& value, std::ostream* out) { *out << value.name; }

class KmsgRecordTable : public ::testing::TestWithParam<RecordCase> {};

TEST_P(KmsgRecordTable, ParsesOrRejects) {
  const auto& c = GetParam();
  auto record = parseKmsgRecord(c.text);
  ASSERT_EQ(record.ok(), c.ok) << (record.ok() ? "accepted" : record.error().describe());
  if (!c.ok) {
    EXPECT_TRUE(record.error().malformed());
    return;
  }
  EXPECT_EQ(record.value().level, c.level);
  EXPECT_EQ(record.value().facility, c.facility);
  EXPECT_EQ(record.value().sequence, c.sequence);
  EXPECT_EQ(record.value().timestamp_us, c.timestamp_us);
  EXPECT_EQ(record.value().continuation, c.continuation);
  EXPECT_EQ(record.value().message, c.message);
}

INSTANTIATE_TEST_SUITE_P(
    Kmsg, KmsgRecordTable,
    ::testing::Values(
        RecordCase{"plain", "6,12,345,-;hello world\n", true, 6, 0, 12, 345, false, "hello world"},
        RecordCase{"no_trailing_newline", "3,1,2,-;x", true, 3, 0, 1, 2, false, "x"},
        RecordCase{"facility_and_level", "30,7,8,-;daemon msg\n", true, 6, 3, 7, 8, false, "daemon msg"},
        RecordCase{"continuation_flag", "4,9,10,c;part\n", true, 4, 0, 9, 10, true, "part"},
        RecordCase{"extra_header_field", "6,5,6,-,caller=T123;with caller\n", true, 6, 0, 5, 6, false, "with caller"},
        RecordCase{"dictionary_lines", "6,5,6,-;dev msg\n SUBSYSTEM=pci\n DEVICE=+pci:0000:00:01.0\n", true, 6, 0, 5, 6,
                   false, "dev msg"},
        RecordCase{"semicolon_in_message", "6,5,6,-;a;b;c\n", true, 6, 0, 5, 6, false, "a;b;c"},
        RecordCase{"empty_message", "6,5,6,-;\n", true, 6, 0, 5, 6, false, ""},
        RecordCase{"large_values", "6,18446744073709551615,9999999999999,-;m\n", true, 6, 0, 18446744073709551615ULL,
                   9999999999999ULL, false, "m"},
        RecordCase{"empty", "", false},
        RecordCase{"no_semicolon", "6,1,2,- no separator\n", false},
        RecordCase{"garbage_header", "garbage;message\n", false},
        RecordCase{"non_numeric_priority", "x,1,2,-;m\n", false},
        RecordCase{"non_numeric_sequence", "6,one,2,-;m\n", false},
        RecordCase{"non_numeric_timestamp", "6,1,2.5,-;m\n", false},
        RecordCase{"negative_sequence", "6,-1,2,-;m\n", false},
        RecordCase{"empty_priority", ",1,2,-;m\n", false},
        RecordCase{"truncated_header_two_fields", "6,1;m\n", false},
        RecordCase{"truncated_header_no_flags", "6,1,2;m\n", false},
        RecordCase{"truncated_before_semicolon", "6,1,2", false},
        RecordCase{"dictionary_line_alone", " SUBSYSTEM=acpi\n", false}),
    [](const ::testing::TestParamInfo<RecordCase>& param_info) { return std::string(param_info.param.name); });

// --- whole reports from the fixtures -------------------------------------------------------------

struct ExpectedKill {
  const char* fixture;
  uint64_t started_us;  // the "invoked oom-killer" record's timestamp, as captured
  const char* invoker;
  const char* gfp_mask;
  const char* constraint;
  std::optional<std::string> oom_memcg;
  bool global_oom;
  const char* task_memcg;
  pid_t pid;
  const char* comm;
  const char* reason;
  bool allocating_task;
  uint64_t total_vm_kb;
  uint64_t anon_rss_kb;
  uint64_t file_rss_kb;
  uint64_t shmem_rss_kb;
  uint64_t pgtables_kb;
  int oom_score_adj;
};

void PrintTo(const ExpectedKill& value, std::ostream* out) { *out << value.fixture; }

class KmsgOomReport : public ::testing::TestWithParam<ExpectedKill> {};

TEST_P(KmsgOomReport, FirstEventIsTheKernelKillWithEveryField) {
  const auto& want = GetParam();
  const Replay replay = replayFixture(want.fixture);
  ASSERT_EQ(replay.parse_errors, 0U);
  ASSERT_FALSE(replay.events.empty());
  const auto* kill = asKill(replay.events.front());
  ASSERT_NE(kill, nullptr) << "the first event is not a KernelOomKill";

  // The report's start: the timestamp of its "invoked oom-killer" record.
  EXPECT_EQ(kill->started_us, want.started_us);
  EXPECT_EQ(kill->started_us, timestampOf(replay, " invoked oom-killer: "));
  // Completed by the "Killed process" record of the victim, the first such record of the report.
  EXPECT_NE(replay.records[replay.completed_by.front()].message.find("Killed process " + std::to_string(want.pid) + " ("),
            std::string::npos);

  EXPECT_EQ(kill->invocation.comm, want.invoker);
  EXPECT_EQ(kill->invocation.gfp_mask, want.gfp_mask);
  EXPECT_EQ(kill->invocation.order, std::optional<int>(0));
  EXPECT_EQ(kill->invocation.oom_score_adj, std::optional<int>(0));

  EXPECT_EQ(kill->summary.constraint, want.constraint);
  EXPECT_EQ(kill->summary.oom_memcg, want.oom_memcg);
  EXPECT_EQ(kill->summary.global_oom, want.global_oom);
  EXPECT_EQ(kill->summary.task_memcg, std::optional<std::string>(want.task_memcg));
  EXPECT_EQ(kill->summary.task_comm, want.comm);
  EXPECT_EQ(kill->summary.pid, want.pid);
  EXPECT_EQ(kill->summary.uid, std::optional<uid_t>(0));

  EXPECT_EQ(kill->victim.pid, want.pid);
  EXPECT_EQ(kill->victim.comm, want.comm);
  EXPECT_EQ(kill->victim.reason, want.reason);
  EXPECT_EQ(kill->victim.allocating_task, want.allocating_task);
  EXPECT_EQ(kill->victim.total_vm_kb, std::optional<uint64_t>(want.total_vm_kb));
  EXPECT_EQ(kill->victim.anon_rss_kb, std::optional<uint64_t>(want.anon_rss_kb));
  EXPECT_EQ(kill->victim.file_rss_kb, std::optional<uint64_t>(want.file_rss_kb));
  EXPECT_EQ(kill->victim.shmem_rss_kb, std::optional<uint64_t>(want.shmem_rss_kb));
  EXPECT_EQ(kill->victim.pgtables_kb, std::optional<uint64_t>(want.pgtables_kb));
  EXPECT_EQ(kill->victim.oom_score_adj, std::optional<int>(want.oom_score_adj));

  // The same values, independently, from the kernel's own task table in the report (pages -> kB).
  const auto row = taskRow(replay, want.pid);
  ASSERT_TRUE(row.has_value()) << "the victim is not in the report's task table";
  EXPECT_EQ(row->name, want.comm);
  EXPECT_EQ(kill->victim.anon_rss_kb, std::optional<uint64_t>(row->rss_anon * 4));
  EXPECT_EQ(kill->victim.file_rss_kb, std::optional<uint64_t>(row->rss_file * 4));
  EXPECT_EQ(kill->victim.shmem_rss_kb, std::optional<uint64_t>(row->rss_shmem * 4));
  EXPECT_EQ(kill->victim.pgtables_kb, std::optional<uint64_t>(row->pgtables_bytes / 1024));
  EXPECT_EQ(kill->victim.oom_score_adj, std::optional<int>(row->oom_score_adj));
}

INSTANTIATE_TEST_SUITE_P(
    Kmsg, KmsgOomReport,
    ::testing::Values(
        ExpectedKill{"memcg.txt", 4966517, "hog", "0xcc0(GFP_KERNEL)", "CONSTRAINT_MEMCG", "/fxmemcg", false, "/fxmemcg",
                     141, "hog", "Memory cgroup out of memory", false, 103400, 49024, 0, 520, 136, 0},
        ExpectedKill{"group.txt", 7118772, "hog", "0xcc0(GFP_KERNEL)", "CONSTRAINT_MEMCG", "/fxgroup", false, "/fxgroup",
                     155, "hog", "Memory cgroup out of memory", false, 103400, 49024, 0, 520, 132, 0},
        ExpectedKill{"parent.txt", 9053213, "kidhog", "0xcc0(GFP_KERNEL)", "CONSTRAINT_MEMCG", "/fxpar", false,
                     "/fxpar/kid", 166, "kidhog", "Memory cgroup out of memory", false, 103400, 49024, 0, 520, 136, 0},
        ExpectedKill{"global.txt", 14884078, "big hog", "0x140dca(GFP_HIGHUSER_MOVABLE|__GFP_COMP|__GFP_ZERO)",
                     "CONSTRAINT_NONE", std::nullopt, true, "/", 183, "big hog", "Out of memory", false, 443368, 435712, 0,
                     520, 892, 0},
        ExpectedKill{"allocating.txt", 20620213, "grower", "0x140dca(GFP_HIGHUSER_MOVABLE|__GFP_COMP|__GFP_ZERO)",
                     "CONSTRAINT_NONE", std::nullopt, true, "/", 195, "grower", "Out of memory (oom_kill_allocating_task)",
                     true, 132072, 130048, 0, 520, 296, 0},
        // The kernel prints "global_oom" for a cpuset OOM too (no memcg is involved).
        ExpectedKill{"cpuset.txt", 6515754, "nodehog", "0x140dca(GFP_HIGHUSER_MOVABLE|__GFP_COMP|__GFP_ZERO)",
                     "CONSTRAINT_CPUSET", std::nullopt, true, "/fxcpuset", 144, "nodehog", "Out of memory", false, 254952,
                     248832, 0, 520, 528, 0}),
    [](const ::testing::TestParamInfo<ExpectedKill>& param_info) {
      std::string name = param_info.param.fixture;
      return name.substr(0, name.find('.'));
    });

TEST(KmsgOomReport, SingleVictimReportsYieldExactlyOneEvent) {
  for (const char* name : {"memcg.txt", "parent.txt", "global.txt", "allocating.txt", "cpuset.txt"}) {
    SCOPED_TRACE(name);
    const Replay replay = replayFixture(name);
    ASSERT_EQ(replay.events.size(), 1U);
    EXPECT_NE(asKill(replay.events.front()), nullptr);
  }
}

TEST(KmsgOomReport, AllocatingTaskIsNotTheBiggestInTheTable) {
  // What makes allocating.txt a real oom_kill_allocating_task kill: a scan would have chosen the sleeper.
  const Replay replay = replayFixture("allocating.txt");
  const auto rows = taskRows(replay);
  const auto biggest = std::max_element(rows.begin(), rows.end(), [](const TaskRow& a, const TaskRow& b) {
    return a.rss_anon + a.rss_file + a.rss_shmem < b.rss_anon + b.rss_file + b.rss_shmem;
  });
  ASSERT_NE(biggest, rows.end());
  EXPECT_EQ(biggest->name, "sleeper");
  ASSERT_EQ(replay.events.size(), 1U);
  const auto* kill = asKill(replay.events.front());
  ASSERT_NE(kill, nullptr);
  EXPECT_NE(kill->victim.pid, biggest->pid);
  EXPECT_TRUE(kill->victim.allocating_task);
  EXPECT_EQ(kill->victim.comm, kill->invocation.comm);  // the allocating task invoked the OOM killer
}

TEST(KmsgOomReport, GroupKillNamesTheCgroupAndEveryMember) {
  const Replay replay = replayFixture("group.txt");
  ASSERT_EQ(replay.events.size(), 5U);
  const auto* kill = asKill(replay.events[0]);
  ASSERT_NE(kill, nullptr);
  EXPECT_EQ(kill->victim.pid, 155);
  EXPECT_EQ(kill->started_us, 7118772U);

  const auto* group = asGroup(replay.events[1]);
  ASSERT_NE(group, nullptr);
  EXPECT_EQ(group->cgroup, "/fxgroup");
  EXPECT_EQ(replay.records[replay.completed_by[1]].message,
            "Tasks in /fxgroup are going to be killed due to memory.oom.group set");

  struct Member {
    pid_t pid;
    const char* comm;
    uint64_t anon_rss_kb;
    uint64_t shmem_rss_kb;
    uint64_t pgtables_kb;
    int adj;
  };
  // Kernel order: the cgroup's tasks in scan order, the first victim included again.
  const Member members[] = {{151, "sl) eep (x", 4096, 452, 44, 0}, {153, "holder", 12288, 452, 60, 100},
                            {155, "hog", 49024, 520, 132, 0}};
  std::set<pid_t> member_pids;
  for (size_t i = 0; i < 3; ++i) {
    SCOPED_TRACE(members[i].comm);
    const auto* member = asMember(replay.events[2 + i]);
    ASSERT_NE(member, nullptr);
    EXPECT_EQ(member->cgroup, "/fxgroup");
    EXPECT_EQ(member->process.pid, members[i].pid);
    EXPECT_EQ(member->process.comm, members[i].comm);
    EXPECT_EQ(member->process.reason, "Memory cgroup out of memory");
    EXPECT_FALSE(member->process.allocating_task);
    EXPECT_EQ(member->process.anon_rss_kb, std::optional<uint64_t>(members[i].anon_rss_kb));
    EXPECT_EQ(member->process.file_rss_kb, std::optional<uint64_t>(0));
    EXPECT_EQ(member->process.shmem_rss_kb, std::optional<uint64_t>(members[i].shmem_rss_kb));
    EXPECT_EQ(member->process.pgtables_kb, std::optional<uint64_t>(members[i].pgtables_kb));
    EXPECT_EQ(member->process.oom_score_adj, std::optional<int>(members[i].adj));
    member_pids.insert(member->process.pid);
  }
  // Every task of the group's table was killed, and nothing else.
  std::set<pid_t> table_pids;
  for (const auto& row : taskRows(replay)) {
    table_pids.insert(row.pid);
  }
  EXPECT_EQ(member_pids, table_pids);
}

// Kills 1-10 of burst.txt have whole reports; kills 11-14 are rate-limited by the kernel to their
// "Killed process" record.
TEST(KmsgOomReport, BurstOfFullReportsYieldsOneKillEach) {
  const Replay replay = replayFixture("burst.txt");
  std::vector<const KernelOomKill*> kills;
  for (const auto& event : replay.events) {
    if (const auto* kill = asKill(event)) {
      kills.push_back(kill);
    }
  }
  ASSERT_GE(kills.size(), 10U);
  for (size_t i = 0; i < 10; ++i) {
    SCOPED_TRACE(i + 1);
    const std::string comm = "burst" + std::to_string(i + 1);
    EXPECT_EQ(kills[i]->victim.pid, static_cast<pid_t>(141 + i));
    EXPECT_EQ(kills[i]->victim.comm, comm);
    EXPECT_EQ(kills[i]->summary.pid, static_cast<pid_t>(141 + i));
    EXPECT_EQ(kills[i]->summary.oom_memcg, std::optional<std::string>("/fxburst"));
    EXPECT_EQ(kills[i]->invocation.comm, comm);
    EXPECT_EQ(kills[i]->started_us, timestampOf(replay, " invoked oom-killer: ", i));
    EXPECT_NE(kills[i]->started_us, 0U);
  }
  for (const auto& event : replay.events) {
    EXPECT_EQ(asGroup(event), nullptr);
    EXPECT_EQ(asMember(event), nullptr) << "no group kill in burst.txt";
  }
}

// The kernel rate-limits the report (dump_header and the "oom-kill:" line, 10 per 5 s) but never the
// "Killed process" line, so a burst of OOMs leaves kills with no report. Every kill is still reported
// (the reason prefix tells a memcg OOM from a host one), the suppressed ones marked rate_limited.
TEST(KmsgOomReport, RateLimitedKillsAreStillReported) {
  const Replay replay = replayFixture("burst.txt");
  std::vector<pid_t> killed;
  for (const auto& event : replay.events) {
    if (const auto* kill = asKill(event)) {
      killed.push_back(kill->victim.pid);
    }
  }
  std::vector<pid_t> want;
  for (pid_t pid = 141; pid <= 154; ++pid) {
    want.push_back(pid);
  }
  EXPECT_EQ(killed, want);
  size_t rate_limited = 0;
  for (const auto& event : replay.events) {
    if (const auto* kill = asKill(event); kill != nullptr && kill->rate_limited) {
      ++rate_limited;
      EXPECT_EQ(kill->summary.constraint, "CONSTRAINT_MEMCG");
      EXPECT_FALSE(kill->summary.oom_memcg.has_value());
      EXPECT_EQ(kill->summary.pid, kill->victim.pid);
      EXPECT_NE(kill->started_us, 0U);
    }
  }
  EXPECT_EQ(rate_limited, 4U) << "kills 11-14 of the burst came without their report";
}

TEST(KmsgOomReport, ConsecutiveReportsInOneStreamDoNotLeakState) {
  // Every fixture, one after the other, through one assembler: the group state of group.txt must not
  // turn the next report's victim into a group member, and each kill keeps its own start.
  OomReportAssembler assembler;
  Replay replay;
  for (const char* name : {"group.txt", "memcg.txt", "parent.txt", "global.txt", "allocating.txt", "cpuset.txt"}) {
    replayInto(kmsgFixtureRecords(name), assembler, replay);
  }
  std::vector<pid_t> kills;
  std::vector<uint64_t> starts;
  size_t groups = 0;
  size_t members = 0;
  for (const auto& event : replay.events) {
    if (const auto* kill = asKill(event)) {
      kills.push_back(kill->victim.pid);
      starts.push_back(kill->started_us);
    }
    groups += asGroup(event) != nullptr ? 1 : 0;
    members += asMember(event) != nullptr ? 1 : 0;
  }
  EXPECT_EQ(kills, (std::vector<pid_t>{155, 141, 166, 183, 195, 144}));
  EXPECT_EQ(starts, (std::vector<uint64_t>{7118772, 4966517, 9053213, 14884078, 20620213, 6515754}));
  EXPECT_EQ(groups, 1U);
  EXPECT_EQ(members, 3U);
}

// --- the assembler on edited real reports ---------------------------------------------------------

std::vector<std::string> messagesOf(const std::string& fixture) {
  std::vector<std::string> messages;
  for (const auto& text : kmsgFixtureRecords(fixture)) {
    auto record = parseKmsgRecord(text);
    if (record) {
      messages.push_back(record.value().message);
    }
  }
  return messages;
}

TEST(KmsgAssembler, ReportJoinedAfterItsHeaderStartsAtTheSummary) {
  // A daemon that starts reading in the middle of a report has not seen "invoked oom-killer".
  const auto raw = kmsgFixtureRecords("memcg.txt");
  OomReportAssembler assembler;
  Replay replay;
  replayInto(std::vector<std::string>(raw.begin() + 1, raw.end()), assembler, replay);
  ASSERT_EQ(replay.events.size(), 1U);
  const auto* kill = asKill(replay.events.front());
  ASSERT_NE(kill, nullptr);
  EXPECT_EQ(kill->victim.pid, 141);
  EXPECT_TRUE(kill->invocation.comm.empty());
  EXPECT_FALSE(kill->invocation.order.has_value());
  EXPECT_EQ(kill->started_us, timestampOf(replay, "oom-kill:"));
}

TEST(KmsgAssembler, OomReaperAndOtherPidsDoNotCompleteTheKill) {
  OomReportAssembler assembler;
  std::vector<KernelOomEvent> events;
  uint64_t ts = 100;
  for (const auto& message : messagesOf("memcg.txt")) {
    if (message.find("Killed process 141 ") != std::string::npos) {
      // Records that are not the victim's kill line, between the summary and it.
      for (const char* other : {"oom_reaper: reaped process 141 (hog), now anon-rss:0kB, file-rss:0kB, shmem-rss:0kB",
                                "Killed process"}) {
        auto got = assembler.feed(other, ++ts);
        EXPECT_TRUE(got.empty()) << other;
      }
      // Another pid's kill line is a kill of its own (its report rate-limited away); the pending summary
      // of 141 survives it.
      auto other_kill = assembler.feed(
          "Memory cgroup out of memory: Killed process 999 (other) total-vm:1kB, anon-rss:1kB, file-rss:0kB, "
          "shmem-rss:0kB, UID:0 pgtables:4kB oom_score_adj:0",
          ++ts);
      ASSERT_EQ(other_kill.size(), 1U);
      ASSERT_NE(asKill(other_kill.front()), nullptr);
      EXPECT_EQ(asKill(other_kill.front())->victim.pid, 999);
      EXPECT_TRUE(asKill(other_kill.front())->rate_limited);
    }
    for (auto& event : assembler.feed(message, ++ts)) {
      events.push_back(std::move(event));
    }
  }
  EXPECT_TRUE(assembler.feed("oom_reaper: reaped process 141 (hog), now anon-rss:0kB, file-rss:0kB, shmem-rss:0kB", ++ts)
                  .empty());
  ASSERT_EQ(events.size(), 1U);
  const auto* kill = asKill(events.front());
  ASSERT_NE(kill, nullptr);
  EXPECT_EQ(kill->victim.pid, 141);
  EXPECT_EQ(kill->started_us, 101U);  // the first message fed, the "invoked oom-killer" one
}

TEST(KmsgAssembler, AbandonedReportIsReplacedByTheNextOne) {
  // The header of one report, then a whole other report: only the second kill, with its own start.
  const auto global = messagesOf("global.txt");
  OomReportAssembler assembler;
  std::vector<KernelOomEvent> events;
  for (size_t i = 0; i < 5; ++i) {  // "invoked oom-killer" and the start of the call trace only
    for (auto& event : assembler.feed(global[i], 1000 + i)) {
      events.push_back(std::move(event));
    }
  }
  uint64_t ts = 5000;
  for (const auto& message : messagesOf("memcg.txt")) {
    for (auto& event : assembler.feed(message, ts++)) {
      events.push_back(std::move(event));
    }
  }
  ASSERT_EQ(events.size(), 1U);
  const auto* kill = asKill(events.front());
  ASSERT_NE(kill, nullptr);
  EXPECT_EQ(kill->victim.pid, 141);
  EXPECT_EQ(kill->invocation.comm, "hog");
  EXPECT_EQ(kill->summary.constraint, "CONSTRAINT_MEMCG");
  EXPECT_EQ(kill->started_us, 5000U);
}

TEST(KmsgAssembler, UnrelatedMessagesYieldNothing) {
  OomReportAssembler assembler;
  for (const char* message : {"", " ", "random text", "Tasks in /x are going to be killed",
                              "are going to be killed due to memory.oom.group set", "oom-kill:", "oom-kill:garbage",
                              "invoked oom-killer", "Memory cgroup out of memory: Killed process abc (x)"}) {
    EXPECT_TRUE(assembler.feed(message, 1).empty()) << message;
  }
}

// --- "oom-kill:" summaries ---------------------------------------------------------------------

struct SummaryCase {
  const char* name;
  const char* text;
  bool ok;
  const char* constraint = "";
  std::optional<std::string> oom_memcg = std::nullopt;
  bool global_oom = false;
  std::optional<std::string> task_memcg = std::nullopt;
  const char* task = "";
  pid_t pid = 0;
  std::optional<uid_t> uid = std::nullopt;
};

void PrintTo(const SummaryCase& value, std::ostream* out) { *out << value.name; }

class OomKillSummaryTable : public ::testing::TestWithParam<SummaryCase> {};

TEST_P(OomKillSummaryTable, ParsesByKeyOrRejects) {
  const auto& c = GetParam();
  auto summary = parseOomKillSummary(c.text);
  ASSERT_EQ(summary.ok(), c.ok) << (summary.ok() ? "accepted" : summary.error().describe());
  if (!c.ok) {
    EXPECT_TRUE(summary.error().malformed());
    return;
  }
  EXPECT_EQ(summary.value().constraint, c.constraint);
  EXPECT_EQ(summary.value().oom_memcg, c.oom_memcg);
  EXPECT_EQ(summary.value().global_oom, c.global_oom);
  EXPECT_EQ(summary.value().task_memcg, c.task_memcg);
  EXPECT_EQ(summary.value().task_comm, c.task);
  EXPECT_EQ(summary.value().pid, c.pid);
  EXPECT_EQ(summary.value().uid, c.uid);
}

INSTANTIATE_TEST_SUITE_P(
    Oom, OomKillSummaryTable,
    ::testing::Values(
        SummaryCase{"memcg_real",
                    "oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=fxpar,mems_allowed=0,oom_memcg=/fxpar,"
                    "task_memcg=/fxpar/kid,task=kidhog,pid=166,uid=0",
                    true, "CONSTRAINT_MEMCG", "/fxpar", false, "/fxpar/kid", "kidhog", 166, 0},
        SummaryCase{"global_real",
                    "oom-kill:constraint=CONSTRAINT_NONE,nodemask=(null),cpuset=/,mems_allowed=0,global_oom,task_memcg=/,"
                    "task=big hog,pid=183,uid=0",
                    true, "CONSTRAINT_NONE", std::nullopt, true, "/", "big hog", 183, 0},
        SummaryCase{"unknown_keys_and_order",
                    "oom-kill:pid=7,future=1,constraint=CONSTRAINT_MEMORY_POLICY,nodemask=0-1,cpuset=/,mems_allowed=0-1,"
                    "global_oom,task_memcg=/a.slice/b.service,task=x,uid=1000,another=z",
                    true, "CONSTRAINT_MEMORY_POLICY", std::nullopt, true, "/a.slice/b.service", "x", 7, 1000},
        SummaryCase{"node_lists_with_commas",
                    "oom-kill:constraint=CONSTRAINT_CPUSET,nodemask=(null),cpuset=c,mems_allowed=0,2,global_oom,"
                    "task_memcg=/c,task=y,pid=9,uid=0",
                    true, "CONSTRAINT_CPUSET", std::nullopt, true, "/c", "y", 9, 0},
        SummaryCase{"comm_with_comma", "oom-kill:constraint=CONSTRAINT_MEMCG,oom_memcg=/m,task_memcg=/m,task=a,b,pid=3,uid=0",
                    true, "CONSTRAINT_MEMCG", "/m", false, "/m", "a,b", 3, 0},
        SummaryCase{"comm_with_spaces_and_paren",
                    "oom-kill:constraint=CONSTRAINT_MEMCG,oom_memcg=/m,task_memcg=/m/k,task=sl) eep (x,pid=151,uid=0", true,
                    "CONSTRAINT_MEMCG", "/m", false, "/m/k", "sl) eep (x", 151, 0},
        SummaryCase{"leading_spaces", "  oom-kill:constraint=CONSTRAINT_NONE,global_oom,task_memcg=/,task=t,pid=4,uid=0\n",
                    true, "CONSTRAINT_NONE", std::nullopt, true, "/", "t", 4, 0},
        SummaryCase{"truncated_after_pid", "oom-kill:constraint=CONSTRAINT_MEMCG,oom_memcg=/m,task_memcg=/m,task=t,pid=12",
                    true, "CONSTRAINT_MEMCG", "/m", false, "/m", "t", 12, std::nullopt},
        SummaryCase{"bad_uid_tolerated", "oom-kill:constraint=CONSTRAINT_NONE,global_oom,task=t,pid=12,uid=x", true,
                    "CONSTRAINT_NONE", std::nullopt, true, std::nullopt, "t", 12, std::nullopt},
        SummaryCase{"missing_pid", "oom-kill:constraint=CONSTRAINT_MEMCG,oom_memcg=/m,task_memcg=/m,task=t,uid=0", false},
        SummaryCase{"truncated_in_pid", "oom-kill:constraint=CONSTRAINT_MEMCG,oom_memcg=/m,task_memcg=/m,task=t,pid=", false},
        SummaryCase{"truncated_before_pid", "oom-kill:constraint=CONSTRAINT_MEMCG,oom_memcg=/m,task_memcg=/m,task=t", false},
        SummaryCase{"non_numeric_pid", "oom-kill:constraint=CONSTRAINT_MEMCG,task=t,pid=12a,uid=0", false},
        SummaryCase{"zero_pid", "oom-kill:constraint=CONSTRAINT_MEMCG,task=t,pid=0,uid=0", false},
        SummaryCase{"negative_pid", "oom-kill:constraint=CONSTRAINT_MEMCG,task=t,pid=-3,uid=0", false},
        SummaryCase{"missing_constraint", "oom-kill:nodemask=(null),oom_memcg=/m,task_memcg=/m,task=t,pid=5,uid=0", false},
        SummaryCase{"bare_prefix", "oom-kill:", false},
        SummaryCase{"garbage_prefix", "oom_kill:constraint=CONSTRAINT_NONE,pid=5", false},
        SummaryCase{"other_line", "Memory cgroup out of memory: Killed process 5 (x)", false},
        SummaryCase{"empty", "", false}),
    [](const ::testing::TestParamInfo<SummaryCase>& param_info) { return std::string(param_info.param.name); });

// --- "Killed process" lines -----------------------------------------------------------------------

struct KilledCase {
  const char* name;
  const char* text;
  bool ok;
  pid_t pid = 0;
  const char* comm = "";
  const char* reason = "";
  bool allocating = false;
  std::optional<uint64_t> total_vm_kb = std::nullopt;
  std::optional<uint64_t> anon_rss_kb = std::nullopt;
  std::optional<uint64_t> file_rss_kb = std::nullopt;
  std::optional<uint64_t> shmem_rss_kb = std::nullopt;
  std::optional<uint64_t> pgtables_kb = std::nullopt;
  std::optional<int> oom_score_adj = std::nullopt;
};

void PrintTo(const KilledCase& value, std::ostream* out) { *out << value.name; }

class KilledProcessTable : public ::testing::TestWithParam<KilledCase> {};

TEST_P(KilledProcessTable, ParsesByKeyOrRejects) {
  const auto& c = GetParam();
  auto killed = parseKilledProcess(c.text);
  ASSERT_EQ(killed.ok(), c.ok) << (killed.ok() ? "accepted" : killed.error().describe());
  if (!c.ok) {
    EXPECT_TRUE(killed.error().malformed());
    return;
  }
  const auto& k = killed.value();
  EXPECT_EQ(k.pid, c.pid);
  EXPECT_EQ(k.comm, c.comm);
  EXPECT_EQ(k.reason, c.reason);
  EXPECT_EQ(k.allocating_task, c.allocating);
  EXPECT_EQ(k.total_vm_kb, c.total_vm_kb);
  EXPECT_EQ(k.anon_rss_kb, c.anon_rss_kb);
  EXPECT_EQ(k.file_rss_kb, c.file_rss_kb);
  EXPECT_EQ(k.shmem_rss_kb, c.shmem_rss_kb);
  EXPECT_EQ(k.pgtables_kb, c.pgtables_kb);
  EXPECT_EQ(k.oom_score_adj, c.oom_score_adj);
}

INSTANTIATE_TEST_SUITE_P(
    Oom, KilledProcessTable,
    ::testing::Values(
        KilledCase{"memcg_real",
                   "Memory cgroup out of memory: Killed process 141 (hog) total-vm:103400kB, anon-rss:49024kB, "
                   "file-rss:0kB, shmem-rss:520kB, UID:0 pgtables:136kB oom_score_adj:0",
                   true, 141, "hog", "Memory cgroup out of memory", false, 103400, 49024, 0, 520, 136, 0},
        KilledCase{"allocating_real",
                   "Out of memory (oom_kill_allocating_task): Killed process 195 (grower) total-vm:132072kB, "
                   "anon-rss:130048kB, file-rss:0kB, shmem-rss:520kB, UID:0 pgtables:296kB oom_score_adj:0",
                   true, 195, "grower", "Out of memory (oom_kill_allocating_task)", true, 132072, 130048, 0, 520, 296, 0},
        KilledCase{"comm_with_spaces_and_parens_real",
                   "Memory cgroup out of memory: Killed process 151 (sl) eep (x) total-vm:5096kB, anon-rss:4096kB, "
                   "file-rss:0kB, shmem-rss:452kB, UID:0 pgtables:44kB oom_score_adj:0",
                   true, 151, "sl) eep (x", "Memory cgroup out of memory", false, 5096, 4096, 0, 452, 44, 0},
        KilledCase{"comm_ending_with_paren",
                   "Out of memory: Killed process 8 (x)) total-vm:4kB, anon-rss:1kB, file-rss:2kB, shmem-rss:3kB, UID:0 "
                   "pgtables:4kB oom_score_adj:-17",
                   true, 8, "x)", "Out of memory", false, 4, 1, 2, 3, 4, -17},
        KilledCase{"comm_is_close_paren_space", "Out of memory: Killed process 8 () ) total-vm:4kB, oom_score_adj:1000", true,
                   8, ") ", "Out of memory", false, 4, std::nullopt, std::nullopt, std::nullopt, std::nullopt, 1000},
        KilledCase{"unknown_keys_tolerated",
                   "Out of memory: Killed process 9 (a b) total-vm:10kB, anon-rss:20kB, swap-rss:7kB, file-rss:30kB, "
                   "shmem-rss:40kB, UID:1000 pgtables:50kB oom_score_adj:-500 future:1kB",
                   true, 9, "a b", "Out of memory", false, 10, 20, 30, 40, 50, -500},
        KilledCase{"older_kernel_without_uid_pgtables",
                   "Killed process 77 (old) total-vm:100kB, anon-rss:60kB, file-rss:4kB, shmem-rss:0kB", true, 77, "old", "",
                   false, 100, 60, 4, 0, std::nullopt, std::nullopt},
        KilledCase{"no_fields", "Killed process 5 (x)", true, 5, "x", "", false},
        KilledCase{"truncated_fields",
                   "Memory cgroup out of memory: Killed process 5 (x) total-vm:10kB, anon-rss:", true, 5, "x",
                   "Memory cgroup out of memory", false, 10, std::nullopt},
        KilledCase{"garbage_field_values", "Killed process 5 (x) total-vm:lots, anon-rss:-1kB, oom_score_adj:high", true, 5,
                   "x", "", false},
        KilledCase{"missing_pid", "Memory cgroup out of memory: Killed process (hog) total-vm:1kB", false},
        KilledCase{"non_numeric_pid", "Out of memory: Killed process 12x (hog) total-vm:1kB", false},
        KilledCase{"zero_pid", "Out of memory: Killed process 0 (hog) total-vm:1kB", false},
        KilledCase{"truncated_after_pid", "Out of memory: Killed process 12", false},
        KilledCase{"truncated_in_comm", "Out of memory: Killed process 12 (ho", false},
        KilledCase{"no_comm", "Out of memory: Killed process 12 hog total-vm:1kB", false},
        KilledCase{"empty_comm_paren_only", "Out of memory: Killed process 12 (", false},
        KilledCase{"reaper_line", "oom_reaper: reaped process 141 (hog), now anon-rss:0kB, file-rss:0kB, shmem-rss:0kB",
                   false},
        KilledCase{"garbage", "some garbage", false},
        KilledCase{"empty", "", false}),
    [](const ::testing::TestParamInfo<KilledCase>& param_info) { return std::string(param_info.param.name); });

}  // namespace
}  // namespace oomguard::cgroupfs
