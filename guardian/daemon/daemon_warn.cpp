// The warn stage (Daemon::warn): a domain crossed its act rule's warn level. What it is told with: the
// victim the rule would choose now, from a fresh ranking of the domain; the domain's time-to-OOM
// forecast, with the crossing reading in it. Told where the operator looks: the log, the counter, an
// Event on the victim's pod, the warn hook. Nothing is killed here.
#include <cmath>
#include <sstream>

#include "guardian/daemon/daemon.hpp"

namespace oomguard::guardian::daemon {

namespace {

// "OOM domain /x: headroom 0.28 below 0.30 of memory.max; the limit in about 41 s at the current rate;
// kill-worst would choose pid 123 (leaker)" (the Event's message).
std::string warningText(const Warning& warning, std::optional<double> forecast_s) {
  std::ostringstream text;
  text << "OOM domain " << (warning.domain.cgroup == "/" ? std::string("the host") : warning.domain.cgroup)
       << ": " << warning.crossing.text;
  if (forecast_s) {
    text << "; the limit in about " << std::llround(*forecast_s) << " s at the current rate";
  }
  if (warning.victim) {
    text << "; " << policies::toString(warning.policy) << " would choose pid " << warning.victim->pid << " ("
         << warning.victim->comm << ")";
  }
  return text.str();
}

}  // namespace

void Daemon::warn(const Decider::Warned& warned) {
  const std::string& domain = warned.domain;
  const config::ActRule* rule = decider_.actRuleFor(domain);
  if (rule == nullptr || !rule->warn) {
    return;
  }
  const uint64_t now_us = clock_.monotonic_us();
  // The reading that crossed the level goes into the forecast first (the refresh's may be seconds old).
  const auto& seen = warned.observation;
  if (domain == "/" && seen.mem_total_kb && seen.mem_available_kb) {
    recordHostMemory(*seen.mem_total_kb, *seen.mem_available_kb, seen.swap_total_kb.value_or(0),
                     seen.swap_free_kb.value_or(0), now_us);
  } else if (domain != "/" && seen.memory_current_bytes && seen.memory_max_bytes) {
    recordDomainMemory(domain, *seen.memory_max_bytes, *seen.memory_current_bytes, now_us);
  }
  Warning warning;
  warning.crossing = warned.crossing;
  // An "observe" rule that only warns names the kill-worst choice.
  warning.policy = rule->action == policies::Action::kObserve ? policies::Action::kKillWorst : rule->action;
  warning.dry_run = options_.dry_run;
  if (config_.hooks.warn) {
    warning.hook = config_.hooks.warn->argv.front();
  }
  // The victim the rule would choose now.
  const DomainState* state = nullptr;
  if (domain == "/") {
    rankings_.rerankHost(facts_, Rankings::HostReread::kTopAndNewcomers);
    state = rankings_.find("/");
  } else if (auto ranked = rankings_.rerankMemcg(facts_, domain)) {
    state = ranked.value();
  }
  warning.domain =
      state != nullptr ? state->domain : policies::OomDomain{policies::DomainKind::kMemcg, domain, 0};
  if (rule->action == policies::Action::kPanic) {
    warning.chosen_because = "policy panic: no victim, the kernel would be crashed";
  } else if (state == nullptr || state->unread) {
    warning.chosen_because = "the domain could not be ranked: no victim named";
  } else {
    const auto choice = policies::chooseVictim(
        warning.policy, decider_.candidates(*state, warning.policy == policies::Action::kKillAllocating,
                                            /*resolve_groups=*/true));
    warning.victim = choice.victim;
    warning.chosen_because = choice.reason;
  }
  ++stats_.warnings;
  metrics_.countWarning(policies::toString(warning.crossing.kind));
  decision_log_.warning(warning);
  if (options_.dry_run) {
    return;
  }
  const auto forecast_s = oomForecastSeconds(domain);
  if (warning.victim && !warning.victim->cgroup.empty() && pods_.workloads() != nullptr) {
    const auto resolved = pods_.workloads()->resolve(warning.victim->cgroup);
    if (resolved.pod != nullptr) {
      pods_.reportEvent(*resolved.pod, "OomguardWarning", warningText(warning, forecast_s));
    }
  }
  nlohmann::ordered_json extra{{"reading", warning.crossing.text}};
  extra["oom_forecast_s"] = forecast_s ? nlohmann::ordered_json(std::round(*forecast_s * 10) / 10) : nullptr;
  if (!warning.victim) {
    extra["victim"] = nullptr;
  }
  executor_.runWarnHook(domain, *rule, warning.policy, warning.victim.value_or(policies::VictimCandidate{}),
                        policies::toString(warning.crossing.kind), std::move(extra));
}

}  // namespace oomguard::guardian::daemon
