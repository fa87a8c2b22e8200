// The kill history across daemon restarts (KillHistory), on the real kernel 6.12 reports of
// tests/fixtures/kmsg-6.12: each kernel kill journaled exactly once, whether the daemon saw it live or
// found it in the ring buffer at start; records the ring buffer dropped meanwhile journaled as a gap.
#include "guardian/daemon/kill_history.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "test_util.hpp"

namespace oomguard::guardian::daemon {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::ordered_json;

using oomguard::testing::kmsgFixtureRecords;

class KillHistoryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::path(::testing::TempDir()) / ("oomguard-history-" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    settings_.dir = dir_.string();
  }
  void TearDown() override { fs::remove_all(dir_); }

  // A daemon's run: a fresh KillHistory, as after a restart (SIGKILL: nothing saved on the way out).
  std::unique_ptr<KillHistory> run(const std::string& boot_id = "boot-a") {
    auto history = std::make_unique<KillHistory>(clock_, log_, [](const std::string&) {
      return kube::WorkloadLabels{"shop", "cart-7d9f", "app"};
    });
    history->open(settings_, boot_id);
    return history;
  }
  // Live records through the same assembler the daemon's OomReports uses.
  void live(KillHistory& history, const std::vector<std::string>& records) {
    cgroupfs::OomReportAssembler assembler;
    for (const auto& text : records) {
      auto record = cgroupfs::parseKmsgRecord(text);
      ASSERT_TRUE(record);
      history.sawRecord(record.value().sequence);
      for (const auto& event : assembler.feed(record.value().message, record.value().timestamp_us)) {
        if (const auto* kill = std::get_if<cgroupfs::KernelOomKill>(&event)) {
          history.kernelReport(KernelKillCheck{*kill, kill->summary.oom_memcg.value_or("/"), true, {}, {}},
                               record.value().sequence);
        } else if (const auto* group = std::get_if<cgroupfs::KernelOomGroupKill>(&event)) {
          history.kernelReport(*group, record.value().sequence);
        } else if (const auto* member = std::get_if<cgroupfs::KernelGroupMemberKilled>(&event)) {
          history.kernelReport(*member, record.value().sequence);
        }
      }
    }
  }
  std::vector<Json> journal() {
    auto read = io::readKillJournal(dir_.string());
    EXPECT_TRUE(read);
    return read ? read.value().records : std::vector<Json>{};
  }
  static size_t count(const std::vector<Json>& records, const std::string& kind) {
    return static_cast<size_t>(std::count_if(records.begin(), records.end(),
                                             [&](const Json& r) { return r.value("kind", "") == kind; }));
  }

