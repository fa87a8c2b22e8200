// `oomguard history` on journals written by io::KillJournal: the table, --json, --since, and names that
// must not reach a terminal as they are.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <sstream>

#include "guardian/cli/commands.hpp"
#include "guardian/io/kill_journal.hpp"

namespace oomguard::guardian::cli {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::ordered_json;

// 2026-12-02T10:00:00Z
constexpr int64_t kNow = 1'796'205'600;

class HistoryCommand : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::path(::testing::TempDir()) / ("oomguard-history-cli-" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    auto journal = io::KillJournal::open(dir_.string(), 1024 * 1024);
    ASSERT_TRUE(journal);
    ASSERT_TRUE(journal.value()->append(Json{{"time", "2026-12-01T10:00:00.000000Z"}, {"killer", "kernel"},
                                             {"kind", "kill"}, {"seq", 10}, {"pid", 11},
                                             {"comm", std::string("evil\x1b]0;owned\x07\xff", 15)},
                                             {"constraint", "CONSTRAINT_NONE"}, {"anon_rss_kb", 1024},
                                             {"file_rss_kb", 0}, {"shmem_rss_kb", 0}, {"cgroup", "/system.slice/x"},
                                             {"replayed", true}}));
    ASSERT_TRUE(journal.value()->append(Json{{"time", "2026-12-02T09:30:00.000000Z"}, {"killer", "unknown"},
                                             {"kind", "gap"}, {"from_seq", 12}, {"to_seq", 40}}));
    ASSERT_TRUE(journal.value()->append(
        Json{{"time", "2026-12-02T09:59:00.000000Z"}, {"killer", "oomguard"}, {"kind", "kill"}, {"pid", 22},
             {"comm", "java"}, {"constraint", "CONSTRAINT_MEMCG"},
             {"workload", Json{{"namespace", "shop"}, {"pod", "cart-1"}, {"container", "app"}, {"pod_uid", "u"},
                               {"container_id", "c"}}}}));
  }
  void TearDown() override { fs::remove_all(dir_); }
  int run(HistoryOptions options) {
    options.dir = dir_.string();
    options.now_epoch_s = kNow;
    out_.str("");
    err_.str("");
    return runHistory(options, out_, err_);
  }
  fs::path dir_;
  std::ostringstream out_;
  std::ostringstream err_;
};

TEST_F(HistoryCommand, TheTableShowsEveryKillAndGapWithNamesMadePrintable) {
  ASSERT_EQ(run({}), kExitOk) << err_.str();
  const std::string text = out_.str();
  EXPECT_NE(text.find("kernel*"), std::string::npos) << text;
  EXPECT_NE(text.find("shop/cart-1/app"), std::string::npos) << text;
  EXPECT_NE(text.find("12..40"), std::string::npos) << text;
  EXPECT_NE(text.find("while it was not running"), std::string::npos) << text;
  EXPECT_EQ(text.find('\x1b'), std::string::npos) << "no escape sequence reaches the terminal";
  EXPECT_EQ(text.find('\x07'), std::string::npos);
  EXPECT_NE(text.find("evil\\x1B"), std::string::npos) << text;
}

TEST_F(HistoryCommand, SinceKeepsTheRecentKillsAndJsonIsOneRecordPerLine) {
  HistoryOptions options;
  options.since = "1h";
  options.json = true;
  ASSERT_EQ(run(options), kExitOk);
  std::istringstream lines(out_.str());
  std::vector<Json> records;
  for (std::string line; std::getline(lines, line);) {
    records.push_back(Json::parse(line));
  }
  ASSERT_EQ(records.size(), 2U) << out_.str();
  EXPECT_EQ(records[0]["kind"], "gap");
  EXPECT_EQ(records[1]["pid"], 22);
  options.since = "2d";
  ASSERT_EQ(run(options), kExitOk);
  const std::string all = out_.str();
  EXPECT_EQ(std::count(all.begin(), all.end(), '\n'), 3);
}

TEST_F(HistoryCommand, ABadDurationIsAUsageErrorAndAnEmptyHistorySaysSo) {
  HistoryOptions options;
  options.since = "5 minutes";
  EXPECT_EQ(run(options), kExitUsage);
  EXPECT_NE(err_.str().find("not a duration"), std::string::npos);
  options.since = "1s";
  EXPECT_EQ(run(options), kExitOk);
  EXPECT_NE(out_.str().find("no OOM kill recorded in the last 1s"), std::string::npos) << out_.str();
}

TEST(HistoryDuration, Units) {
  EXPECT_EQ(parseDurationSeconds("90"), 90);
  EXPECT_EQ(parseDurationSeconds("90s"), 90);
  EXPECT_EQ(parseDurationSeconds("15m"), 900);
  EXPECT_EQ(parseDurationSeconds("2h"), 7200);
  EXPECT_EQ(parseDurationSeconds("7d"), 604800);
  for (const char* bad : {"", "h", "1.5h", "-1h", "1w", "1hh", "9999999999"}) {
    EXPECT_FALSE(parseDurationSeconds(bad)) << bad;
  }
}

}  // namespace
}  // namespace oomguard::guardian::cli
