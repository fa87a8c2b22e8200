// explainOomReport() on reports written here (bare messages, laid out as kernel 6.12 prints them) for what
// the captured fixtures do not show: oom_score_adj changing the choice, unkillable tasks, ties, counter
// drift, a victim missing from the table, no table, swap in a memcg, mempolicy OOMs, other page sizes;
// and hostile task names through the text and JSON outputs.
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
#include "guardian/text/format.hpp"

namespace oomguard::guardian::cli {
namespace {

using Json = nlohmann::ordered_json;

struct Task {
  pid_t pid = 0;
  uint64_t anon_pages = 0;
  int adj = 0;
  std::string name;
  uint64_t swap_pages = 0;
  uint64_t pgtables_bytes = 8192;
};

struct Layout {
  std::string constraint = "CONSTRAINT_MEMCG";
  std::string swap_limit_kb = "0";
  bool table = true;
  uint64_t kb_per_page = 4;  // what the Killed process line says per page of the table
};

// A memcg OOM in /pods/a (memory.max 1 GiB = 262144 pages of 4 KiB: oom_score_adj counts 262 a step),
// or with layout.constraint another kind with the Mem-Info lines of a 512 MiB machine with 1 GiB swap.
std::string report(const std::vector<Task>& tasks, const Task& victim, const Layout& layout = {}) {
  const bool memcg = layout.constraint == "CONSTRAINT_MEMCG";
  std::string text =
      victim.name + " invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, oom_score_adj=0\n";
  text += "CPU: 0 UID: 0 PID: " + std::to_string(victim.pid) + " Comm: " + victim.name +
          " Not tainted 6.12.0 #1\n";
  if (memcg) {
    text += "memory: usage 1048576kB, limit 1048576kB, failcnt 5\nswap: usage 0kB, limit " +
            layout.swap_limit_kb + "kB, failcnt 0\nMemory cgroup stats for /pods/a:\n";
  } else {
    text +=
        "Mem-Info:\nNode 0 DMA free:1804kB present:15992kB managed:15360kB\n"
        "Node 0 DMA32 free:596kB present:507776kB managed:460096kB\nTotal swap = 1048576kB\n"
        "130942 pages RAM\n0 pages HighMem/MovableOnly\n12078 pages reserved\n";
  }
  if (layout.table) {
    text +=
        "Tasks state (memory values in pages):\n[  pid  ]   uid  tgid total_vm      rss rss_anon rss_file "
        "rss_shmem "
        "pgtables_bytes swapents oom_score_adj name\n";
    for (const auto& task : tasks) {
      char row[160];
      const auto pages = [](uint64_t value) { return static_cast<unsigned long long>(value); };
      std::snprintf(row, sizeof row, "[%7d] %5d %5d %8llu %8llu %8llu %8llu %9llu %8llu %8llu         %5d ",
                    task.pid, 0, task.pid, pages(task.anon_pages) + 100, pages(task.anon_pages),
                    pages(task.anon_pages), 0ULL, 0ULL, pages(task.pgtables_bytes), pages(task.swap_pages),
                    task.adj);
      text += row + task.name + "\n";
    }
  }
  text += "oom-kill:constraint=" + layout.constraint + ",nodemask=" + (memcg ? "(null)" : "0") +
          ",cpuset=/,mems_allowed=0," +
          (memcg ? "oom_memcg=/pods/a,task_memcg=/pods/a" : "global_oom,task_memcg=/") +
          ",task=" + victim.name + ",pid=" + std::to_string(victim.pid) + ",uid=0\n";
  text += std::string(memcg ? "Memory cgroup out of memory" : "Out of memory") + ": Killed process " +
          std::to_string(victim.pid) + " (" + victim.name +
          ") total-vm:1kB, anon-rss:" + std::to_string(victim.anon_pages * layout.kb_per_page) +
          "kB, file-rss:0kB, shmem-rss:0kB, UID:0 pgtables:" + std::to_string(victim.pgtables_bytes / 1024) +
          "kB oom_score_adj:" + std::to_string(victim.adj) + "\n";
  return text;
}

// Explains the first report of `text`; `scan` keeps the report the explanation points into.
OomExplanation explain(const std::string& text, cgroupfs::OomReportScan& scan,
                       const OomAssumptions& assumptions = {}) {
  scan = cgroupfs::scanOomReports(cgroupfs::splitKernelLog(text));
  EXPECT_EQ(scan.reports.size(), 1U);
  EXPECT_TRUE(scan.incomplete.empty());
  return scan.reports.empty() ? OomExplanation{} : explainOomReport(scan.reports[0], assumptions);
}

pid_t pidAt(const OomExplanation& explanation, const std::optional<size_t>& index) {
  return index ? explanation.ranking[*index].row.pid : 0;
}

TEST(OomVerdict, OomScoreAdjChangesTheChoice) {
  const Task big{10, 100000, 0, "big"};
  const Task favoured{20, 50000, 500, "favoured"};  // 50000 + 2 + 500 * 262
  const Task shielded{30, 900000, -1000, "sshd"};
  cgroupfs::OomReportScan scan;
  const auto explanation = explain(report({big, favoured, shielded}, favoured), scan);
  EXPECT_EQ(explanation.domain.domain.totalpages, 262144U);
  EXPECT_EQ(explanation.verdict, OomVerdict::kMatch);
  ASSERT_EQ(explanation.ranking.size(), 3U);
  EXPECT_EQ(explanation.ranking[0].terms.points, 50000 + 2 + 131000);
  EXPECT_EQ(explanation.ranking[0].terms.adj_points, 131000);
  EXPECT_EQ(pidAt(explanation, explanation.runner_up), 10);
  EXPECT_EQ(pidAt(explanation, explanation.first_without_adj), 10);
  EXPECT_TRUE(explanation.adj_changed_choice);
  EXPECT_TRUE(explanation.ranking_depends_on_totalpages);
  // oom_score_adj -1000: listed, never a candidate, last.
  EXPECT_FALSE(explanation.ranking[2].killable());
  EXPECT_EQ(explanation.ranking[2].row.name, "sshd");
  EXPECT_NE(explanation.adj_effect.find(
                "the victim's oom_score_adj 500 added 131000 points (500 x (262144 / 1000 = 262))"),
            std::string::npos)
      << explanation.adj_effect;
  EXPECT_NE(explanation.adj_effect.find(
                "without any oom_score_adj the first choice would have been pid 10 \"big\""),
            std::string::npos);
}

TEST(OomVerdict, TiesGoToTheTaskScannedLater) {
  const Task first{10, 5000, 0, "first"};
  const Task second{20, 5000, 0, "second"};
  cgroupfs::OomReportScan scan;
  auto explanation = explain(report({first, second}, second), scan);
  EXPECT_EQ(explanation.verdict, OomVerdict::kMatch);
  EXPECT_NE(explanation.why.find("tied with the runner-up pid 10 \"first\" at 5002 points"),
            std::string::npos);
  // The kernel naming the earlier one is a difference of 0 points: within any counter drift.
  explanation = explain(report({first, second}, first), scan);
  EXPECT_EQ(explanation.verdict, OomVerdict::kWithinDrift);
  EXPECT_EQ(pidAt(explanation, explanation.model_first), 20);
}

TEST(OomVerdict, CounterDriftOrAMismatch) {
  const Task victim{10, 100000, 0, "victim"};
  cgroupfs::OomReportScan scan;
  auto explanation = explain(report({victim, Task{20, 100050, 0, "close"}}, victim), scan);
  EXPECT_EQ(explanation.verdict, OomVerdict::kWithinDrift);
  EXPECT_EQ(explanation.drift_cpus, 1);  // 4 counters x 31 x 1 CPU = 124 pages >= 50
  EXPECT_NE(explanation.why.find("50 more than the victim's 100002"), std::string::npos) << explanation.why;
  explanation = explain(report({victim, Task{20, 150000, 0, "far"}}, victim), scan);
  EXPECT_EQ(explanation.verdict, OomVerdict::kMismatch);
  ASSERT_TRUE(explanation.drift_cpus);
  EXPECT_GE(policies::perCpuCounterDriftPages(*explanation.drift_cpus), 50000);
  EXPECT_LT(policies::perCpuCounterDriftPages(*explanation.drift_cpus - 1), 50000);
}

TEST(OomVerdict, VictimMissingOrNoTable) {
  const Task gone{10, 100000, 0, "gone"};
  const Task listed{20, 10, 0, "listed"};
  cgroupfs::OomReportScan scan;
  auto explanation = explain(report({listed}, gone), scan);
  EXPECT_EQ(explanation.verdict, OomVerdict::kVictimNotInTable);
  EXPECT_NE(explanation.why.find("among the listed tasks the model's first choice is pid 20 \"listed\""),
            std::string::npos);
  Layout no_table;
  no_table.table = false;
  explanation = explain(report({gone}, gone, no_table), scan);
  EXPECT_EQ(explanation.verdict, OomVerdict::kNoTaskTable);
  EXPECT_TRUE(explanation.ranking.empty());
  EXPECT_NE(explanation.why.find("vm.oom_dump_tasks is 0"), std::string::npos);
  EXPECT_EQ(explanation.page_size_source.rfind("assumed", 0), 0U);
}

TEST(OomVerdict, SwapInAMemcgIsAssumedAndSaidSo) {
  const Task adjusted{10, 1000, 100, "a"};
  const Task plain{20, 1000, 0, "b"};
  Layout unlimited;
  unlimited.swap_limit_kb = "9007199254740988";  // PAGE_COUNTER_MAX: swap.max "max"
  cgroupfs::OomReportScan scan;
  auto explanation = explain(report({adjusted, plain}, adjusted, unlimited), scan);
  EXPECT_EQ(explanation.domain.domain.totalpages, 262144U);  // assumed: swappiness 60, no swap
  ASSERT_EQ(explanation.domain.missing.size(), 2U);
  EXPECT_NE(explanation.domain.missing[0].find("assumed 60"), std::string::npos);
  EXPECT_NE(explanation.domain.missing[1].find("assumed 0 kB"), std::string::npos);
  EXPECT_NE(explanation.domain.formula.find("min(swap.max max, total swap 0 kB)"), std::string::npos);
  // Given: 1 GiB of swap counts in full.
  explanation =
      explain(report({adjusted, plain}, adjusted, unlimited), scan, {std::nullopt, 1048576, std::nullopt});
  EXPECT_EQ(explanation.domain.domain.totalpages, 524288U);
  EXPECT_EQ(explanation.ranking[0].terms.adj_points, 100 * 524);
  // vm.swappiness 0: swap is not counted.
  explanation = explain(report({adjusted, plain}, adjusted, unlimited), scan, {0L, 1048576, std::nullopt});
  EXPECT_EQ(explanation.domain.domain.totalpages, 262144U);
  EXPECT_NE(explanation.domain.formula.find("no swap (vm.swappiness 0)"), std::string::npos);
}

TEST(OomVerdict, MemoryPolicyAndHostDomainsFromMemInfo) {
  const Task task{10, 1000, 0, "t"};
  Layout policy;
  policy.constraint = "CONSTRAINT_MEMORY_POLICY";
  cgroupfs::OomReportScan scan;
  auto explanation = explain(report({task}, task, policy), scan);
  // (15992 + 507776) kB present = 130942 pages, + 1 GiB swap = 262144 pages.
  EXPECT_EQ(explanation.domain.scope, "mempolicy");
  EXPECT_EQ(explanation.domain.domain.totalpages, 130942U + 262144U);
  EXPECT_NE(explanation.constraint.find("memory policy"), std::string::npos);
  policy.constraint = "CONSTRAINT_NONE";
  explanation = explain(report({task}, task, policy), scan);
  EXPECT_EQ(explanation.domain.scope, "host");
  EXPECT_EQ(explanation.domain.domain.totalpages, 130942U - 12078U + 262144U);
}

TEST(OomVerdict, PageSizeInferredOrGiven) {
  const Task task{10, 1000, 0, "t", 0, 65536};
  Layout sixteen;
  sixteen.kb_per_page = 16;
  cgroupfs::OomReportScan scan;
  auto explanation = explain(report({task}, task, sixteen), scan);
  EXPECT_EQ(explanation.page_size_bytes, 16384U);
  EXPECT_EQ(explanation.domain.domain.totalpages, 65536U);  // 1 GiB of 16 KiB pages
  EXPECT_EQ(explanation.ranking[0].terms.points, 1000 + 4);
  explanation = explain(report({task}, task), scan, {std::nullopt, std::nullopt, 65536});
  EXPECT_EQ(explanation.page_size_bytes, 65536U);
  EXPECT_EQ(explanation.page_size_source, "given (--page-size)");
}

// --- hostile names ---------------------------------------------------------------------------------------

// /dev/kmsg's escaping of a message: every byte below ' ', at or above 127, and '\'.
std::string kmsgRecords(const std::string& bare) {
  std::istringstream in(bare);
  std::string out;
  std::string line;
  for (int seq = 1; std::getline(in, line); ++seq) {
    out += "6," + std::to_string(seq) + "," + std::to_string(1000 * seq) + ",-;";
    for (const char c : line) {
      const auto byte = static_cast<unsigned char>(c);
      if (byte < 0x20 || byte >= 0x7f || c == '\\') {
        char hex[8];
        std::snprintf(hex, sizeof hex, "\\x%02x", byte);
        out += hex;
      } else {
        out += c;
      }
    }
    out += "\n";
  }
  return out;
}

void expectSafeForATerminal(const std::string& out) {
  EXPECT_EQ(text::validUtf8(out), out);
  for (size_t i = 0; i < out.size(); ++i) {
    const auto byte = static_cast<unsigned char>(out[i]);
    EXPECT_TRUE(byte == '\n' || (byte >= 0x20 && byte != 0x7f)) << "byte " << int(byte) << " at " << i;
    if (byte == 0xc2 && i + 1 < out.size()) {
      const auto next = static_cast<unsigned char>(out[i + 1]);
      EXPECT_FALSE(next >= 0x80 && next <= 0x9f) << "a C1 control at " << i;
    }
  }
}

TEST(OomVerdict, HostileNamesNeitherBreakTheOutputNorReachTheTerminal) {
  const std::vector<std::string> names = {"\x1b]0;pwned\x07\x1b[31mred",
                                          "\xff\xfe(x",
                                          std::string("\xc2\x9b") + "2J",
                                          "tab\there",
                                          "sl) eep (x",
                                          "a) total-vm:1kB",
                                          "\\x41",
                                          ""};
  for (const auto& name : names) {
    const Task hostile{10, 90000, 0, name};
    const Task other{20, 100, 0, "other"};
    const std::string bare = report({other, hostile}, hostile);
    // A newline in a name: /dev/kmsg escapes it, so the record stays one line.
    const Task marked{10, 90000, 0, "NEWLINE"};
    std::string newline = kmsgRecords(report({other, marked}, marked));
    for (size_t at = newline.find("NEWLINE"); at != std::string::npos; at = newline.find("NEWLINE")) {
      newline.replace(at, 7, "new\\x0aline");
    }
    for (const auto& input : {bare, kmsgRecords(bare), newline}) {
      SCOPED_TRACE(text::printable(input.substr(0, 80)));
      std::istringstream in(input);
      std::ostringstream out;
      std::ostringstream err;
      ExplainOomOptions options;
      EXPECT_EQ(runExplainOom(options, in, out, err), kExitOk) << err.str();
      expectSafeForATerminal(out.str());
      expectSafeForATerminal(err.str());
      EXPECT_NE(out.str().find("match"), std::string::npos);
      std::istringstream json_in(input);
      std::ostringstream json_out;
      options.json = true;
      ASSERT_EQ(runExplainOom(options, json_in, json_out, err), kExitOk);
      const auto document = Json::parse(json_out.str());  // valid JSON whatever the names hold
      const auto& reported = document["reports"][0];
      EXPECT_EQ(reported["verdict"], "match");
      EXPECT_EQ(reported["victim"]["pid"], 10);
      EXPECT_EQ(reported["candidates"][0]["pid"], 10);
    }
  }
}

TEST(OomVerdict, NamesSurviveEveryByteThroughKmsgEscapes) {
  const std::string name = "\x1b[2J\x7f\\\xe2\x82\xac";
  const Task task{10, 1000, 0, name};
  cgroupfs::OomReportScan scan;
  const auto explanation = explain(kmsgRecords(report({task}, task)), scan);
  ASSERT_EQ(explanation.ranking.size(), 1U);
  EXPECT_EQ(explanation.ranking[0].row.name, name);
  EXPECT_EQ(scan.reports[0].victim.comm, name);
  EXPECT_EQ(explanation.verdict, OomVerdict::kMatch);
}

}  // namespace
}  // namespace oomguard::guardian::cli
