// `oomguard explain-oom` on the real kernel 6.12 reports of tests/fixtures/kmsg-6.12: the model's choice
// against the kernel's victim for every constraint, the same reports in every form dmesg and journalctl
// print them, and input that holds no report or a cut one.
#include <gtest/gtest.h>

#include <cstdio>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "cgroupfs/kernel_log.hpp"
#include "cgroupfs/oom_report.hpp"
#include "guardian/cli/commands.hpp"
#include "guardian/cli/oom_explanation.hpp"
#include "test_util.hpp"

namespace oomguard::guardian::cli {
namespace {

using Json = nlohmann::ordered_json;
using oomguard::testing::readFixture;

struct Ran {
  int code = 0;
  std::string out;
  std::string err;
};

Ran run(const std::string& input, bool json, ExplainOomOptions options = {}) {
  options.input = "-";
  options.json = json;
  std::istringstream in(input);
  std::ostringstream out;
  std::ostringstream err;
  const int code = runExplainOom(options, in, out, err);
  return {code, out.str(), err.str()};
}

Json runJson(const std::string& input) {
  const auto ran = run(input, true);
  EXPECT_EQ(ran.code, kExitOk) << ran.err;
  return Json::parse(ran.out);
}

std::string fixture(const std::string& name) {
  return readFixture("kmsg-6.12/" + name);
}

// The records of a /dev/kmsg capture as the other tools print them. Mem-Info's "\x0a" becomes a line of
// its own, indented under its record as dmesg and journalctl indent it.
enum class Form { kDmesg, kJournalPrecise, kJournalSeconds, kJournalMonotonic, kBare };

std::string convert(const std::string& kmsg, Form form) {
  std::istringstream in(kmsg);
  std::string out;
  std::string record;
  while (std::getline(in, record)) {
    if (record.empty() || record.front() == ' ') {
      continue;  // dictionary lines exist only in /dev/kmsg
    }
    const auto semicolon = record.find(';');
    const std::string header = record.substr(0, semicolon);
    std::string message = record.substr(semicolon + 1);
    const uint64_t usec = std::stoull(header.substr(header.find(',', header.find(',') + 1) + 1));
    char prefix[96];
    const auto seconds = static_cast<unsigned long long>(usec / 1000000);
    const auto micros = static_cast<unsigned long long>(usec % 1000000);
    switch (form) {
      case Form::kDmesg:
        std::snprintf(prefix, sizeof prefix, "[%5llu.%06llu] ", seconds, micros);
        break;
      case Form::kJournalPrecise:
        std::snprintf(prefix, sizeof prefix, "Dec 02 10:00:%02llu.%06llu node-1 kernel: ", seconds % 60,
                      micros);
        break;
      case Form::kJournalSeconds:
        std::snprintf(prefix, sizeof prefix, "Dec 02 10:00:%02llu node-1 kernel: ", seconds % 60);
        break;
      case Form::kJournalMonotonic:
        std::snprintf(prefix, sizeof prefix, "[%5llu.%06llu] node-1 kernel: ", seconds, micros);
        break;
      case Form::kBare:
        prefix[0] = '\0';
        break;
    }
    const std::string indent(form == Form::kBare ? 0 : std::string(prefix).size(), ' ');
    for (size_t at = message.find("\\x0a"); at != std::string::npos; at = message.find("\\x0a")) {
      message.replace(at, 4, "\n" + indent);
    }
    out += prefix + message + "\n";
  }
  return out;
}

struct Expected {
  std::string file;
  std::string constraint;
  std::string scope;
  std::string cgroup;
  uint64_t totalpages = 0;
  pid_t victim = 0;
  std::string name;
  long points = 0;
  std::vector<long> ranking;  // every candidate's points, the model's order
};

// Hand-computed from the task tables: rss + swapents + pgtables_bytes / 4096 (+ adj * totalpages / 1000).
const std::vector<Expected> kFixtures = {
    {"memcg.txt", "CONSTRAINT_MEMCG", "memcg", "/fxmemcg", 12288, 141, "hog", 12420, {12420}},
    {"parent.txt", "CONSTRAINT_MEMCG", "memcg", "/fxpar", 12288, 166, "kidhog", 12420, {12420}},
    // totalram = 130942 pages RAM - 12078 reserved; no swap.
    {"global.txt", "CONSTRAINT_NONE", "host", "/", 118864, 183, "big hog", 109281, {109281, 410}},
    // holder: 3185 + 15 + 100 * (16384 / 1000 = 16).
    {"group.txt", "CONSTRAINT_MEMCG", "memcg", "/fxgroup", 16384, 155, "hog", 12419, {12419, 4800, 1148}},
    // Node 1's present 262012 kB = 65503 pages; no swap.
    {"cpuset.txt", "CONSTRAINT_CPUSET", "cpuset", "/", 65503, 144, "nodehog", 62470, {62470, 409}},
};

void expectAgrees(const Json& report, const Expected& expected) {
  SCOPED_TRACE(expected.file);
  EXPECT_EQ(report["verdict"], "match");
  EXPECT_EQ(report["constraint"], expected.constraint);
  EXPECT_EQ(report["domain"]["scope"], expected.scope);
  EXPECT_EQ(report["domain"]["cgroup"], expected.cgroup);
  EXPECT_EQ(report["domain"]["totalpages"], expected.totalpages);
  EXPECT_EQ(report["page_size_bytes"], 4096);
  EXPECT_EQ(report["page_size_source"].get<std::string>().rfind("inferred", 0), 0U);
  // The kernel's victim (its Killed process and oom-kill: lines) is the model's first choice, and its
  // points from the task table equal those from its own Killed process line.
  EXPECT_EQ(report["victim"]["pid"], expected.victim);
  EXPECT_EQ(report["victim"]["name"], expected.name);
  EXPECT_EQ(report["model_choice"]["pid"], expected.victim);
  EXPECT_EQ(report["victim"]["rank"], 1);
  EXPECT_EQ(report["victim"]["points"], expected.points);
  EXPECT_EQ(report["victim"]["kill_line_points"], expected.points);
  std::vector<long> points;
  for (const auto& candidate : report["candidates"]) {
    points.push_back(candidate["points"].get<long>());
  }
  EXPECT_EQ(points, expected.ranking);
  if (expected.ranking.size() > 1) {
    EXPECT_EQ(report["runner_up"]["points"], expected.ranking[1]);
  } else {
    EXPECT_TRUE(report["runner_up"].is_null());
  }
}

TEST(ExplainOom, EveryCapturedReportAgreesWithTheKernel) {
  for (const auto& expected : kFixtures) {
    const auto document = runJson(fixture(expected.file));
    ASSERT_EQ(document["reports"].size(), 1U) << expected.file;
    EXPECT_TRUE(document["incomplete"].empty());
    expectAgrees(document["reports"][0], expected);
  }
}

TEST(ExplainOom, GroupKillTakesEveryMember) {
  const auto report = runJson(fixture("group.txt"))["reports"][0];
  EXPECT_EQ(report["group_kill"]["cgroup"], "/fxgroup");
  std::vector<std::string> killed;
  for (const auto& member : report["group_kill"]["killed"]) {
    killed.push_back(member["name"]);
  }
  EXPECT_EQ(killed, (std::vector<std::string>{"sl) eep (x", "holder", "hog"}));
  // holder's oom_score_adj 100 added 1600 points, not enough to change the choice.
  EXPECT_EQ(report["runner_up"]["name"], "holder");
  EXPECT_EQ(report["runner_up"]["adj_points"], 1600);
  EXPECT_EQ(report["first_without_adj"]["pid"], 155);
  EXPECT_NE(report["oom_score_adj_effect"].get<std::string>().find("added 1600 points"), std::string::npos);
  const auto text = run(fixture("group.txt"), false);
  EXPECT_NE(
      text.out.find(
          "memory.oom.group is set on /fxgroup: the kernel killed every task in it: pid 151 \"sl) eep (x\""),
      std::string::npos)
      << text.out;
}

TEST(ExplainOom, AllocatingTaskIsExplainedNotScanned) {
  const auto report = runJson(fixture("allocating.txt"))["reports"][0];
  EXPECT_EQ(report["verdict"], "allocating_task");
  EXPECT_EQ(report["victim"]["pid"], 195);
  EXPECT_EQ(report["victim"]["allocating_task"], true);
  EXPECT_EQ(report["victim"]["points"], 32716);
  EXPECT_EQ(report["victim"]["kill_line_points"], 32716);
  // A scan would have picked the bigger sleeper: 76913 + 655360 / 4096.
  EXPECT_EQ(report["model_choice"]["pid"], 193);
  EXPECT_EQ(report["model_choice"]["points"], 77073);
  EXPECT_EQ(report["domain"]["totalpages"], 118864);
  EXPECT_NE(report["why"].get<std::string>().find("vm.oom_kill_allocating_task is 1"), std::string::npos);
}

TEST(ExplainOom, BurstTenWholeReportsAndFourKillLinesAlone) {
  const auto document = runJson(fixture("burst.txt"));
  const auto& reports = document["reports"];
  ASSERT_EQ(reports.size(), 14U);
  for (size_t i = 0; i < reports.size(); ++i) {
    SCOPED_TRACE(i);
    const auto& report = reports[i];
    EXPECT_EQ(report["victim"]["name"], "burst" + std::to_string(i + 1));
    if (i < 10) {
      // 8192 kB = 2048 pages; rss 2178 + pgtables 57344 or 53248 bytes / 4096.
      EXPECT_EQ(report["verdict"], "match");
      EXPECT_EQ(report["model_choice"]["pid"], report["victim"]["pid"]);
      EXPECT_EQ(report["domain"]["totalpages"], 2048);
      EXPECT_EQ(report["victim"]["points"], report["victim"]["kill_line_points"]);
      EXPECT_TRUE(report["victim"]["points"] == 2192 || report["victim"]["points"] == 2191);
    } else {
      EXPECT_EQ(report["verdict"], "kill_line_only");
      EXPECT_TRUE(report["kill_line_only"]);
      EXPECT_TRUE(report["candidates"].empty());
      EXPECT_EQ(report["constraint"], "CONSTRAINT_MEMCG");
      ASSERT_EQ(report["notes"].size(), 1U);
      EXPECT_NE(report["notes"][0].get<std::string>().find("memcg /fxburst"), std::string::npos);
    }
  }
  const auto text = run(fixture("burst.txt"), false);
  EXPECT_NE(text.out.find("Report 14: line 1017, kmsg seq 1372, at 7.173965 s: the kill line alone"),
            std::string::npos);
}

TEST(ExplainOom, TextNamesTheDomainForEachConstraint) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"memcg.txt", "Domain        memcg /fxmemcg, totalpages 12288 (48.0 MiB)"},
      {"global.txt", "Domain        the host, totalpages 118864 (464.3 MiB)"},
      {"cpuset.txt", "Domain        cpuset nodes, totalpages 65503 (255.9 MiB)"},
      {"parent.txt", "the victim was in /fxpar/kid, below the limited /fxpar"},
      {"memcg.txt", "Model         first choice pid 141 \"hog\" with 12420 points: match"},
      {"global.txt",
       "Why           it had the most points, 109281, 108871 more than the runner-up pid 135 \"script\" "
       "(410)"},
  };
  for (const auto& [file, needle] : cases) {
    const auto ran = run(fixture(file), false);
    EXPECT_EQ(ran.code, kExitOk);
    EXPECT_NE(ran.out.find(needle), std::string::npos) << file << ":\n" << ran.out;
  }
}

