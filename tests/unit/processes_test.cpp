// Process rules (/processes, config/processes.hpp): what is read and refused (with its JSON path), and
// the matcher: the first matching rule wins, every key a rule gives must match, uids, a command line's
// NULs read as spaces and read only when a rule needs it, any byte in a name.
#include "guardian/config/processes.hpp"

#include <gtest/gtest.h>

#include <string>

#include "config_error_of.hpp"
#include "guardian/config/config.hpp"

namespace oomguard::guardian::config {
namespace {

const ProcessRule* match(const Config& config, std::string_view comm, uid_t uid, std::optional<std::string> cmdline,
                         size_t* index = nullptr, int* reads = nullptr) {
  return processRuleFor(
      config.processes, comm, uid,
      [&]() -> std::optional<std::string> {
        if (reads != nullptr) {
          ++*reads;
        }
        return cmdline;
      },
      index);
}

TEST(ProcessRules, FirstMatchWinsAndEveryKeyGivenMustMatch) {
  const Config config = parseConfig(R"json({"processes": [
      {"comm": "^java$", "uid": [1000, 1001], "preference": "prefer"},
      {"comm": "^java$", "protection": "high"},
      {"cmdline": "--role=db( |$)", "preference": "omit", "protection": -800},
      {"uid": 0, "preference": "avoid"}]})json",
                                    "t");
  ASSERT_EQ(config.processes.size(), 4U);
  size_t index = 99;
  ASSERT_NE(match(config, "java", 1001, "java -jar app.jar", &index), nullptr);
  EXPECT_EQ(index, 0U);
  EXPECT_EQ(config.processes[0].preference, policies::Preference::kPrefer);
  ASSERT_NE(match(config, "java", 1002, "java", &index), nullptr);
  EXPECT_EQ(index, 1U) << "uid 1002 is not listed in the first rule";
  EXPECT_EQ(config.processes[1].oom_score_adj, -500);
  EXPECT_EQ(match(config, "javac", 1000, "javac"), nullptr) << "^java$ is anchored by the operator";
  ASSERT_NE(match(config, "postgres", 999, "postgres --role=db", &index), nullptr);
  EXPECT_EQ(index, 2U);
  EXPECT_EQ(config.processes[2].oom_score_adj, -800);
  ASSERT_NE(match(config, "sshd", 0, std::nullopt, &index), nullptr);
  EXPECT_EQ(index, 3U) << "an unreadable command line matches no cmdline pattern, and the next rule applies";
  EXPECT_EQ(config.processes[0].text, R"(comm "^java$", uid [1000,1001])");
}

TEST(ProcessRules, TheCommandLineIsReadOnceAndOnlyWhenNeeded) {
  const Config config = parseConfig(R"({"processes": [
      {"comm": "^python", "cmdline": "manage\\.py", "preference": "avoid"},
      {"cmdline": "worker", "preference": "prefer"}]})",
                                    "t");
  int reads = 0;
  EXPECT_EQ(match(config, "bash", 0, "bash -c true", nullptr, &reads), nullptr);
  EXPECT_EQ(reads, 1) << "read once for two rules";
  reads = 0;
  size_t index = 0;
  ASSERT_NE(match(config, "python3", 0, "python3 celery worker", &index, &reads), nullptr);
  EXPECT_EQ(index, 1U);
  EXPECT_EQ(reads, 1);
  const Config comm_only = parseConfig(R"({"processes": [{"comm": "^x$", "preference": "avoid"}]})", "t");
  reads = 0;
  (void)match(comm_only, "y", 0, "y", nullptr, &reads);
  EXPECT_EQ(reads, 0) << "no rule asked for the command line";
}

