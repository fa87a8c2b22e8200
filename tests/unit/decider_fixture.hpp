// The Decider's test fixture: a fixture node (daemon_fixture.hpp) with a fake clock, the daemon's parts
// built from a mode-act config, and one decision in /pod as Daemon::decide makes it.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <memory>
#include <sstream>
#include <string>

#include "daemon_fixture.hpp"
#include "guardian/daemon/decider.hpp"
#include "guardian/daemon/executor.hpp"
#include "guardian/daemon/rankings.hpp"
#include "guardian/exporter/metrics.hpp"

namespace oomguard::guardian::daemon {

class DeciderTest : public ::testing::Test {
 protected:
  NodeFixture fixture;
  const pid_t big = ::getpid();    // the fixture's processes have the pids of live processes
  const pid_t medium = ::getppid();

  void SetUp() override {
    fixture.addProcess(big, "leaker", "/pod/app", 600 * 1024);
    fixture.addProcess(medium, "sidecar", "/pod/side", 200 * 1024);
  }

  // Builds the parts for `rules` (the "cgroups" array of a mode-act config) and ranks /pod from the files.
  void start(const std::string& rules, const std::string& extra = "") {
    config = config::parseConfig(R"({"mode": "act", "refresh_interval_s": 1, )" + extra + R"("cgroups": )" + rules + "}",
                                 "test");
    node = std::make_unique<io::Node>(fixture.procRoot(), fixture.cgroupRoot());
    options.proc_root = fixture.procRoot();
    options.cgroup_root = fixture.cgroupRoot();
    log = std::make_unique<io::EventLog>(log_text, [] { return std::chrono::system_clock::now(); });
    watch_set = std::make_unique<WatchSet>(io, *node, config, *log, stats, fixture.clock, listener);
    watch_set->add("/");
    rankings = std::make_unique<Rankings>(*node, config, stats, fixture.clock, [](const DomainState&, bool) {});
    hooks = std::make_unique<io::HookRunner>(io, [] { return monotonicNowUs(); });
    executor = std::make_unique<Executor>(*node, actuator, *hooks, config, options, *log, metrics, stats, fixture.clock);
    decider = std::make_unique<Decider>(*node, config, *watch_set, *rankings, *executor, workloads, stats);
    facts = node->readFacts().value();
  }

  // One decision in /pod at the fake clock's now, as Daemon::decide makes it.
  policies::Outcome actInPod() {
    executor->markSnapshot();
    auto state = rankings->rerankMemcg(facts, "/pod");
    EXPECT_TRUE(state.ok()) << state.error().describe();
    const config::ActRule* rule = decider->actRuleFor("/pod");
    EXPECT_NE(rule, nullptr);
    return decider->act("/pod", *state.value(), *rule, policies::DomainObservation{}, fixture.now_us, *executor);
  }

  static constexpr const char* kHeadroom =
      R"([{"match": "/pod", "act": {"action": "kill-worst", "when": {"headroom_below": 0.10}}}, {"match": "/**"}])";

  boost::asio::io_context io;
  config::Config config;
  DaemonOptions options;
  std::unique_ptr<io::Node> node;
  std::ostringstream log_text;
  std::unique_ptr<io::EventLog> log;
  DaemonStats stats;
  NoListener listener;
  FakeActuator actuator;
  exporter::NullMetrics metrics;
  const kube::Workloads* workloads = nullptr;
  io::NodeFacts facts;
  std::unique_ptr<WatchSet> watch_set;
  std::unique_ptr<Rankings> rankings;
  std::unique_ptr<io::HookRunner> hooks;
  std::unique_ptr<Executor> executor;
  std::unique_ptr<Decider> decider;
};

}  // namespace oomguard::guardian::daemon
