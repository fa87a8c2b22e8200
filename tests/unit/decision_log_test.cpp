// DecisionLog: the decision line's shape (DESIGN.md section 4) and the held-decision flood limit.
#include "guardian/daemon/decision_log.hpp"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

namespace oomguard::guardian::daemon {
namespace {

using Json = nlohmann::json;

std::vector<Json> lines(const std::string& text) {
  std::vector<Json> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    out.push_back(Json::parse(line));
  }
  return out;
}

policies::Decision held(const std::string& domain) {
  policies::Decision decision;
  decision.trigger = policies::Trigger{policies::Trigger::Kind::kThreshold, domain, {}, {}, {}, {}};
  decision.domain = policies::OomDomain{policies::DomainKind::kMemcg, domain, 1000};
  decision.acting_mode = true;
  decision.outcome.policy = policies::Action::kKillWorst;
  decision.outcome.reason = policies::Crossing{policies::CrossedBy::kHeadroom, "headroom 0.01 below 0.10 of memory.max"};
  decision.outcome.result = policies::DecisionResult::kHeld;
  decision.outcome.held_by = "waiting on victim 42";
  return decision;
}

// A DecisionLog writing into `text`, with the default config and no Kubernetes workloads.
struct LogInText {
  std::ostringstream text;
  io::EventLog log{text, [] { return std::chrono::system_clock::time_point{}; }};
  const config::Config config;
  DecisionLog decisions{log, config, [](const std::string&) { return kube::WorkloadLabels{}; }};
};

TEST(DecisionLog, TheLineKeepsItsFieldOrder) {
  LogInText out;
  auto& [text, log, config, decisions] = out;
  decisions.decision(held("/pod"), 1'000'000);
  const auto logged = lines(text.str());
  ASSERT_EQ(logged.size(), 1U);
  // nlohmann::json sorts keys when parsed: the order is checked in the raw text.
  const std::string raw = text.str();
  const std::vector<std::string> order = {"\"trigger\"", "\"domain\"", "\"candidates\"", "\"victim\"", "\"mode\"",
                                          "\"dry_run\"", "\"reaction_us\"", "\"policy\"", "\"reason\"", "\"action\"",
                                          "\"result\"", "\"held_by\""};
  size_t at = 0;
  for (const auto& key : order) {
    const size_t found = raw.find(key, at);
    ASSERT_NE(found, std::string::npos) << key << " missing or out of order in " << raw;
    at = found;
  }
  EXPECT_EQ(logged[0]["action"], "none");
  EXPECT_EQ(logged[0]["mode"], "act");
}

TEST(DecisionLog, RepeatedHeldDecisionsAreCountedNotLogged) {
  LogInText out;
  auto& [text, log, config, decisions] = out;
  const uint64_t t0 = 5'000'000;
  decisions.decision(held("/pod"), t0);
  for (uint64_t i = 1; i <= 9; ++i) {
    decisions.decision(held("/pod"), t0 + i * 100'000);  // the level watch's re-reads, 100 ms apart
  }
  decisions.decision(held("/other"), t0 + 500'000);  // another domain is not held back
  EXPECT_EQ(lines(text.str()).size(), 2U);
  decisions.decision(held("/pod"), t0 + DecisionLog::kHeldQuietUs);  // a second later: logged, with the count
  auto logged = lines(text.str());
  ASSERT_EQ(logged.size(), 3U);
  EXPECT_EQ(logged.back()["held_suppressed"], 9);
  // The victim is gone and the next decision kills: logged at once, nothing left to count.
  auto killed = held("/pod");
  killed.outcome.result = policies::DecisionResult::kKilled;
  decisions.decision(killed, t0 + DecisionLog::kHeldQuietUs + 1);
  logged = lines(text.str());
  ASSERT_EQ(logged.size(), 4U);
  EXPECT_FALSE(logged.back().contains("held_suppressed"));
}

TEST(DecisionLog, AGoneDomainsHeldDecisionsGoWithIt) {
  // A pod held once after a kill and then deleted: nothing of it stays (pods come and go for months).
  LogInText out;
  auto& [text, log, config, decisions] = out;
  const uint64_t t0 = 5'000'000;
  decisions.decision(held("/pod"), t0);
  decisions.decision(held("/pod"), t0 + 100'000);  // counted, not logged
  decisions.forgetDomain("/pod");
  // A new pod under the same path: its first held decision is its own, logged, with nothing counted.
  decisions.decision(held("/pod"), t0 + 200'000);
  const auto logged = lines(text.str());
  ASSERT_EQ(logged.size(), 2U) << text.str();
  EXPECT_FALSE(logged.back().contains("held_suppressed"));
}

TEST(DecisionLog, AGrowingDomainsLinesCarryItsTimeToOomForecast) {
  std::ostringstream text;
  io::EventLog log(text, [] { return std::chrono::system_clock::time_point{}; });
  const config::Config config;
  DecisionLog decisions(
      log, config, [](const std::string&) { return kube::WorkloadLabels{}; },
      [](const std::string& domain) { return domain == "/pod" ? std::optional<double>(41.26) : std::nullopt; });
  decisions.decision(held("/pod"), 1'000'000);
  decisions.decision(held("/other"), 1'000'000);
  DomainState state;
  state.domain.cgroup = "/pod";
  decisions.nextVictim(state);
  const auto logged = lines(text.str());
  ASSERT_EQ(logged.size(), 3U);
  EXPECT_EQ(logged[0]["oom_forecast_s"], 41.3) << "rounded to 0.1 s";
  EXPECT_FALSE(logged[1].contains("oom_forecast_s")) << "not growing: no field";
  EXPECT_EQ(logged[2]["event"], "next_victim");
  EXPECT_EQ(logged[2]["oom_forecast_s"], 41.3);
}

}  // namespace
}  // namespace oomguard::guardian::daemon
