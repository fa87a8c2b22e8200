#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "guardian/cli/commands.hpp"
#include "guardian/io/node.hpp"
#include "guardian/text/format.hpp"
#include "policies/badness.hpp"
#include "policies/ranking.hpp"
#include "test_util.hpp"

namespace oomguard {
namespace {

using cgroupfs::ProcessSnapshot;
using policies::Candidate;
using testing::fixturePath;

ProcessSnapshot task(pid_t pid, uint64_t anon_kb, int adj) {
  ProcessSnapshot p;
  p.pid = pid;
  p.status.has_mm = true;
  p.status.kthread = false;
  p.status.rss_anon_kb = anon_kb;
  p.oom_score_adj = adj;
  return p;
}

std::vector<pid_t> order(const std::vector<Candidate>& candidates) {
  std::vector<pid_t> pids;
  for (const auto& candidate : candidates) {
    pids.push_back(candidate.pid);
  }
  return pids;
}

TEST(RankDomain, HighestFirstTiesToTheLaterScannedTask) {
  // 30 and 40 tie at 250 pages; the kernel replaces its choice on ">=", so the later one (40) wins.
  const std::vector<ProcessSnapshot> scan = {task(10, 400, 0), task(30, 1000, 0), task(20, 2000, 0), task(40, 1000, 0),
                                             task(50, 800, -1000)};
  const auto ranked = policies::rankDomain({scan, 100000, 100000, {6, 12, 0, "6.12"}, 4096});
  EXPECT_EQ(order(ranked), (std::vector<pid_t>{20, 40, 30, 10, 50}));
  EXPECT_FALSE(ranked.back().killable);
  EXPECT_EQ(ranked.back().points, policies::kUnkillablePoints);
  EXPECT_EQ(ranked.back().oom_score, 0);
}

TEST(MemcgTotalPages, LimitPlusSwapUnlessSwappinessZero) {
  const uint64_t mib = 1024 * 1024;
  // 256 MiB limit, swap.max 0: 65536 pages.
  EXPECT_EQ(policies::memcgTotalPages(256 * mib, cgroupfs::LimitBytes{0}, 1024 * mib, 60, 4096), 65536U);
  // swap.max "max": plus all of SwapTotal (here 64 MiB = 16384 pages).
  EXPECT_EQ(policies::memcgTotalPages(256 * mib, std::nullopt, 64 * mib, 60, 4096), 65536U + 16384U);
  // swap.max below SwapTotal: plus swap.max.
  EXPECT_EQ(policies::memcgTotalPages(256 * mib, cgroupfs::LimitBytes{32 * mib}, 64 * mib, 60, 4096), 65536U + 8192U);
  // vm.swappiness 0: swap is not counted.
  EXPECT_EQ(policies::memcgTotalPages(256 * mib, std::nullopt, 64 * mib, 0, 4096), 65536U);
  // At least 1 page.
  EXPECT_EQ(policies::memcgTotalPages(100, cgroupfs::LimitBytes{0}, 0, 60, 4096), 1U);
}

TEST(OomGroupCgroup, HighestFlaggedAncestorWithinTheDomain) {
  const auto flagged = [](std::string_view cgroup) { return cgroup == "/k/pod" || cgroup == "/k/pod/c1" || cgroup == "/k"; };
  const policies::OomDomain pod{policies::DomainKind::kMemcg, "/k/pod", 1000};
  const policies::OomDomain host{policies::DomainKind::kHost, "/", 1000};
  const policies::OomDomain container{policies::DomainKind::kMemcg, "/k/pod/c1", 1000};
  // Walk stops at the domain: /k is above /k/pod and does not count there.
  EXPECT_EQ(policies::oomGroupCgroup("/k/pod/c1", pod, flagged), std::optional<std::string>("/k/pod"));
  // In the host domain the walk goes to the root: /k is the highest.
  EXPECT_EQ(policies::oomGroupCgroup("/k/pod/c1", host, flagged), std::optional<std::string>("/k"));
  EXPECT_EQ(policies::oomGroupCgroup("/k/pod/c1", container, flagged), std::optional<std::string>("/k/pod/c1"));
  // Root victims and victims outside the domain: no group kill.
  EXPECT_EQ(policies::oomGroupCgroup("/", host, flagged), std::nullopt);
  EXPECT_EQ(policies::oomGroupCgroup("/other", pod, flagged), std::nullopt);
  EXPECT_EQ(policies::oomGroupCgroup("/x/y", host, flagged), std::nullopt);
}

// The fixture tree tests/fixtures/tree-basic: MemTotal 1004000 kB (251000 pages) + SwapTotal 262140 kB
// (65535 pages) = 316535 host pages, so oom_score_adj counts 316 pages a step on the host.
//   pid  comm       rss pages              swap  pte  adj    cgroup
//   100  nginx      10240+1024+0 = 11264   2048  100     0   /pods/a  (oom.group 1)
//   101  php-fpm    20480+512+256 = 21248     0   50   500   /pods/a
//   102  java       25600+2048 = 27648     1024  128  -500   /pods/b  (memory.max 128 MiB, swap.max max)
//   103  sidecar    512+256 = 768             0   10  1000   /pods/b
//   104  broken     (malformed status: skipped and counted)
//   105  guarded    51200                     0  150 -1000   /pods/b
//   106  batch job  76800                     0  200     0   /batch   (no limit)
//   107  defunct    zombie, no mm                            /batch
//   /pods: memory.max 256 MiB = 65536 pages, swap.max 0 -> totalpages 65536, 65 pages a step.
//   /pods/b: 128 MiB = 32768 pages + min(SwapTotal, max) 65535 -> 98303, 98 pages a step.
class FixtureTree : public ::testing::Test {
 protected:
  guardian::io::Node node{fixturePath("tree-basic/proc"), fixturePath("tree-basic/cgroup")};
  guardian::io::NodeFacts facts = node.readFacts().value();

