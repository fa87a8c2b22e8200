// The kill journal on disk (io::KillJournal): whole lines only, a torn last line skipped and never glued
// to the next record, the size bound, the kmsg position written by rename.
#include "guardian/io/kill_journal.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

namespace oomguard::guardian::io {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::ordered_json;

class KillJournalTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::path(::testing::TempDir()) / ("oomguard-journal-" + std::to_string(::getpid()));
    fs::remove_all(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::unique_ptr<KillJournal> open(uint64_t max_bytes = 1024 * 1024) {
    auto journal = KillJournal::open(dir_.string(), max_bytes);
    EXPECT_TRUE(journal) << journal.error().describe();
    return journal ? std::move(journal).value() : nullptr;
  }
  fs::path dir_;
};

TEST_F(KillJournalTest, RecordsComeBackOldestFirstAndAMissingJournalIsEmpty) {
  auto empty = readKillJournal(dir_.string());
  ASSERT_TRUE(empty);
  EXPECT_TRUE(empty.value().records.empty());
  auto journal = open();
  ASSERT_TRUE(journal);
  EXPECT_TRUE(fs::is_directory(dir_)) << "the state directory is created";
  for (int pid = 1; pid <= 3; ++pid) {
    ASSERT_TRUE(journal->append(Json{{"pid", pid}}));
  }
  const auto read = readKillJournal(dir_.string());
  ASSERT_TRUE(read);
  ASSERT_EQ(read.value().records.size(), 3U);
  EXPECT_EQ(read.value().records[0]["pid"], 1);
  EXPECT_EQ(read.value().records[2]["pid"], 3);
  EXPECT_EQ(read.value().skipped_lines, 0U);
}

TEST_F(KillJournalTest, ATornLastLineIsSkippedAndTheNextRecordStartsOnALineOfItsOwn) {
  {
    auto journal = open();
    ASSERT_TRUE(journal->append(Json{{"pid", 1}}));
  }
  // A crash in the middle of the second write.
  std::ofstream(dir_ / kKillJournalFile, std::ios::app) << R"({"pid": 2, "comm": "ha)";
  auto journal = open();
  ASSERT_TRUE(journal->append(Json{{"pid", 3}}));
  const auto read = readKillJournal(dir_.string());
  ASSERT_TRUE(read);
  ASSERT_EQ(read.value().records.size(), 2U);
  EXPECT_EQ(read.value().records[1]["pid"], 3) << "the record after the torn line is whole";
  EXPECT_EQ(read.value().skipped_lines, 1U);
}

TEST_F(KillJournalTest, TheHistoryStaysWithinTwiceItsBound) {
  constexpr uint64_t kMax = 4096;
  auto journal = open(kMax);
  const std::string padding(100, 'x');
  for (int pid = 1; pid <= 500; ++pid) {
    ASSERT_TRUE(journal->append(Json{{"pid", pid}, {"padding", padding}}));
  }
  EXPECT_LE(fs::file_size(dir_ / kKillJournalFile), kMax);
  EXPECT_LE(fs::file_size(dir_ / kKillJournalOldFile), kMax);
  const auto read = readKillJournal(dir_.string());
  ASSERT_TRUE(read);
  ASSERT_FALSE(read.value().records.empty());
  EXPECT_EQ(read.value().records.back()["pid"], 500) << "the newest records are kept";
  EXPECT_GE(read.value().records.size(), kMax / 130) << "at least one file's worth";
  for (size_t i = 1; i < read.value().records.size(); ++i) {
    EXPECT_EQ(read.value().records[i]["pid"].get<int>(), read.value().records[i - 1]["pid"].get<int>() + 1);
  }
}

TEST_F(KillJournalTest, AnyByteOfANameIsJournaledAsValidJson) {
  auto journal = open();
  ASSERT_TRUE(journal->append(Json{{"comm", std::string("a\xff\x1b[31m\n\"b", 10)}}));
  std::ifstream in(dir_ / kKillJournalFile);
  std::string line;
  ASSERT_TRUE(std::getline(in, line));
  EXPECT_FALSE(std::getline(in, line)) << "one record, one line: a newline in a name is escaped";
  const auto read = readKillJournal(dir_.string());
  ASSERT_EQ(read.value().records.size(), 1U);
  EXPECT_EQ(read.value().records[0]["comm"], "a\xEF\xBF\xBD\x1b[31m\n\"b");
}

TEST_F(KillJournalTest, TheKmsgPositionRoundTrips) {
  fs::create_directories(dir_);
  EXPECT_FALSE(readKmsgPosition(dir_.string()));
  ASSERT_TRUE(writeKmsgPosition(dir_.string(), KmsgPosition{"boot-1", 1234}));
  ASSERT_TRUE(writeKmsgPosition(dir_.string(), KmsgPosition{"boot-1", 5678}));
  EXPECT_EQ(readKmsgPosition(dir_.string()), (KmsgPosition{"boot-1", 5678}));
  EXPECT_FALSE(fs::exists(dir_ / (std::string(kKmsgPositionFile) + ".new")));
}

TEST_F(KillJournalTest, AStateDirectoryThatCannotBeCreatedIsAnError) {
  const auto refused = KillJournal::open("/proc/oomguard-cannot-be-here", 4096);
  EXPECT_FALSE(refused);
}

}  // namespace
}  // namespace oomguard::guardian::io
