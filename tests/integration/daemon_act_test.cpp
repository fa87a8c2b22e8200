// The daemon's act path end to end: a cgroup tree in a temporary directory (the daemon only reads files
// and gets inotify events, so a plain directory stands in for cgroupfs), real processes in /proc, a
// recording actuator, and an injected monotonic clock so cooldowns need no sleeping. The io_context runs
// on the test's thread.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "daemon_test_support.hpp"
#include "guardian/io/kill_journal.hpp"
#include "guardian/daemon/daemon.hpp"
#include "guardian/exporter/metrics_prometheus.hpp"
#include "process_population.hpp"

namespace oomguard::testing {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;

class DaemonAct : public ::testing::Test {
 protected:
  fs::path root = fs::temp_directory_path() / ("oomguard-act-tree-" + std::to_string(::getpid()));
  ProcessPopulation population;
  pid_t small = 0;
  pid_t big = 0;
  pid_t medium = 0;
  uint64_t now_us = 1'000'000;
  uint64_t max_events = 0;
  boost::asio::io_context io{1};
  std::ostringstream log_text;
  std::ostringstream summary;
  guardian::exporter::NullMetrics metrics;
  guardian::exporter::Metrics* metrics_in_use = &metrics;  // a test may export for real instead
  bool dry_run = false;
  RecordingActuator actuator;
  std::unique_ptr<guardian::io::EventLog> log;
  std::unique_ptr<guardian::daemon::Daemon> daemon;

  void SetUp() override {
    constexpr size_t kMiB = size_t{1024} * 1024;
    small = population.spawn({8 * kMiB, 0, 0});
    big = population.spawn({96 * kMiB, 0, 0});
    medium = population.spawn({48 * kMiB, 0, 0});
    ASSERT_GT(small, 0);
    ASSERT_GT(big, 0);
    ASSERT_GT(medium, 0);
    // /pod (limited, 1 GiB) holds /pod/app (big, small) and /pod/side (medium).
    fs::create_directories(root / "pod/app");
    fs::create_directories(root / "pod/side");
    writeFile(root / "cgroup.procs", "");
    writeLimitedCgroup(root / "pod");
    writeFile(root / "pod/app/cgroup.procs", std::to_string(big) + "\n" + std::to_string(small) + "\n");
    writeFile(root / "pod/app/memory.max", "max\n");
    writeFile(root / "pod/app/memory.oom.group", "0\n");
    writeFile(root / "pod/side/cgroup.procs", std::to_string(medium) + "\n");
    writeFile(root / "pod/side/memory.max", "max\n");
    writeFile(root / "pod/side/memory.oom.group", "0\n");
  }

  void TearDown() override {
    daemon.reset();
    std::error_code ignored;
    fs::remove_all(root, ignored);
  }

  void start(const std::string& rules, const std::string& mode = "act", const std::string& extra = "") {
    const auto config = guardian::config::parseConfig(R"({"mode": ")" + mode + R"(", "refresh_interval_s": 3600, "read_kmsg": false,
        "history": {"dir": ")" + (root / "state").string() + R"("}, "host": {"pressure": null}, "policy": {"cooldown_s": 10, "max_kills_per_minute": 2},)" + extra + R"(
        "cgroups": )" + rules + "}", "test");
    guardian::daemon::DaemonOptions options;
    options.cgroup_root = root.string();
    options.handle_signals = false;
    options.protect_self = false;
    options.dry_run = dry_run;
    log = std::make_unique<guardian::io::EventLog>(log_text, [] { return std::chrono::system_clock::now(); });
    daemon = std::make_unique<guardian::daemon::Daemon>(io, config, options, *log, *metrics_in_use, actuator, summary,
                                                [this] { return now_us; });
    daemon->start();
  }

  // Reports a limit hit in /pod and returns the decision the daemon logged for it. Callers keep it
  // non-const: a member a decision lacks (no "target" without a kill) then reads as null and the
  // expectation fails, where const operator[] on a missing key is undefined behaviour (NDEBUG).
  Json hitLimit() {
    const size_t decisions = daemon->stats().decisions;
    writeFile(root / "pod/memory.events", eventsText(++max_events));
    for (int i = 0; i < 200 && daemon->stats().decisions == decisions; ++i) {
      io.run_for(std::chrono::milliseconds(10));
    }
    const auto decisions_logged = logLines(log_text.str(), "decision");
    return decisions_logged.empty() ? Json() : decisions_logged.back();
  }
};