// --- the same reports as dmesg, journalctl -k and bare messages print them -----------------------------

TEST(ExplainOom, EveryFormGivesTheSameExplanation) {
  const std::vector<std::string> files = {"memcg.txt",  "parent.txt",     "global.txt", "group.txt",
                                          "cpuset.txt", "allocating.txt", "burst.txt"};
  const std::vector<std::pair<Form, std::string>> forms = {{Form::kDmesg, "dmesg"},
                                                           {Form::kJournalPrecise, "journal"},
                                                           {Form::kJournalSeconds, "journal"},
                                                           {Form::kJournalMonotonic, "journal"},
                                                           {Form::kBare, "bare"}};
  for (const auto& file : files) {
    const auto original = runJson(fixture(file));
    for (const auto& [form, counter] : forms) {
      SCOPED_TRACE(::testing::Message() << file << " as " << counter << " " << static_cast<int>(form));
      const auto converted = runJson(convert(fixture(file), form));
      EXPECT_EQ(converted["input"][counter], converted["input"]["messages"]);
      ASSERT_EQ(converted["reports"].size(), original["reports"].size());
      for (size_t i = 0; i < original["reports"].size(); ++i) {
        const auto& want = original["reports"][i];
        const auto& got = converted["reports"][i];
        for (const char* key : {"verdict", "constraint", "domain", "candidates", "victim", "model_choice",
                                "runner_up", "group_kill", "kill_line_only", "invocation", "kernel"}) {
          EXPECT_EQ(got[key], want[key]) << key << " of report " << i + 1;
        }
      }
    }
  }
}

