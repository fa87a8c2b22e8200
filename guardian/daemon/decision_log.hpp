// The one place a Decision, a Candidate or a kernel OOM report becomes a JSON log line (DESIGN.md
// section 4; the e2e checks and the docs read these lines, so their shape is a contract): "decision",
// "next_victim", "warning", "kernel_oom_kill", "kernel_oom_group_kill", "kernel_oom_group_member_killed", and the
// outcome fields of a "pod_pressure" line.
#pragma once

#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "guardian/config/config.hpp"
#include "guardian/daemon/oom_reports.hpp"
#include "guardian/daemon/rankings.hpp"
#include "guardian/io/event_log.hpp"
#include "guardian/kube/kubernetes_identity.hpp"
#include "policies/decision.hpp"

namespace oomguard::guardian::daemon {

// A warning: an act rule's warn stage crossed (config::WarnStage), and the victim the rule would choose now.
struct Warning {
  policies::OomDomain domain;
  policies::Crossing crossing;
  policies::Action policy = policies::Action::kKillWorst;
  std::optional<policies::VictimCandidate> victim;
  std::string chosen_because;  // why that victim, or why none
  std::optional<std::string> hook;  // the warn hook's executable, when one is configured
  bool dry_run = false;             // --dry-run: the hook is not run, no Event is sent
};

class DecisionLog {
 public:
  // The namespace/pod/container of a cgroup once its pod is known; empty otherwise.
  using LabelsOf = std::function<kube::WorkloadLabels(const std::string& cgroup)>;
  // A domain's time-to-OOM forecast in seconds ("/" = the host); nullopt while it is not growing.
  using ForecastOf = std::function<std::optional<double>(const std::string& domain)>;

  // `forecast_of` may be empty (no forecasts): then no line has "oom_forecast_s".
  DecisionLog(io::EventLog& log, const config::Config& config, LabelsOf labels_of, ForecastOf forecast_of = {});

  // One "decision" line, except a held decision repeating within kHeldQuietUs of the last logged held
  // decision of its domain (the level watch re-reads a crossed domain every 100 ms while a victim is in
  // progress): counted instead, and the domain's next logged decision says how many ("held_suppressed").
  void decision(const policies::Decision& decision, uint64_t now_us);
  static constexpr uint64_t kHeldQuietUs = 1'000'000;
  // The domain is gone: its held decisions not logged yet are dropped with it (a domain held once,
  // after a kill, and never decided again would keep its entry for ever).
  void forgetDomain(const std::string& domain) { held_.erase(domain); }
  void nextVictim(const DomainState& state);
  // One "warning" line: the domain, the level crossed, the time-to-OOM forecast, the policy and the victim
  // it would choose now, and the warn hook.
  void warning(const Warning& warning);
  void kernelReport(const OomReport& report);
  // One line of plain text about a kernel kill, for its Kubernetes Event: the victim, its memory, the
  // constraint and domain, and what oomguard had predicted.
  static std::string kernelKillText(const KernelKillCheck& checked);
  // The outcome's fields (policy, reason, chosen_because, target, action, ..., result, detail) appended
  // to `line` in the order DESIGN.md gives; a key already in `line` keeps its place.
  static void appendOutcome(const policies::Outcome& outcome, nlohmann::ordered_json& line);

 private:
  // The first config.log_candidates of `top`, with their pods' names once known.
  [[nodiscard]] nlohmann::ordered_json candidates(const std::vector<policies::VictimCandidate>& top) const;
  [[nodiscard]] nlohmann::ordered_json candidate(const policies::VictimCandidate& candidate) const;

  struct HeldLog {
    uint64_t logged_us = 0;
    uint64_t suppressed = 0;
  };
  io::EventLog& log_;
  const config::Config& config_;
  LabelsOf labels_of_;
  ForecastOf forecast_of_;
  // Adds "oom_forecast_s" (0.1 s resolution) to `line` when the domain is growing.
  void appendForecast(const std::string& domain, nlohmann::ordered_json& line) const;
  std::map<std::string, HeldLog> held_;  // by domain, while it has held decisions to count
};

}  // namespace oomguard::guardian::daemon