constexpr const char* kKillWorstOnMax =
    R"([{"match": "/pod", "act": {"action": "kill-worst", "when": {"on_memory_max": true}}}, {"match": "/**"}])";

TEST_F(DaemonAct, KillWorstKillsTheKernelsVictimThenCoolsDown) {
  start(kKillWorstOnMax);
  Json first = hitLimit();
  ASSERT_FALSE(first.is_null()) << log_text.str();
  EXPECT_EQ(first["domain"]["cgroup"], "/pod");
  EXPECT_EQ(first["action"], "kill");
  EXPECT_EQ(first["result"], "killed");
  EXPECT_EQ(first["target"]["pid"], big);
  EXPECT_EQ(first["reason"], "memory.events max rose by 1");
  ASSERT_EQ(actuator.actions, (std::vector<std::string>{"kill " + std::to_string(big) + " grace 0"}));
  // The signal's time, then the release: signal_us is within reaction_us.
  ASSERT_TRUE(first.contains("signal_us")) << first.dump();
  EXPECT_LE(first["signal_us"].get<uint64_t>(), first["reaction_us"].get<uint64_t>());
  EXPECT_EQ(actuator.released, (std::vector<pid_t>{big}));

  // Same instant: the domain waits on its victim (the recorded kill did not really end the process):
  // one OOM, one victim.
  Json held = hitLimit();
  EXPECT_EQ(held["result"], "held");
  EXPECT_NE(held["held_by"].get<std::string>().find("waiting on victim " + std::to_string(big)), std::string::npos)
      << held.dump();
  EXPECT_EQ(actuator.actions.size(), 1U);

  // A victim that never goes is waited on at most victim_wait_s (here 10 s, as cooldown_s).
  now_us += 10'000'001;
  Json again = hitLimit();
  EXPECT_EQ(again["result"], "killed");
  EXPECT_EQ(actuator.actions.size(), 2U);

  // The cap: 2 kills a minute across domains.
  now_us += 10'000'001;
  Json capped = hitLimit();
  EXPECT_EQ(capped["result"], "held");
  EXPECT_NE(capped["held_by"].get<std::string>().find("kill cap"), std::string::npos);
  EXPECT_EQ(actuator.actions.size(), 2U);

  // Each kill is in the history on disk, once, with what it took and why; the held decisions are not.
  const auto history = guardian::io::readKillJournal((root / "state").string());
  ASSERT_TRUE(history) << history.error().describe();
  ASSERT_EQ(history.value().records.size(), 2U);
  for (const auto& record : history.value().records) {
    EXPECT_EQ(record["killer"], "oomguard");
    EXPECT_EQ(record["kind"], "kill");
    EXPECT_EQ(record["pid"], big);
    EXPECT_EQ(record["domain"], "/pod");
    EXPECT_EQ(record["policy"], "kill-worst");
    EXPECT_FALSE(record["time"].get<std::string>().empty());
  }
}

TEST_F(DaemonAct, PreferenceAvoidMovesTheVictimElsewhere) {
  start(R"([{"match": "/pod", "act": {"action": "kill-worst", "when": {"on_memory_max": true}}},
            {"match": "/pod/app", "preference": "avoid"}, {"match": "/**"}])");
  Json decision = hitLimit();
  EXPECT_EQ(decision["target"]["pid"], medium) << decision.dump();
  // The kernel's own ranking is unchanged: big is still its victim.
  EXPECT_EQ(decision["victim"]["pid"], big);
}

// The line of `family` whose labels include every one of `labels` (name="value"), or "".
std::string seriesLine(const std::string& exposition, const std::string& family, const std::vector<std::string>& labels) {
  std::istringstream lines(exposition);
  std::string line;
  while (std::getline(lines, line)) {
    if (!line.starts_with(family + "{")) {
      continue;
    }
    if (std::all_of(labels.begin(), labels.end(), [&](const std::string& label) { return line.find(label) != std::string::npos; })) {
      return line;
    }
  }
  return "";
}

TEST_F(DaemonAct, AReleasedVictimLetsTheNextKillFollowAtOnce) {
  start(kKillWorstOnMax);
  EXPECT_EQ(hitLimit()["target"]["pid"], big);
  // The victim really goes (here by the test's hand): no fixed cooldown holds the next one back.
  ASSERT_EQ(::kill(big, SIGKILL), 0);
  ::waitpid(big, nullptr, 0);
  Json next = hitLimit();  // same instant on the injected clock
  EXPECT_EQ(next["result"], "killed") << next.dump();
  EXPECT_EQ(next["target"]["pid"], medium);
  EXPECT_FALSE(logLines(log_text.str(), "victim_released").empty());
}

TEST_F(DaemonAct, TheKernelsVictimInProgressIsNeverFollowedByAnInnocent) {
  // Seen in the VM: at the max event the kernel was already killing the leaker, and oomguard killed
  // the next task as well. The kernel's own rule: one OOM, one victim.
  start(kKillWorstOnMax);
  std::string events = "low 0\nhigh 0\nmax " + std::to_string(++max_events) + "\noom 1\noom_kill 1\noom_group_kill 0\n";
  writeFile(root / "pod/memory.events", events);
  for (int i = 0; i < 50; ++i) {
    io.run_for(std::chrono::milliseconds(10));
  }
  events = "low 0\nhigh 0\nmax " + std::to_string(++max_events) + "\noom 1\noom_kill 1\noom_group_kill 0\n";
  const size_t decisions = daemon->stats().decisions;
  writeFile(root / "pod/memory.events", events);
  for (int i = 0; i < 200 && daemon->stats().decisions == decisions; ++i) {
    io.run_for(std::chrono::milliseconds(10));
  }
  const auto lines = logLines(log_text.str(), "decision");
  ASSERT_FALSE(lines.empty()) << log_text.str();
  EXPECT_EQ(lines.back()["result"], "held") << lines.back().dump();
  EXPECT_NE(lines.back()["held_by"].get<std::string>().find("the kernel's victim"), std::string::npos);
  EXPECT_TRUE(actuator.actions.empty()) << "nothing killed while the kernel's victim is in progress";
}

TEST_F(DaemonAct, AHostDecisionSeesAProcessThatStartedAfterTheLastRefresh) {
  // The typical fast leaker starts after the background ranking: a host decision once re-read only
  // that ranking's top and could not see it.
  fs::create_directories(root / "other");
  writeFile(root / "other/cgroup.procs", "");
  writeFile(root / "other/memory.max", "max\n");
  writeFile(root / "other/memory.events", eventsText(0));
  start(R"([{"match": "/**"}])", "observe");  // refresh_interval_s 3600: no refresh after start
  constexpr size_t kGiB = size_t{1024} * 1024 * 1024;
  const pid_t newcomer = population.spawn({kGiB + kGiB / 2, 0, 0});
  ASSERT_GT(newcomer, 0);
  const size_t decisions = daemon->stats().decisions;
  writeFile(root / "other/memory.events", eventsText(1));  // no limit above /other: the host decides
  for (int i = 0; i < 300 && daemon->stats().decisions == decisions; ++i) {
    io.run_for(std::chrono::milliseconds(10));
  }
  const auto lines = logLines(log_text.str(), "decision");
  ASSERT_FALSE(lines.empty()) << log_text.str();
  const Json& decision = lines.back();
  EXPECT_EQ(decision["domain"]["kind"], "host");
  EXPECT_EQ(decision["victim"]["pid"], newcomer) << "1.5 GiB, the largest process here, started after the refresh: "
                                                 << decision.dump();
}

TEST_F(DaemonAct, ALevelThresholdIsReadBetweenRefreshesAsTheRoomShrinks) {
  // Once, level thresholds were read only at the refresh (here every hour): a leak passed them and
  // reached the OOM in between. Now the next reading is due when the room could be gone.
  writeFile(root / "pod/memory.current", "700000000\n");  // 1 GiB limit, 15 %: ~213 MB of room
  start(R"([{"match": "/pod", "act": {"action": "kill-worst", "when": {"headroom_below": 0.15}}}, {"match": "/**"}])");
  const uint64_t reads_at_start = daemon->stats().level_reads;
  EXPECT_GE(reads_at_start, 1U);
  // ~213 MB at the assumed 512 MiB/s lasts ~0.4 s: the next reading is due in ~0.2 s, not in an hour.
  now_us += 250'000;
  // The leak is real (the cgroup tree here is a fixture, the host is not): memory.current of a memcg
  // rises only by pages the host allocates, and the daemon watches memcg levels through the host's
  // allocations (/proc/vmstat), so the 250 MB are allocated and touched here.
  const std::vector<char> leak(250'000'000, 1);
  writeFile(root / "pod/memory.current", "950000000\n");  // 11.5 % headroom: crossed
  for (int i = 0; i < 300 && daemon->stats().decisions == 0; ++i) {
    io.run_for(std::chrono::milliseconds(10));
  }
  const auto lines = logLines(log_text.str(), "decision");
  ASSERT_FALSE(lines.empty()) << "no reading between refreshes: " << log_text.str();
  EXPECT_EQ(lines.back()["trigger"]["kind"], "threshold");
  EXPECT_EQ(lines.back()["result"], "killed");
  EXPECT_EQ(lines.back()["target"]["pid"], big);
  EXPECT_GT(daemon->stats().level_reads, reads_at_start);
  EXPECT_EQ(leak[leak.size() / 2], 1);  // the leak stays allocated (and not optimised away) until here
}

TEST_F(DaemonAct, TheExportedGuardianRankingIsTheGuardiansOrderNotTheKernels) {
  // Once, ranking="oomguard" was a copy of the kernel's order although protections change it.
  guardian::exporter::PrometheusMetrics exporter(10, "test", "test");
  metrics_in_use = &exporter;
  start(R"([{"match": "/pod", "act": {"action": "kill-worst", "when": {"on_memory_max": true}}},
            {"match": "/pod/app", "preference": "avoid"}, {"match": "/**"}])");
  const std::string text = exporter.render();
  const auto kernel_first = seriesLine(text, "oomguard_victim_rank", {"domain=\"/pod\"", "ranking=\"kernel\"", "rank=\"1\""});
  const auto ours_first = seriesLine(text, "oomguard_victim_rank", {"domain=\"/pod\"", "ranking=\"oomguard\"", "rank=\"1\""});
  ASSERT_FALSE(kernel_first.empty()) << text;
  ASSERT_FALSE(ours_first.empty()) << text;
  EXPECT_NE(kernel_first.find("cgroup=\"/pod/app\""), std::string::npos) << kernel_first;  // big
  EXPECT_NE(ours_first.find("cgroup=\"/pod/side\""), std::string::npos) << ours_first;     // medium: /pod/app is avoided
  // And the decision agrees with the exported order.
  Json decision = hitLimit();
  EXPECT_EQ(decision["target"]["pid"], medium);
  daemon.reset();
}

TEST_F(DaemonAct, DryRunDecidesWithTheProtectionsItWouldHaveWritten) {
  // /pod/app is "critical" (-998): act mode writes that adj and the model reads it back, so big is no
  // longer the victim. Dry-run writes nothing; it once named big anyway. It must name medium too.
  dry_run = true;
  start(R"([{"match": "/pod", "act": {"action": "kill-worst", "when": {"on_memory_max": true}}},
            {"match": "/pod/app", "protection": "critical"}, {"match": "/**"}])");
  Json decision = hitLimit();
  ASSERT_FALSE(decision.is_null()) << log_text.str();
  EXPECT_EQ(decision["result"], "dry_run") << decision.dump();
  EXPECT_EQ(decision["target"]["pid"], medium) << decision.dump();
  EXPECT_EQ(decision["victim"]["pid"], medium) << "the model's next victim, with the protection in it";
  // Protections are logged once per pid, not again at every refresh.
  EXPECT_EQ(logLines(log_text.str(), "protection").size(), 2U) << log_text.str();
  // A dry run kills nothing, so its history is empty.
  const auto history = guardian::io::readKillJournal((root / "state").string());
  ASSERT_TRUE(history);
  EXPECT_TRUE(history.value().records.empty());
}

TEST_F(DaemonAct, OomGroupVictimIsKilledAsACgroup) {
  writeFile(root / "pod/app/memory.oom.group", "1\n");
  start(kKillWorstOnMax);
  Json decision = hitLimit();
  EXPECT_EQ(decision["action"], "kill_cgroup");
  EXPECT_EQ(decision["cgroup"], "/pod/app");
  EXPECT_EQ(actuator.actions, (std::vector<std::string>{"kill-cgroup /pod/app"}));
  const auto history = guardian::io::readKillJournal((root / "state").string());
  ASSERT_TRUE(history);
  ASSERT_EQ(history.value().records.size(), 1U);
  EXPECT_EQ(history.value().records[0]["kind"], "group_kill");
  EXPECT_EQ(history.value().records[0]["cgroup"], "/pod/app");
}

TEST_F(DaemonAct, ObserveModeNeverActs) {
  start(kKillWorstOnMax, "observe");
  Json decision = hitLimit();
  EXPECT_EQ(decision["action"], "none");
  EXPECT_EQ(decision["result"], "observed");
  EXPECT_TRUE(actuator.actions.empty());
}

TEST_F(DaemonAct, BelowThresholdNoKill) {
  start(R"([{"match": "/pod", "act": {"action": "kill-worst", "when": {"headroom_below": 0.003}}}, {"match": "/**"}])");
  // memory.current is 1.07e9 of 1 GiB: 0.35 % headroom, above 0.3 %.
  Json decision = hitLimit();
  EXPECT_EQ(decision["result"], "below_threshold");
  EXPECT_TRUE(actuator.actions.empty());
}

TEST_F(DaemonAct, OmittedEverywhereMeansNoVictim) {
  start(R"([{"match": "/pod", "act": {"action": "kill-worst", "when": {"on_memory_max": true}}},
            {"match": "/pod/*", "preference": "omit"}, {"match": "/**"}])");
  Json decision = hitLimit();
  EXPECT_EQ(decision["result"], "no_victim");
  EXPECT_TRUE(actuator.actions.empty());
}

TEST_F(DaemonAct, LevelThresholdsAreCheckedWithoutAnEvent) {
  // 6.9 % headroom is below 10 %: the refresh finds it, no memory.events change needed.
  start(R"([{"match": "/pod", "act": {"action": "kill-worst", "when": {"headroom_below": 0.10}}}, {"match": "/**"}])");
  EXPECT_EQ(actuator.actions, (std::vector<std::string>{"kill " + std::to_string(big) + " grace 0"})) << log_text.str();
  EXPECT_NE(log_text.str().find(R"("trigger":{"kind":"threshold","cgroup":"/pod"})"), std::string::npos);
}

long livePanicOnOom() {
  std::ifstream in("/proc/sys/vm/panic_on_oom");
  long value = -1;
  in >> value;
  return value;
}

TEST_F(DaemonAct, SysctlDriftIsReportedInObserveModeAndNothingIsWritten) {
  const long other = (livePanicOnOom() + 1) % 3;
  start(kKillWorstOnMax, "observe", R"("sysctls": {"values": {"vm.panic_on_oom": )" + std::to_string(other) + "}},");
  EXPECT_NE(log_text.str().find(R"("event":"sysctl_drift","name":"vm.panic_on_oom","wanted":)" + std::to_string(other)),
            std::string::npos)
      << log_text.str();
  EXPECT_TRUE(actuator.actions.empty());
}

TEST_F(DaemonAct, SysctlsAreAppliedAtStartInActMode) {
  const long other = (livePanicOnOom() + 1) % 3;
  start(kKillWorstOnMax, "act", R"("sysctls": {"values": {"vm.panic_on_oom": )" + std::to_string(other) + "}},");
  EXPECT_EQ(actuator.actions, (std::vector<std::string>{"sysctl vm.panic_on_oom " + std::to_string(other)}));
  EXPECT_NE(log_text.str().find(R"("result":"applied")"), std::string::npos) << log_text.str();
}

// The warn stage: a warning line with the victim the rule would choose, the warn hook with the event on
// its stdin, and no kill while the act level is still ahead.
TEST_F(DaemonAct, AWarnLevelWarnsOnceRunsTheWarnHookAndKillsNothing) {
  const fs::path event_file = root / "warn-event.json";
  writeFile(root / "pod/memory.current", "800000000\n");  // 1 GiB limit: 25.5 % headroom, past 30 %, not 10 %
  start(R"([{"match": "/pod", "act": {"action": "kill-worst", "when": {"headroom_below": 0.10},
                                       "warn": {"headroom_below": 0.30}}}, {"match": "/**"}])",
        "act", R"("hooks": {"warn": {"argv": ["/bin/sh", "-c", "cat > )" + event_file.string() + R"("]}},)");
  for (int i = 0; i < 300 && logLines(log_text.str(), "hook").empty(); ++i) {
    io.run_for(std::chrono::milliseconds(10));
  }
  auto warnings = logLines(log_text.str(), "warning");
  ASSERT_EQ(warnings.size(), 1U) << log_text.str();
  Json warning = warnings.front();
  EXPECT_EQ(warning["domain"]["cgroup"], "/pod");
  EXPECT_EQ(warning["reason"], "headroom");
  EXPECT_EQ(warning["policy"], "kill-worst");
  EXPECT_EQ(warning["victim"]["pid"], big) << warning.dump();
  EXPECT_EQ(warning["hook"], "/bin/sh");
  Json hook = logLines(log_text.str(), "hook").front();
  EXPECT_EQ(hook["hook"], "warn");
  EXPECT_EQ(hook["result"], "ok") << hook.dump();
  std::ifstream in(event_file);
  const Json event = Json::parse(in, nullptr, false);
  ASSERT_FALSE(event.is_discarded()) << "the warn hook's stdin was not one JSON document";
  EXPECT_EQ(event["hook"], "warn");
  EXPECT_EQ(event["victim"]["pid"], big);
  EXPECT_NE(event["reading"].get<std::string>().find("headroom"), std::string::npos) << event.dump();
  EXPECT_TRUE(event.contains("oom_forecast_s"));
  // The same excursion, read again: no second warning; and no kill, the act level is still ahead.
  writeFile(root / "pod/memory.current", "810000000\n");
  const uint64_t reads = daemon->stats().level_reads;
  // Past the warn stage's interval (300 s) and the next reading of a domain watched through the host's
  // allocations (its safety net: every 6 refreshes, here 6 hours).
  now_us += 6 * 3'600'000'000ULL + 1'000'000;
  for (int i = 0; i < 300 && daemon->stats().level_reads == reads; ++i) {
    io.run_for(std::chrono::milliseconds(10));
  }
  EXPECT_GT(daemon->stats().level_reads, reads) << "not read again";
  EXPECT_EQ(logLines(log_text.str(), "warning").size(), 1U);
  EXPECT_EQ(daemon->stats().warnings, 1U);
  for (const auto& action : actuator.actions) {
    EXPECT_FALSE(action.starts_with("kill")) << action;
  }
}

TEST_F(DaemonAct, DryRunWarnsAndNamesTheHookItWouldRun) {
  const fs::path event_file = root / "warn-event.json";
  dry_run = true;
  writeFile(root / "pod/memory.current", "800000000\n");
  start(R"([{"match": "/pod", "act": {"action": "kill-worst", "when": {"headroom_below": 0.10},
                                       "warn": {"headroom_below": 0.30}}}, {"match": "/**"}])",
        "act", R"("hooks": {"warn": {"argv": ["/bin/sh", "-c", "cat > )" + event_file.string() + R"("]}},)");
  io.run_for(std::chrono::milliseconds(300));
  auto warnings = logLines(log_text.str(), "warning");
  ASSERT_EQ(warnings.size(), 1U) << log_text.str();
  EXPECT_EQ(warnings.front()["dry_run"], true);
  EXPECT_EQ(warnings.front()["hook"], "/bin/sh (not run: --dry-run)");
  EXPECT_TRUE(logLines(log_text.str(), "hook_start").empty());
  EXPECT_FALSE(fs::exists(event_file));
}

TEST_F(DaemonAct, AProcessRulesProtectionWinsOverItsCgroupRules) {
  // /pod/app's rule says 300 for big and small, /pod/side's 200 for medium; a process rule by comm and uid
  // says -500 for all three (children of this test: its comm, its uid). No cgroup rule's value is written.
  std::ifstream in("/proc/" + std::to_string(big) + "/comm");
  std::string comm;
  std::getline(in, comm);
  ASSERT_FALSE(comm.empty());
  dry_run = true;  // the adj is recorded, and read back by the model, without a write
  start(R"([{"match": "/pod", "act": {"action": "kill-worst", "when": {"on_memory_max": true}}},
            {"match": "/pod/app", "protection": 300}, {"match": "/pod/side", "protection": 200}, {"match": "/**"}])",
        "act", R"("processes": [{"comm": "^)" + comm + R"($", "uid": [)" + std::to_string(::getuid()) +
                   R"(], "protection": -500}],)");
  std::set<pid_t> by_process_rule;
  for (const auto& line : logLines(log_text.str(), "protection")) {
    EXPECT_TRUE(line.contains("process_rule")) << "a cgroup rule's protection was written: " << line.dump();
    if (line["oom_score_adj"] == -500 && line["process_rule"] == 0 && line["source"] == "config") {
      by_process_rule.insert(line["pid"].get<pid_t>());
    }
  }
  for (const pid_t pid : {big, small, medium}) {
    EXPECT_TRUE(by_process_rule.contains(pid)) << pid << " " << log_text.str();
  }
}

}  // namespace
}  // namespace oomguard::testing