  fs::path dir_;
  config::History settings_;
  uint64_t now_us_ = 10'000'000;
  Clock clock_{[this] { return now_us_; }, [] { return uint64_t{0}; }};
  std::ostringstream log_text_;
  io::EventLog log_{log_text_, [] { return std::chrono::system_clock::time_point(std::chrono::seconds(1'800'000'000)); }};
};

TEST_F(KillHistoryTest, AKillSeenLiveIsNotJournaledAgainWhenARestartReplaysTheRingBuffer) {
  const auto memcg = kmsgFixtureRecords("memcg.txt");
  {
    auto first = run();
    first->replayed();
    live(*first, memcg);
  }
  auto records = journal();
  ASSERT_EQ(count(records, "kill"), 1U);
  EXPECT_EQ(records[0]["killer"], "kernel");
  EXPECT_EQ(records[0]["comm"], "hog");
  EXPECT_EQ(records[0]["constraint"], "CONSTRAINT_MEMCG");
  EXPECT_EQ(records[0]["domain"], "/fxmemcg");
  EXPECT_TRUE(records[0]["anon_rss_kb"].is_number());
  EXPECT_FALSE(records[0].contains("replayed"));
  // SIGKILLed, restarted: the ring buffer still holds the report.
  auto second = run();
  for (const auto& record : memcg) {
    second->replay(record);
  }
  second->replayed();
  EXPECT_EQ(count(journal(), "kill"), 1U) << "exactly once";
  EXPECT_EQ(count(journal(), "gap"), 0U);
}

TEST_F(KillHistoryTest, KillsMadeWhileTheDaemonWasDownAreJournaledOnceMarkedReplayed) {
  const auto memcg = kmsgFixtureRecords("memcg.txt");
  const auto group = kmsgFixtureRecords("group.txt");
  ASSERT_LT(cgroupfs::parseKmsgRecord(memcg.back()).value().sequence,
            cgroupfs::parseKmsgRecord(group.front()).value().sequence);
  {
    auto first = run();
    first->replayed();
    live(*first, memcg);
  }
  // Down while the group OOM happened; the next start finds both reports in the ring buffer.
  std::vector<std::string> ring = memcg;
  ring.insert(ring.end(), group.begin(), group.end());
  for (int restart = 0; restart < 2; ++restart) {
    auto next = run();
    for (const auto& record : ring) {
      next->replay(record);
    }
    next->replayed();
  }
  const auto records = journal();
  EXPECT_EQ(count(records, "kill"), 2U) << "the memcg kill once, the group OOM's victim once";
  EXPECT_EQ(count(records, "group_kill"), 1U);
  EXPECT_EQ(count(records, "group_member"), 3U);
  for (const auto& record : records) {
    if (record["kind"] != "gap" && record != records.front()) {
      EXPECT_TRUE(record.value("replayed", false)) << record.dump();
    }
  }
  EXPECT_NE(log_text_.str().find("history_resumed"), std::string::npos);
}

TEST_F(KillHistoryTest, RecordsTheRingBufferDroppedWhileTheDaemonWasDownAreAGap) {
  const auto group = kmsgFixtureRecords("group.txt");
  const uint64_t first_seq = cgroupfs::parseKmsgRecord(group.front()).value().sequence;
  fs::create_directories(dir_);
  ASSERT_TRUE(io::writeKmsgPosition(dir_.string(), io::KmsgPosition{"boot-a", first_seq - 100}));
  auto history = run();
  for (const auto& record : group) {
    history->replay(record);
  }
  history->replayed();
  const auto records = journal();
  ASSERT_EQ(count(records, "gap"), 1U);
  EXPECT_EQ(records[0]["from_seq"], first_seq - 99);
  EXPECT_EQ(records[0]["to_seq"], first_seq - 1);
  EXPECT_EQ(io::readKmsgPosition(dir_.string())->sequence,
            cgroupfs::parseKmsgRecord(group.back()).value().sequence)
      << "the position moves on after the replay";
  // Another boot's position says nothing about this boot's sequence numbers.
  fs::remove_all(dir_);
  fs::create_directories(dir_);
  ASSERT_TRUE(io::writeKmsgPosition(dir_.string(), io::KmsgPosition{"boot-old", 1}));
  auto fresh = run("boot-b");
  for (const auto& record : group) {
    fresh->replay(record);
  }
  const auto fresh_records = journal();
  ASSERT_EQ(count(fresh_records, "gap"), 1U);
  EXPECT_EQ(fresh_records[0]["from_seq"], 0) << "not from the other boot's position";
}

TEST_F(KillHistoryTest, AtTheFirstStartInABootRecordsAlreadyOverwrittenAreAGapFromZero) {
  // The ring buffer wrapped before the daemon first started in this boot: its oldest record is not 0.
  auto history = run();
  const auto group = kmsgFixtureRecords("group.txt");
  for (const auto& record : group) {
    history->replay(record);
  }
  history->replayed();
  const auto records = journal();
  ASSERT_GE(records.size(), 1U);
  EXPECT_EQ(records[0]["kind"], "gap");
  EXPECT_EQ(records[0]["from_seq"], 0);
  EXPECT_EQ(records[0]["to_seq"], cgroupfs::parseKmsgRecord(group.front()).value().sequence - 1);
  EXPECT_NE(records[0]["detail"].get<std::string>().find("before its first start in this boot"), std::string::npos);
}

TEST_F(KillHistoryTest, AKillReplayedAtStartIsNotJournaledAgainWhenTheLiveReaderSeesItToo) {
  // It arrived while the replay read the ring buffer: both descriptors read it.
  const auto memcg = kmsgFixtureRecords("memcg.txt");
  auto history = run();
  for (const auto& record : memcg) {
    history->replay(record);
  }
  history->replayed();
  live(*history, memcg);
  EXPECT_EQ(count(journal(), "kill"), 1U);
}

TEST_F(KillHistoryTest, OneDaemonPerHistoryDirectory) {
  auto first = run();
  ASSERT_TRUE(first->enabled());
  auto second = run();
  EXPECT_FALSE(second->enabled()) << "a second writer would interleave and rotate under the first";
  EXPECT_NE(log_text_.str().find("another oomguard keeps its history here"), std::string::npos) << log_text_.str();
}

TEST_F(KillHistoryTest, AJournalLineOfTheWrongShapeIsIgnoredNotFatal) {
  fs::create_directories(dir_);
  std::ofstream(dir_ / io::kKillJournalFile) << R"({"boot_id": 7, "killer": ["kernel"], "seq": "x"})" << "\n"
                                             << R"({"boot_id": "boot-a", "killer": "kernel", "seq": -4})" << "\n";
  auto history = run();
  ASSERT_TRUE(history->enabled());
  for (const auto& record : kmsgFixtureRecords("memcg.txt")) {
    history->replay(record);
  }
  history->replayed();
  EXPECT_EQ(count(journal(), "kill"), 1U);
}

TEST_F(KillHistoryTest, AKillInAPodCarriesItsWorkload) {
  auto history = run();
  policies::VictimCandidate victim;
  victim.pid = 4242;
  victim.comm = "java";
  victim.cgroup =
      "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1b4e28ba_2fa1_11d2_883f_0016d3cca427.slice/"
      "cri-containerd-4f3a9c0d2e1b.scope";
  victim.points = 900;
  cgroupfs::ProcStatus status;
  status.has_mm = true;
  status.rss_anon_kb = 2048;
  history->oomguardKill(OomguardKill{"/kubepods.slice", victim, status, std::nullopt, "kill-worst", "headroom", {}});
  const auto records = journal();
  ASSERT_EQ(records.size(), 1U);
  EXPECT_EQ(records[0]["killer"], "oomguard");
  EXPECT_EQ(records[0]["pid"], 4242);
  EXPECT_EQ(records[0]["anon_rss_kb"], 2048);
  EXPECT_EQ(records[0]["workload"]["pod"], "cart-7d9f");
  EXPECT_EQ(records[0]["workload"]["pod_uid"], "1b4e28ba-2fa1-11d2-883f-0016d3cca427");
  EXPECT_EQ(records[0]["time"], "2027-01-15T08:00:00.000000Z");
}

TEST_F(KillHistoryTest, AStateDirectoryThatCannotBeMadeLeavesTheHistoryOffNotTheDaemon) {
  settings_.dir = "/proc/oomguard-cannot-be-here";
  auto history = run();
  EXPECT_FALSE(history->enabled());
  live(*history, kmsgFixtureRecords("memcg.txt"));
  EXPECT_NE(log_text_.str().find("history_unavailable"), std::string::npos);
}

}  // namespace
}  // namespace oomguard::guardian::daemon