// --- what is not a report -----------------------------------------------------------------------------

TEST(ExplainOom, NoReportIsExitOneWithAReason) {
  for (const std::string& input : {std::string(), std::string("hello\n"), fixture("dictionary.txt"),
                                   std::string("\0\0\xff\xfe\n[ 1.0] \x1b[2J\n", 14)}) {
    const auto ran = run(input, false);
    EXPECT_EQ(ran.code, kExitFailure);
    EXPECT_TRUE(ran.out.empty());
    EXPECT_NE(ran.err.find("no kernel OOM report"), std::string::npos) << ran.err;
  }
  std::string noise;
  uint32_t state = 7;
  for (int i = 0; i < 100000; ++i) {
    state = state * 1664525 + 1013904223;
    noise.push_back(static_cast<char>(state >> 24));
  }
  EXPECT_EQ(run(noise, true).code, kExitFailure);
  ExplainOomOptions missing;
  missing.input = "/nonexistent/oom.txt";
  std::istringstream in;
  std::ostringstream out;
  std::ostringstream err;
  EXPECT_EQ(runExplainOom(missing, in, out, err), kExitFailure);
  EXPECT_NE(err.str().find("cannot read /nonexistent/oom.txt"), std::string::npos);
}

TEST(ExplainOom, CutReportIsExitOneAndTheWholeOnesAreStillExplained) {
  const std::string memcg = fixture("memcg.txt");
  const std::string cut = memcg.substr(0, memcg.find("6,453,"));  // the table's header, no row, no kill
  auto ran = run(cut, false);
  EXPECT_EQ(ran.code, kExitFailure);
  EXPECT_NE(ran.err.find("a report invoked by \"hog\" is incomplete: the input ends inside this report"),
            std::string::npos)
      << ran.err;
  ran = run(fixture("global.txt") + cut, true);
  EXPECT_EQ(ran.code, kExitFailure);
  const auto document = Json::parse(ran.out);
  ASSERT_EQ(document["reports"].size(), 1U);
  EXPECT_EQ(document["reports"][0]["verdict"], "match");
  ASSERT_EQ(document["incomplete"].size(), 1U);
  EXPECT_EQ(document["incomplete"][0]["invoking_comm"], "hog");
}

}  // namespace
}  // namespace oomguard::guardian::cli
