// The Executor's hooks with real hook processes (/bin/sh) on a fixture node: the pre_kill hook runs
// between the decision and the signal, the kill follows its end or its timeout whatever it did, a kernel
// kill meanwhile means no second kill, and the post_kill hook runs once the victim is gone. The kill
// itself is recorded by the FakeActuator.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "daemon_fixture.hpp"
#include "guardian/daemon/executor.hpp"
#include "guardian/exporter/metrics.hpp"
#include "guardian/io/hooks.hpp"

namespace oomguard::guardian::daemon {
namespace {

using policies::DecisionResult;

std::string slurp(const std::filesystem::path& path) {
  std::ifstream in(path);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// A child process of `parent` (0: none), from /proc/<pid>/stat's ppid.
pid_t childOf(pid_t parent) {
  for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
    const std::string name = entry.path().filename();
    if (name.find_first_not_of("0123456789") != std::string::npos) {
      continue;
    }
    const std::string stat = slurp(entry.path() / "stat");
    const auto close = stat.rfind(')');
    if (close == std::string::npos) {
      continue;
    }
    std::istringstream fields(stat.substr(close + 2));
    std::string state;
    pid_t ppid = 0;
    fields >> state >> ppid;
    if (ppid == parent) {
      return std::stoi(name);
    }
  }
  return 0;
}

class ExecutorHooksTest : public ::testing::Test {
 protected:
  NodeFixture fixture;
  const pid_t big = ::getpid();
  const pid_t medium = ::getppid();
  std::filesystem::path dir = fixture.root / "hook-out";

  void SetUp() override {
    fixture.addProcess(big, "leaker", "/pod/app", 600 * 1024);
    fixture.addProcess(medium, "sidecar", "/pod/side", 200 * 1024);
    std::filesystem::create_directories(dir);
  }

  // A mode-act config whose "hooks" are `hooks` (JSON), and `extra` members.
  void start(const std::string& hooks, const std::string& extra = "") {
    config = config::parseConfig(R"({"mode": "act", )" + extra + R"("hooks": )" + hooks + "}", "test");
    node = std::make_unique<io::Node>(fixture.procRoot(), fixture.cgroupRoot());
    options.proc_root = fixture.procRoot();
    log = std::make_unique<io::EventLog>(log_text, [] { return std::chrono::system_clock::now(); });
    runner = std::make_unique<io::HookRunner>(io_context, [] { return monotonicNowUs(); });
    executor = std::make_unique<Executor>(*node, actuator, *runner, config, options, *log, metrics, stats, fixture.clock);
    executor->markSnapshot();
  }

  // A hook running `script` in /bin/sh, as JSON.
  std::string shell(const std::string& script, int timeout_ms = 2000) const {
    std::string escaped;
    for (const char c : script) {
      escaped += c == '"' ? std::string("\\\"") : std::string(1, c);
    }
    return R"({"argv": ["/bin/sh", "-c", ")" + escaped + R"("], "timeout_ms": )" + std::to_string(timeout_ms) + "}";
  }

  policies::Outcome kill(pid_t pid, const std::string& comm, const std::string& cgroup) {
    policies::VictimCandidate victim;
    victim.pid = pid;
    victim.comm = comm;
    victim.cgroup = cgroup;
    victim.points = 100;
    policies::Outcome outcome;
    config::ActRule rule;
    rule.action = policies::Action::kKillWorst;
    executor->kill("/pod", victim, rule, "headroom", fixture.now_us, outcome);
    return outcome;
  }

  // Turns the loop until `done` or 10 s; returns the milliseconds it took.
  template <class Done>
  int64_t turnUntil(Done done) {
    const auto start = std::chrono::steady_clock::now();
    for (int i = 0; i < 1000 && !done(); ++i) {
      io_context.restart();
      io_context.run_for(std::chrono::milliseconds(10));
    }
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start).count();
  }

  // Turns the loop for `ms`.
  void turnFor(int ms) {
    io_context.restart();
    io_context.run_for(std::chrono::milliseconds(ms));
  }

  [[nodiscard]] std::string killAction(pid_t pid) const { return "kill " + std::to_string(pid) + " grace 0"; }