  static std::vector<std::pair<pid_t, long>> pointsOf(const guardian::io::DomainRanking& ranking) {
    std::vector<std::pair<pid_t, long>> out;
    for (const auto& candidate : ranking.candidates) {
      out.emplace_back(candidate.pid, candidate.points);
    }
    return out;
  }
};

TEST_F(FixtureTree, HostDomain) {
  EXPECT_EQ(facts.host_totalpages, 316535U);
  const auto ranking = node.rankHost(facts, false);
  using P = std::pair<pid_t, long>;
  const long min = policies::kUnkillablePoints;
  EXPECT_EQ(pointsOf(ranking), (std::vector<P>{
                                   {103, 768 + 10 + 1000 * 316},        // 316778
                                   {101, 21248 + 50 + 500 * 316},       // 179298
                                   {106, 76800 + 200},                  // 77000
                                   {100, 11264 + 2048 + 100},           // 13412
                                   {102, 27648 + 1024 + 128 - 500 * 316},  // -129200
                                   {1, min}, {2, min}, {105, min}, {107, min}}));
  // The broken process is skipped and counted, the rest ranked.
  EXPECT_EQ(ranking.counters.malformed, 1U);
  ASSERT_FALSE(ranking.counters.errors.empty());
  EXPECT_NE(ranking.counters.errors.front().path.find("104/status"), std::string::npos);
  // oom_score: (1000 + points * 1000 / 316535) * 2 / 3.
  EXPECT_EQ(ranking.candidates[0].oom_score, 1333);  // (1000 + 1000) * 2 / 3
  EXPECT_EQ(ranking.candidates[1].oom_score, 1044);  // (1000 + 566) * 2 / 3
  EXPECT_EQ(ranking.candidates[2].oom_score, 828);   // (1000 + 243) * 2 / 3
  EXPECT_EQ(ranking.candidates[3].oom_score, 694);   // (1000 + 42) * 2 / 3
  EXPECT_EQ(ranking.candidates[4].oom_score, 394);   // (1000 - 408) * 2 / 3
}

TEST_F(FixtureTree, MemcgDomainPods) {
  const auto ranking = node.rankMemcg(facts, "/pods");
  ASSERT_TRUE(ranking.ok()) << ranking.error().describe();
  EXPECT_EQ(ranking.value().domain.totalpages, 65536U);
  using P = std::pair<pid_t, long>;
  EXPECT_EQ(pointsOf(ranking.value()), (std::vector<P>{
                                           {103, 778 + 1000 * 65},   // 65778
                                           {101, 21298 + 500 * 65},  // 53798
                                           {100, 13412},
                                           {102, 28800 - 500 * 65},  // -3700
                                           {105, policies::kUnkillablePoints}}));
  EXPECT_EQ(ranking.value().counters.malformed, 1U);
  // Cgroups come from the tree walk; oom_score stays on the host scale.
  EXPECT_EQ(ranking.value().processOf(ranking.value().candidates[0]).cgroup, std::optional<std::string>("/pods/b"));
  EXPECT_EQ(ranking.value().candidates[0].oom_score, 1333);
}

TEST_F(FixtureTree, MemcgDomainNestedWithSwap) {
  const auto ranking = node.rankMemcg(facts, "/pods/b");
  ASSERT_TRUE(ranking.ok()) << ranking.error().describe();
  EXPECT_EQ(ranking.value().domain.totalpages, 98303U);
  using P = std::pair<pid_t, long>;
  EXPECT_EQ(pointsOf(ranking.value()), (std::vector<P>{{103, 778 + 1000 * 98},   // 98778
                                                       {102, 28800 - 500 * 98},  // -20200
                                                       {105, policies::kUnkillablePoints}}));
}

TEST(EmptyDomain, AnEmptyMemcgDomainHasNoCandidates) {
  // A limited cgroup with no tasks ranks nothing: never the rest of the host.
  namespace fs = std::filesystem;
  const fs::path copy = fs::temp_directory_path() / ("oomguard-empty-" + std::to_string(::getpid()));
  fs::copy(fixturePath("tree-basic"), copy, fs::copy_options::recursive);
  fs::create_directories(copy / "cgroup/empty");
  std::ofstream(copy / "cgroup/empty/memory.max") << "67108864\n";
  std::ofstream(copy / "cgroup/empty/cgroup.procs") << "";
  guardian::io::Node node((copy / "proc").string(), (copy / "cgroup").string());
  const auto facts = node.readFacts().value();
  const auto ranking = node.rankMemcg(facts, "/empty");
  ASSERT_TRUE(ranking.ok()) << ranking.error().describe();
  EXPECT_TRUE(ranking.value().candidates.empty());
  EXPECT_TRUE(ranking.value().processes.empty());
  fs::remove_all(copy);
}

TEST_F(FixtureTree, NotADomain) {
  const auto unlimited = node.rankMemcg(facts, "/batch");
  ASSERT_FALSE(unlimited.ok());
  EXPECT_NE(unlimited.error().message.find("not an OOM domain"), std::string::npos);
  const auto missing = node.rankMemcg(facts, "/nope");
  ASSERT_FALSE(missing.ok());
  EXPECT_TRUE(missing.error().vanished());
}

TEST_F(FixtureTree, DomainsInTreeOrder) {
  cgroupfs::ReadCounters counters;
  const auto domains = node.listMemcgDomains(facts, counters);
  ASSERT_EQ(domains.size(), 2U);
  EXPECT_EQ(domains[0].cgroup, "/pods");
  EXPECT_EQ(domains[1].cgroup, "/pods/b");
}

TEST_F(FixtureTree, GroupKillResolution) {
  auto ranking = node.rankMemcg(facts, "/pods").value();
  auto find = [&](pid_t pid) -> cgroupfs::ProcessSnapshot& {
    return *std::find_if(ranking.processes.begin(), ranking.processes.end(),
                         [pid](const auto& process) { return process.pid == pid; });
  };
  EXPECT_EQ(node.groupKillCgroup(find(100), ranking.domain), std::optional<std::string>("/pods/a"));
  EXPECT_EQ(node.groupKillCgroup(find(102), ranking.domain), std::nullopt);
  // In the host domain too: /pods/a is the highest flagged cgroup below the root.
  const auto host = node.rankHost(facts, false);
  EXPECT_EQ(node.groupKillCgroup(find(101), host.domain), std::optional<std::string>("/pods/a"));
}

TEST_F(FixtureTree, TopJsonMatchesTheContract) {
  std::ostringstream out;
  std::ostringstream err;
  ASSERT_EQ(guardian::cli::runTop(node, {true, 2, "/pods", false}, out, err), 0) << err.str();
  EXPECT_EQ(out.str(),
            R"({"domain":{"kind":"memcg","cgroup":"/pods","totalpages":65536},"candidates":[)"
            R"({"rank":1,"pid":103,"comm":"sidecar","cgroup":"/pods/b","points":65778,"oom_score":1333,"oom_score_computed":1333,)"
            R"("oom_score_adj":1000,"rss_kb":3072,"swap_kb":0,"pgtables_kb":40,"killable":true,"group_kill_cgroup":null},)"
            R"({"rank":2,"pid":101,"comm":"php-fpm","cgroup":"/pods/a","points":53798,"oom_score":1044,"oom_score_computed":1044,)"
            R"("oom_score_adj":500,"rss_kb":84992,"swap_kb":0,"pgtables_kb":200,"killable":true,)"
            R"("group_kill_cgroup":"/pods/a"}]})"
            "\n");
  EXPECT_NE(err.str().find("skipped 1 malformed"), std::string::npos) << err.str();
}

// `top --all` shows the model's oom_score unless --kernel-scores reads the kernel's for every process;
// a limited listing reads it for its rows. The JSON, written row by row, is what text::jsonText makes
// of the same document, for a name with a quote and a byte that is not UTF-8 too.
TEST(TopAll, KernelScoresOnlyWhenAskedAndTheSameJsonAsAWholeDocument) {
  namespace fs = std::filesystem;
  const fs::path copy = fs::temp_directory_path() / ("oomguard-top-all-" + std::to_string(::getpid()));
  fs::remove_all(copy);
  fs::copy(fixturePath("tree-basic"), copy, fs::copy_options::recursive);
  std::ofstream(copy / "proc/103/oom_score") << "999\n";  // the kernel's number, unlike the model's 1333
  {
    std::ifstream in(copy / "proc/100/status");
    std::string status((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    status.replace(status.find("nginx"), 5, "ng\"in\xffx");
    std::ofstream(copy / "proc/100/status") << status;
  }
  auto top = [&](size_t limit, bool kernel_scores) {
    guardian::io::Node node((copy / "proc").string(), (copy / "cgroup").string());
    std::ostringstream out;
    std::ostringstream err;
    EXPECT_EQ(guardian::cli::runTop(node, {true, limit, "host", false, kernel_scores}, out, err), 0) << err.str();
    return out.str();
  };
  auto scoreOf103 = [](const std::string& text) {
    const auto document = nlohmann::json::parse(text);
    for (const auto& row : document.at("candidates")) {
      if (row.at("pid") == 103) {
        return row.at("oom_score").get<long>();
      }
    }
    return -1L;
  };
  const std::string all = top(0, false);
  EXPECT_EQ(scoreOf103(all), 1333);
  EXPECT_EQ(scoreOf103(top(0, true)), 999);
  EXPECT_EQ(scoreOf103(top(2, false)), 999);
  EXPECT_EQ(guardian::text::jsonText(nlohmann::ordered_json::parse(all)) + "\n", all);
  EXPECT_NE(all.find("\"comm\":\"ng\\\"in\xEF\xBF\xBDx\""), std::string::npos) << all;  // U+FFFD for the 0xff
  fs::remove_all(copy);
}

TEST_F(FixtureTree, ExplainMissingPidFailsClearly) {
  std::ostringstream out;
  std::ostringstream err;
  EXPECT_EQ(guardian::cli::runExplain(node, {4242, false, std::nullopt}, out, err), guardian::cli::kExitFailure);
  EXPECT_NE(err.str().find("no process 4242"), std::string::npos) << err.str();
  EXPECT_TRUE(out.str().empty());
}

TEST_F(FixtureTree, ExplainEveryDomain) {
  std::ostringstream out;
  std::ostringstream err;
  ASSERT_EQ(guardian::cli::runExplain(node, {101, true, std::nullopt}, out, err), 0) << err.str();
  const std::string json = out.str();
  // Host, then /pods (the only limited ancestor of /pods/a).
  EXPECT_NE(json.find(R"("domain":{"kind":"host","cgroup":"/","totalpages":316535})"), std::string::npos) << json;
  EXPECT_NE(json.find(R"("domain":{"kind":"memcg","cgroup":"/pods","totalpages":65536})"), std::string::npos) << json;
  EXPECT_NE(json.find(R"("points":179298,"rank":2)"), std::string::npos) << json;
  EXPECT_NE(json.find(R"("points":53798,"rank":2)"), std::string::npos) << json;
  EXPECT_NE(json.find(R"("group_kill_cgroup":"/pods/a","group_kill_pids":[100,101])"), std::string::npos) << json;
}

TEST_F(FixtureTree, ExplainSaysWhichRulesApply) {
  // A process rule by comm (101 is php-fpm, uid 0, no cmdline file: a cmdline rule cannot match), over
  // the cgroup rule of /pods/**.
  const std::string path = ::testing::TempDir() + "/explain-rules.json";
  {
    std::ofstream file(path);
    file << R"({"mode": "act",
      "processes": [{"cmdline": "php", "preference": "omit"}, {"comm": "^php-fpm$", "uid": 0, "preference": "avoid", "protection": "low"}],
      "cgroups": [{"match": "/pods/**", "preference": "prefer", "protection": "high"}]})";
  }
  std::ostringstream out;
  std::ostringstream err;
  ASSERT_EQ(guardian::cli::runExplain(node, {101, true, path}, out, err), 0) << err.str();
  const auto json = nlohmann::json::parse(out.str());
  const auto& rules = json["rules"];
  EXPECT_EQ(rules["process_rule"]["path"], "/processes/1") << rules.dump();
  EXPECT_EQ(rules["process_rule"]["match"], R"(comm "^php-fpm$", uid [0])");
  EXPECT_EQ(rules["cgroup_rule"]["path"], "/cgroups/0");
  EXPECT_EQ(rules["preference"]["value"], "avoid");
  EXPECT_EQ(rules["preference"]["source"], "process rule");
  EXPECT_EQ(rules["protection"]["oom_score_adj"], 500);
  EXPECT_EQ(rules["protection"]["source"], "process rule");
  // In words; and a bad config is refused with its path before anything is read.
  std::ostringstream text;
  ASSERT_EQ(guardian::cli::runExplain(node, {101, false, path}, text, err), 0) << err.str();
  EXPECT_NE(text.str().find("process rule /processes/1 (comm \"^php-fpm$\", uid [0]) matches"), std::string::npos)
      << text.str();
  {
    std::ofstream file(path);
    file << R"({"processes": [{"comm": "(", "preference": "avoid"}]})";
  }
  std::ostringstream refused;
  EXPECT_EQ(guardian::cli::runExplain(node, {101, false, path}, out, refused), guardian::cli::kExitUsage);
  EXPECT_NE(refused.str().find("/processes/0/comm"), std::string::npos) << refused.str();
  std::remove(path.c_str());
}

}  // namespace
}  // namespace oomguard