TEST(ProcessRules, TheCommandLinesNulsAreSpacesAndAnyByteIsText) {
  EXPECT_EQ(cmdlineText(std::string("java\0-Xmx1g\0-jar\0app.jar\0", 25)), "java -Xmx1g -jar app.jar");
  EXPECT_EQ(cmdlineText(std::string("a b\0c\0", 6)), "a b c");
  EXPECT_EQ(cmdlineText(""), "");
  const Config config = parseConfig(R"({"processes": [{"cmdline": "-Xmx1g -jar", "preference": "prefer"},
      {"comm": "^bad", "preference": "avoid"}]})",
                                    "t");
  EXPECT_NE(match(config, "java", 0, std::string("java\0-Xmx1g\0-jar\0app.jar\0", 25)), nullptr);
  // A name with bytes that are not UTF-8, a newline, an escape: matched byte by byte, never a crash; `.`
  // matches a byte that is not UTF-8 (a Latin-1 path inside a command line).
  size_t index = 0;
  ASSERT_NE(match(config, std::string("bad\xff\xfe\n\x1b[31m", 11), 0, std::string("\xff\0", 2), &index), nullptr);
  EXPECT_EQ(index, 1U);
  const Config any_byte = parseConfig(R"({"processes": [{"cmdline": "^java .*-Dapp=x$", "preference": "avoid"}]})", "t");
  EXPECT_NE(match(any_byte, "java", 0, std::string("java\0/opt/caf\xe9\0-Dapp=x\0", 23)), nullptr);
  const Config utf8 = parseConfig(R"({"processes": [{"comm": "^caf\u00e9$", "preference": "avoid"}]})", "t");
  EXPECT_NE(match(utf8, "caf\xc3\xa9", 0, std::nullopt), nullptr) << "a pattern's UTF-8 letter matches its bytes";
}

TEST(ProcessRules, APatternThatBacktracksElsewhereStaysLinear) {
  // (a+)+$ takes exponential time in a backtracking engine on "aaa...ab"; RE2 answers at once.
  const Config config = parseConfig(R"json({"processes": [{"cmdline": "(a+)+$", "preference": "prefer"}]})json", "t");
  const std::string text = std::string(100000, 'a') + "b";
  EXPECT_EQ(match(config, "x", 0, text), nullptr);
  EXPECT_EQ(match(config, "x", 0, text + "aa"), config.processes.data());
}

TEST(ProcessRules, BadRulesAreRefusedWithTheirPath) {
  EXPECT_NE(errorOf(R"({"processes": {}})").find("/processes: must be an array"), std::string::npos);
  EXPECT_NE(errorOf(R"({"processes": [{"comm": "(", "preference": "avoid"}]})").find("/processes/0/comm: is not an RE2 pattern"),
            std::string::npos);
  EXPECT_NE(errorOf(R"({"processes": [{"comm": "", "preference": "avoid"}]})").find("/processes/0/comm: must be a pattern"),
            std::string::npos);
  EXPECT_NE(errorOf(R"json({"processes": [{"comm": "(?P<x>a)\\1", "preference": "avoid"}]})json").find("/processes/0/comm: is not an RE2 pattern"),
            std::string::npos)
      << "backreferences are not RE2";
  EXPECT_NE(errorOf(R"({"processes": [{"preference": "avoid"}]})").find("/processes/0: matches nothing"),
            std::string::npos);
  EXPECT_NE(errorOf(R"({"processes": [{"comm": "x"}]})").find("/processes/0: does nothing"), std::string::npos);
  EXPECT_NE(errorOf(R"({"processes": [{"uid": -1, "preference": "avoid"}]})").find("/processes/0/uid: must be a uid"),
            std::string::npos);
  EXPECT_NE(errorOf(R"({"processes": [{"uid": [0, "root"], "preference": "avoid"}]})").find("/processes/0/uid/1: must be a uid"),
            std::string::npos);
  EXPECT_NE(errorOf(R"({"processes": [{"comm": "x", "protection": "immortal"}]})").find("/processes/0/protection: must be"),
            std::string::npos);
  EXPECT_NE(errorOf(R"({"processes": [{"comm": "x", "preference": "avoid", "regex": "y"}]})").find("/processes/0/regex: unknown key"),
            std::string::npos);
  EXPECT_NE(errorOf(R"({"processes": [{"comm": ")" + std::string(1025, 'a') + R"(", "preference": "avoid"}]})")
                .find("/processes/0/comm: must be a pattern of 1 to 1024 bytes"),
            std::string::npos);
  // A pattern whose compiled program outgrows RE2's memory budget (1 MiB) is refused, not truncated.
  std::string huge;  // 90 times [a-z]{1000}: 990 bytes, about 90,000 instructions compiled
  for (int i = 0; i < 90; ++i) {
    huge += "[a-z]{1000}";
  }
  const std::string too_big = errorOf(R"({"processes": [{"cmdline": ")" + huge + R"(", "preference": "avoid"}]})");
  EXPECT_NE(too_big.find("/processes/0/cmdline: is not an RE2 pattern: pattern too large"), std::string::npos) << too_big;
}

}  // namespace
}  // namespace oomguard::guardian::config
