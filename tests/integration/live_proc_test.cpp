// oomguard against the live /proc of this machine: the kernel's own /proc/<pid>/oom_score is the oracle.
#include <gtest/gtest.h>
#include <linux/capability.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <algorithm>
#include <map>
#include <sstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <iostream>

#include "guardian/io/features.hpp"
#include "cgroupfs/parse.hpp"
#include "common/run_command.hpp"
#include "policies/badness.hpp"
#include "process_population.hpp"

namespace oomguard::testing {
namespace {


long kernelOomScore(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/oom_score");
  long score = -1;
  in >> score;
  return score;
}

std::string readText(const std::string& path) {
  std::ifstream in(path);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

struct TopResult {
  uint64_t totalpages = 0;
  std::map<pid_t, nlohmann::json> candidates;
};

TopResult topAll() {
  const auto result = runCommand(std::string(OOMGUARD_BINARY) + " top --all --json --kernel-scores 2>/dev/null");
  EXPECT_EQ(result.exit_code, 0);
  TopResult top;
  const auto document = nlohmann::json::parse(result.out);
  top.totalpages = document.at("domain").at("totalpages").get<uint64_t>();
  for (const auto& candidate : document.at("candidates")) {
    top.candidates[candidate.at("pid").get<pid_t>()] = candidate;
  }
  return top;
}

// Lowering oom_score_adj below its current value needs CAP_SYS_RESOURCE.
bool canLowerOomScoreAdj() {
  const auto effective = guardian::io::ownEffectiveCapabilities();
  return effective && ((*effective >> CAP_SYS_RESOURCE) & 1U) != 0;
}

// One population for the whole suite: 33 idle children, about 2.5 GiB in all.
class LiveProc : public ::testing::Test {
 protected:
  static inline std::unique_ptr<ProcessPopulation> population;
  static inline std::vector<pid_t> spawned;

  static void TearDownTestSuite() {
    population.reset();
    spawned.clear();
  }

  static void SetUpTestSuite() {
    population = std::make_unique<ProcessPopulation>();
    const bool root = canLowerOomScoreAdj();
    if (!root) {
      std::cerr << "NARROWED: no CAP_SYS_RESOURCE here: the population uses oom_score_adj 0..1000 only; "
                   "negative values are covered by the unit tests and the VM lab\n";
    }
    constexpr size_t kMiB = 1024 * 1024;
    // Sizes from 0 to ~300 MiB, shared memory on some, adj across the whole range (lowering needs root).
    const int adjs_root[] = {-1000, -999, -500, -1, 0, 0, 1, 250, 500, 999, 1000};
    const int adjs_user[] = {0, 0, 1, 100, 250, 500, 750, 999, 1000, 0, 10};
    const auto& adjs = root ? adjs_root : adjs_user;
    for (size_t i = 0; i < 33; ++i) {
      ChildSpec spec;
      spec.anon_bytes = (i * 37 % 160) * kMiB + (i % 7) * 4096;
      spec.shmem_bytes = (i % 4 == 0) ? (i % 9 + 1) * kMiB : 0;
      spec.oom_score_adj = adjs[i % std::size(adjs)];
      const pid_t pid = population->spawn(spec);
      if (pid <= 0) {
        std::cerr << "could not start child " << i << "\n";
        continue;
      }
      spawned.push_back(pid);
    }
  }
};

// The kernel's oom_score comes from approximate per-CPU counters, /proc/<pid>/status from exact sums
// (see policies::perCpuCounterDriftPages). The model holds when the kernel's value lies within what
// our points give at the two ends of that drift band; most are equal outright.
struct ScoreCheck {
  size_t compared = 0;
  size_t exact = 0;
  std::vector<std::string> outside_band;
  std::vector<std::string> shown_differs;
};

ScoreCheck checkScores(const std::map<pid_t, nlohmann::json>& ranking, uint64_t totalpages,
                       const std::vector<pid_t>& only) {
  const long band = policies::perCpuCounterDriftPages(static_cast<int>(::sysconf(_SC_NPROCESSORS_ONLN)));
  const cgroupfs::KernelVersion kernel = cgroupfs::parseKernelRelease(readText("/proc/sys/kernel/osrelease")).value();
  ScoreCheck check;
  for (const auto& [pid, candidate] : ranking) {
    if (!only.empty() && std::find(only.begin(), only.end(), pid) == only.end()) {
      continue;
    }
    const long kernel_score = kernelOomScore(pid);
    if (kernel_score < 0) {
      continue;  // exited meanwhile
    }
    ++check.compared;
    const long computed = candidate.at("oom_score_computed").get<long>();
    const std::string who = "pid " + std::to_string(pid) + " (" + candidate.at("comm").get<std::string>() + ")";
    if (candidate.at("oom_score").get<long>() != kernel_score) {
      check.shown_differs.push_back(who);
    }
    if (computed == kernel_score) {
      ++check.exact;
      continue;
    }
    if (!candidate.at("killable").get<bool>()) {
      check.outside_band.push_back(who + ": unkillable but the kernel shows " + std::to_string(kernel_score));
      continue;
    }
    const long points = candidate.at("points").get<long>();
    const long low = policies::procOomScore(points - band, totalpages, kernel);
    const long high = policies::procOomScore(points + band, totalpages, kernel);
    if (kernel_score < low || kernel_score > high) {
      check.outside_band.push_back(who + ": points " + std::to_string(points) + " give " + std::to_string(low) + ".." +
                                   std::to_string(high) + ", kernel " + std::to_string(kernel_score));
    }
  }
  return check;
}

TEST_F(LiveProc, TopAllGivesEachProcessTheKernelsOomScore) {
  // A process whose memory changed between our read and the kernel's may be re-read; the spawned ones
  // are idle, so they must agree on the first or a later attempt, never differ for good.
  ASSERT_EQ(spawned.size(), 33U) << "the population did not start";
  ScoreCheck check;
  for (int attempt = 0; attempt < 3; ++attempt) {
    const auto result = topAll();
    check = checkScores(result.candidates, result.totalpages, spawned);
    if (check.outside_band.empty() && check.shown_differs.empty()) {
      break;
    }
  }
  EXPECT_EQ(check.compared, spawned.size());
  std::cerr << "oom_score: " << check.exact << " of " << check.compared
            << " spawned processes computed exactly; the rest within the per-CPU counter drift\n";
  for (const auto& failure : check.outside_band) {
    ADD_FAILURE() << failure;
  }
  for (const auto& failure : check.shown_differs) {
    ADD_FAILURE() << "shown oom_score differs from /proc: " << failure;
  }
}

TEST_F(LiveProc, EveryProcessOnTheHostMatchesTheKernel) {
  // Not only our children: every process visible in /proc, kernel threads and init included.
  ScoreCheck check;
  for (int attempt = 0; attempt < 3; ++attempt) {
    const auto result = topAll();
    check = checkScores(result.candidates, result.totalpages, {});
    if (check.outside_band.empty()) {
      break;
    }
  }
  EXPECT_GT(check.compared, spawned.size());
  std::cerr << "oom_score: " << check.exact << " of " << check.compared << " host processes computed exactly\n";
  EXPECT_TRUE(check.outside_band.empty()) << check.outside_band.front();
}

TEST_F(LiveProc, RankingOrderFollowsPoints) {
  const auto result = runCommand(std::string(OOMGUARD_BINARY) + " top --all --json --kernel-scores 2>/dev/null");
  ASSERT_EQ(result.exit_code, 0);
  const auto candidates = nlohmann::json::parse(result.out).at("candidates");
  bool seen_unkillable = false;
  long previous = LONG_MAX;
  for (const auto& candidate : candidates) {
    if (!candidate.at("killable").get<bool>()) {
      seen_unkillable = true;
      EXPECT_EQ(candidate.at("oom_score").get<long>(), 0);
      continue;
    }
    EXPECT_FALSE(seen_unkillable) << "a killable task after an unkillable one";
    EXPECT_LE(candidate.at("points").get<long>(), previous);
    previous = candidate.at("points").get<long>();
  }
}

TEST_F(LiveProc, ExplainAgreesWithTheKernel) {
  const pid_t pid = spawned.back();
  const auto result = runCommand(std::string(OOMGUARD_BINARY) + " explain " + std::to_string(pid) + " --json");
  ASSERT_EQ(result.exit_code, 0);
  const auto report = nlohmann::json::parse(result.out);
  EXPECT_EQ(report.at("pid").get<pid_t>(), pid);
  const long band = policies::perCpuCounterDriftPages(static_cast<int>(::sysconf(_SC_NPROCESSORS_ONLN)));
  const auto& host = report.at("domains").at(0);
  const long points = host.at("points").get<long>();
  const auto totalpages = host.at("domain").at("totalpages").get<uint64_t>();
  const cgroupfs::KernelVersion kernel{6, 0, 0, "6"};
  const long kernel_score = report.at("kernel_oom_score").get<long>();
  EXPECT_GE(kernel_score, policies::procOomScore(points - band, totalpages, kernel));
  EXPECT_LE(kernel_score, policies::procOomScore(points + band, totalpages, kernel));
  EXPECT_EQ(report.at("domains").at(0).at("domain").at("kind"), "host");
}

TEST(LiveProcCommand, ExplainOfAMissingPidExitsOne) {
  // pid_max is at most 2^22; this pid cannot exist.
  const auto result = runCommand(std::string(OOMGUARD_BINARY) + " explain 99999999 2>&1");
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_NE(result.out.find("no process 99999999"), std::string::npos) << result.out;
}

TEST(LiveProcCommand, BadUsageExitsTwo) {
  EXPECT_EQ(runCommand(std::string(OOMGUARD_BINARY) + " top --limit 0 2>/dev/null").exit_code, 2);
  EXPECT_EQ(runCommand(std::string(OOMGUARD_BINARY) + " frobnicate 2>/dev/null").exit_code, 2);
  EXPECT_EQ(runCommand(std::string(OOMGUARD_BINARY) + " top --domain nonsense 2>/dev/null").exit_code, 2);
  EXPECT_EQ(runCommand(std::string(OOMGUARD_BINARY) + " top --by size 2>/dev/null").exit_code, 2);
}

TEST(LiveProcCommand, DoctorRunsOnThisHost) {
  const auto result = runCommand(std::string(OOMGUARD_BINARY) + " doctor --json");
  ASSERT_EQ(result.exit_code, 0);
  const auto report = nlohmann::json::parse(result.out);
  std::ifstream panic_file("/proc/sys/vm/panic_on_oom");
  long panic_on_oom = -1;
  panic_file >> panic_on_oom;
  EXPECT_EQ(report.at("sysctls").at("vm.panic_on_oom").get<long>(), panic_on_oom);
  EXPECT_TRUE(report.at("features").at("pidfd_open").get<bool>());
  EXPECT_FALSE(report.at("flow").empty());
}

}  // namespace
}  // namespace oomguard::testing