  config::Config config;
  DaemonOptions options;
  std::unique_ptr<io::Node> node;
  std::ostringstream log_text;
  std::unique_ptr<io::EventLog> log;
  DaemonStats stats;
  FakeActuator actuator;
  exporter::NullMetrics metrics;
  boost::asio::io_context io_context;
  std::unique_ptr<io::HookRunner> runner;
  std::unique_ptr<Executor> executor;
};

TEST_F(ExecutorHooksTest, ThePreKillHookRunsFirstWithTheEventAndTheKillFollowsItsEnd) {
  start(R"({"pre_kill": )" +
        shell("cat > " + (dir / "event").string() + "; echo \"$OOMGUARD_PID $OOMGUARD_COMM $OOMGUARD_CGROUP\" > " +
              (dir / "env").string() + "; sleep 0.2") +
        "}");
  const auto outcome = kill(big, "leaker", "/pod/app");
  EXPECT_EQ(outcome.result, DecisionResult::kPreKillHook);
  EXPECT_TRUE(actuator.actions.empty()) << "killed before the hook ran";
  // The kill is under way: the domains are held, and a second decision finds them so.
  EXPECT_TRUE(executor->gate().refusal("/pod", fixture.now_us));
  EXPECT_TRUE(executor->gate().refusal("/", fixture.now_us));
  const int64_t took_ms = turnUntil([&] { return !actuator.actions.empty(); });
  EXPECT_EQ(actuator.actions, (std::vector<std::string>{killAction(big)}));
  EXPECT_GE(took_ms, 150) << "the kill did not wait for the hook";
  EXPECT_EQ(slurp(dir / "env"), std::to_string(big) + " leaker /pod/app\n");
  const auto event = nlohmann::json::parse(slurp(dir / "event"));
  EXPECT_EQ(event["hook"], "pre_kill");
  EXPECT_EQ(event["victim"]["pid"], big);
  EXPECT_EQ(event["domain"], "/pod");
  EXPECT_EQ(event["timeout_ms"], 2000);
  const std::string text = log_text.str();
  EXPECT_NE(text.find(R"("event":"hook","hook":"pre_kill","result":"ok")"), std::string::npos) << text;
  EXPECT_NE(text.find(R"("event":"kill","domain":"/pod","pid":)" + std::to_string(big)), std::string::npos) << text;
  EXPECT_NE(text.find(R"("result":"killed")"), std::string::npos) << text;
  EXPECT_EQ(stats.kills, 1U);
  // Held still, now by the victim until it is gone; counted once toward the kill cap.
  EXPECT_TRUE(executor->gate().refusal("/pod", fixture.now_us));
}

TEST_F(ExecutorHooksTest, AHangingFailingOrMissingHookNeverPreventsTheKill) {
  struct Case {
    std::string hook;
    const char* result;
  };
  const std::vector<Case> cases{
      {shell("sleep 30", 100), "timeout"},
      {shell("exit 7"), "failed"},
      {R"({"argv": ["/nonexistent/oomguard-pre-kill"]})", "missing"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.result);
    actuator.actions.clear();
    log_text.str("");
    start(R"({"pre_kill": )" + c.hook + "}");
    EXPECT_EQ(kill(big, "leaker", "/pod/app").result, DecisionResult::kPreKillHook);
    const int64_t took_ms = turnUntil([&] { return !actuator.actions.empty(); });
    EXPECT_EQ(actuator.actions, (std::vector<std::string>{killAction(big)}));
    EXPECT_LT(took_ms, 2000) << "the kill waited past the hook's timeout";
    EXPECT_NE(log_text.str().find(std::string(R"("result":")") + c.result + "\""), std::string::npos) << log_text.str();
  }
}

TEST_F(ExecutorHooksTest, AKernelKillInTheDomainWhileTheHookRunsMeansNoSecondKill) {
  start(R"({"pre_kill": )" + shell("sleep 0.3") + "}");
  EXPECT_EQ(kill(big, "leaker", "/pod/app").result, DecisionResult::kPreKillHook);
  // The kernel's OOM killer took the sidecar meanwhile: one OOM, one victim.
  executor->recordKernelKill("/pod/side", medium, fixture.now_us);
  turnUntil([&] { return log_text.str().find(R"("event":"kill")") != std::string::npos; });
  EXPECT_TRUE(actuator.actions.empty()) << "a second process killed for one OOM";
  const std::string text = log_text.str();
  EXPECT_NE(text.find("the kernel killed pid " + std::to_string(medium) + " in /pod/side while the pre_kill hook ran"),
            std::string::npos)
      << text;
  EXPECT_TRUE(executor->gate().refusal("/pod", fixture.now_us)) << "the kernel's victim still holds the domain";
}

TEST_F(ExecutorHooksTest, AnUnrelatedKernelKillOrTheHookItselfKilledStillMakesTheKill) {
  start(R"({"pre_kill": )" + shell("sleep 0.3") + "}");
  EXPECT_EQ(kill(big, "leaker", "/pod/app").result, DecisionResult::kPreKillHook);
  // Another pod's OOM: its oom_kill rise shows in every ancestor's hierarchical memory.events too.
  executor->recordKernelKill("/", 0, fixture.now_us);
  executor->recordKernelKill("/other-pod", 0, fixture.now_us);
  // The kernel killed the hook itself (oom_score_adj 1000): not the answer to this OOM.
  const pid_t hook = childOf(::getpid());
  ASSERT_GT(hook, 0);
  EXPECT_TRUE(runner->isHook(hook));
  executor->recordKernelKill("/", hook, fixture.now_us);
  turnUntil([&] { return log_text.str().find(R"("event":"kill")") != std::string::npos; });
  EXPECT_EQ(actuator.actions, (std::vector<std::string>{killAction(big)})) << log_text.str();
}

TEST_F(ExecutorHooksTest, AKillNotMadeNoLongerCountsTowardTheCap) {
  // max_kills_per_minute 1: the kill that the kernel's answered is refunded, so the next may be made.
  start(R"({"pre_kill": )" + shell("sleep 0.2") + "}", R"("policy": {"max_kills_per_minute": 1}, )");
  EXPECT_EQ(kill(big, "leaker", "/pod/app").result, DecisionResult::kPreKillHook);
  EXPECT_TRUE(executor->gate().refusal("/other", fixture.now_us)) << "the cap counts the kill under way";
  executor->recordKernelKill("/pod/app", 0, fixture.now_us);
  turnUntil([&] { return log_text.str().find(R"("event":"kill")") != std::string::npos; });
  EXPECT_TRUE(actuator.actions.empty());
  EXPECT_FALSE(executor->gate().refusal("/other", fixture.now_us)) << "a kill not made still counted";
}

TEST_F(ExecutorHooksTest, AKillThatFailsAfterItsHookFreesTheDomainAndTheCap) {
  start(R"({"pre_kill": )" + shell("true") + "}", R"("policy": {"max_kills_per_minute": 1}, )");
  actuator.fail_kills = true;
  EXPECT_EQ(kill(big, "leaker", "/pod/app").result, DecisionResult::kPreKillHook);
  turnUntil([&] { return log_text.str().find(R"("event":"kill")") != std::string::npos; });
  EXPECT_EQ(actuator.actions, (std::vector<std::string>{killAction(big)}));
  EXPECT_NE(log_text.str().find(R"("result":"failed")"), std::string::npos) << log_text.str();
  EXPECT_FALSE(executor->gate().refusal("/pod", fixture.now_us)) << "the next decision may try again";
}

TEST_F(ExecutorHooksTest, AVictimThatChangedDuringTheHookIsNotKilledAndFreesTheDomain) {
  start(R"({"pre_kill": )" + shell("sleep 0.2") + "}");
  EXPECT_EQ(kill(big, "leaker", "/pod/app").result, DecisionResult::kPreKillHook);
  fixture.setRss(big, "renamed", 600 * 1024);  // it exec'ed something else meanwhile
  turnUntil([&] { return log_text.str().find(R"("event":"kill")") != std::string::npos; });
  EXPECT_TRUE(actuator.actions.empty());
  EXPECT_NE(log_text.str().find(R"("result":"changed")"), std::string::npos) << log_text.str();
  EXPECT_FALSE(executor->gate().refusal("/pod", fixture.now_us));
}

TEST_F(ExecutorHooksTest, ThePostKillHookRunsOnceTheVictimIsGone) {
  // A real victim: a child that the FakeActuator "kills" (records) and this test then ends and reaps.
  const pid_t child = ::fork();
  if (child == 0) {
    ::pause();
    ::_exit(0);
  }
  ASSERT_GT(child, 0);
  fixture.addProcess(child, "victim", "/pod/app", 700 * 1024);
  start(R"({"post_kill": )" +
        shell("test -e /proc/$OOMGUARD_PID && echo alive > " + (dir / "seen").string() + " || echo gone > " +
              (dir / "seen").string()) +
        "}");
  EXPECT_EQ(kill(child, "victim", "/pod/app").result, DecisionResult::kKilled);
  executor->releaseVictims(fixture.now_us);
  turnFor(300);  // nothing runs while it lives
  EXPECT_FALSE(std::filesystem::exists(dir / "seen"));
  ::kill(child, SIGKILL);
  ::waitpid(child, nullptr, 0);
  executor->releaseVictims(fixture.now_us);
  turnUntil([&] { return log_text.str().find(R"("event":"hook","hook":"post_kill")") != std::string::npos; });
  EXPECT_EQ(slurp(dir / "seen"), "gone\n");
  EXPECT_NE(log_text.str().find(R"("hook":"post_kill","result":"ok")"), std::string::npos) << log_text.str();
}

TEST_F(ExecutorHooksTest, DryRunShowsTheHookAndRunsNothing) {
  options.dry_run = true;
  start(R"({"pre_kill": )" + shell("touch " + (dir / "ran").string()) + "}");
  const auto outcome = kill(big, "leaker", "/pod/app");
  EXPECT_EQ(outcome.result, DecisionResult::kDryRun);
  ASSERT_TRUE(outcome.detail);
  EXPECT_NE(outcome.detail->find("first the pre_kill hook /bin/sh"), std::string::npos) << *outcome.detail;
  turnFor(300);
  EXPECT_FALSE(std::filesystem::exists(dir / "ran"));
}

TEST_F(ExecutorHooksTest, StoppingMakesTheWaitingKillAtOnce) {
  start(R"({"pre_kill": )" + shell("sleep 30", 5000) + "}");
  EXPECT_EQ(kill(big, "leaker", "/pod/app").result, DecisionResult::kPreKillHook);
  turnUntil([&] { return runner->running() == 1; });
  executor->stopHooks();
  EXPECT_EQ(actuator.actions, (std::vector<std::string>{killAction(big)}));
  EXPECT_NE(log_text.str().find(R"("result":"cancelled")"), std::string::npos) << log_text.str();
  EXPECT_EQ(runner->running(), 0U);
}

}  // namespace
}  // namespace oomguard::guardian::daemon
