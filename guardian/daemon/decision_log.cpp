#include "guardian/daemon/decision_log.hpp"

#include <cmath>
#include <optional>
#include <utility>

#include "guardian/kube/kubernetes_identity.hpp"
#include "guardian/text/format.hpp"

namespace oomguard::guardian::daemon {
namespace {

using Json = nlohmann::ordered_json;

Json triggerJson(const policies::Trigger& trigger) {
  Json json{{"kind", policies::toString(trigger.kind)}, {"cgroup", trigger.cgroup}};
  if (trigger.pressure_trigger) {
    json["resource"] = trigger.pressure_trigger->first;
    json["trigger"] = trigger.pressure_trigger->second;
  }
  if (trigger.some_avg10) {
    json["some_avg10"] = *trigger.some_avg10;
  }
  if (trigger.full_avg10) {
    json["full_avg10"] = *trigger.full_avg10;
  }
  if (trigger.kind == policies::Trigger::Kind::kMemoryEvent) {
    Json rose = Json::object();
    for (const auto& [key, delta] : trigger.rose) {
      rose[key] = delta;
    }
    json["rose"] = std::move(rose);
  }
  return json;
}

Json domainJson(const policies::OomDomain& domain) {
  return Json{{"kind", policies::toString(domain.kind)}, {"cgroup", domain.cgroup}, {"totalpages", domain.totalpages}};
}

}  // namespace

DecisionLog::DecisionLog(io::EventLog& log, const config::Config& config, LabelsOf labels_of, ForecastOf forecast_of)
    : log_(log), config_(config), labels_of_(std::move(labels_of)), forecast_of_(std::move(forecast_of)) {}

void DecisionLog::appendForecast(const std::string& domain, Json& line) const {
  if (!forecast_of_) {
    return;
  }
  if (const auto seconds = forecast_of_(domain)) {
    line["oom_forecast_s"] = std::round(*seconds * 10) / 10;
  }
}

Json DecisionLog::candidate(const policies::VictimCandidate& candidate) const {
  Json item{{"pid", candidate.pid},
            {"comm", candidate.comm},
            {"cgroup", candidate.cgroup.empty() ? Json(nullptr) : Json(candidate.cgroup)},
            {"points", candidate.points},
            {"oom_score_adj", candidate.oom_score_adj}};
  if (const auto labels = labels_of_(candidate.cgroup); !labels.pod.empty()) {
    item["namespace"] = labels.namespace_name;
    item["pod"] = labels.pod;
    item["container"] = labels.container;
  }
  return item;
}

Json DecisionLog::candidates(const std::vector<policies::VictimCandidate>& top) const {
  Json list = Json::array();
  for (size_t i = 0; i < top.size() && i < config_.log_candidates; ++i) {
    list.push_back(candidate(top[i]));
  }
  return list;
}

void DecisionLog::appendOutcome(const policies::Outcome& outcome, Json& line) {
  if (outcome.policy) {
    line["policy"] = policies::toString(*outcome.policy);
  }
  if (outcome.reason) {
    line["reason"] = outcome.reason->text;
  }
  if (outcome.chosen_because) {
    line["chosen_because"] = *outcome.chosen_because;
  }
  if (outcome.target) {
    const auto& victim = outcome.target->victim;
    Json target{{"pid", victim.pid}, {"comm", victim.comm}, {"cgroup", victim.cgroup}, {"points", victim.points}};
    if (outcome.target->pod_known) {
      target["namespace"] = outcome.target->namespace_name;
      target["pod"] = outcome.target->pod;
      target["container"] = outcome.target->container;
    }
    line["target"] = std::move(target);
  }
  line["action"] = policies::toString(outcome.action);
  if (outcome.killed_cgroup) {
    line["cgroup"] = *outcome.killed_cgroup;
  }
  if (outcome.sigterm_grace_ms) {
    line["sigterm_grace_ms"] = *outcome.sigterm_grace_ms;
  }
  line["result"] = policies::toString(outcome.result);
  if (outcome.held_by) {
    line["held_by"] = *outcome.held_by;
  }
  if (outcome.why) {
    line["why"] = *outcome.why;
  }
  if (outcome.detail) {
    line["detail"] = *outcome.detail;
  }
}

void DecisionLog::decision(const policies::Decision& decision, uint64_t now_us) {
  const std::string& domain = decision.domain.cgroup;
  uint64_t suppressed = 0;
  if (decision.outcome.result == policies::DecisionResult::kHeld) {
    auto& held = held_[domain];
    if (held.logged_us != 0 && now_us - held.logged_us < kHeldQuietUs) {
      ++held.suppressed;
      return;
    }
    suppressed = std::exchange(held.suppressed, 0);
    held.logged_us = now_us;
  } else if (const auto found = held_.find(domain); found != held_.end()) {
    suppressed = found->second.suppressed;
    held_.erase(found);
  }
  if (decision.outcome.result == policies::DecisionResult::kNoData) {
    // The domain could not be read: what was tried, and why it failed.
    log_.write("decision", Json{{"trigger", triggerJson(decision.trigger)},
                                {"domain", Json{{"kind", policies::toString(decision.domain.kind)},
                                                {"cgroup", decision.domain.cgroup}}},
                                {"action", "none"},
                                {"result", "no_data"},
                                {"error", decision.error.value_or("")}});
    return;
  }
  Json line{{"trigger", triggerJson(decision.trigger)},
            {"domain", domainJson(decision.domain)},
            {"candidates", candidates(decision.candidates)},
            {"victim", decision.candidates.empty() ? Json(nullptr) : candidate(decision.candidates.front())},
            {"mode", decision.acting_mode ? "act" : "observe"},
            {"dry_run", decision.dry_run},
            {"reaction_us", decision.reaction_us}};
  if (decision.signal_us) {
    line["signal_us"] = *decision.signal_us;
  }
  appendOutcome(decision.outcome, line);
  appendForecast(domain, line);
  if (suppressed > 0) {
    line["held_suppressed"] = suppressed;
  }
  if (const auto& waiting = decision.waiting_on_victim) {
    line["waiting_on_victim"] = Json{{"pid", waiting->pid == 0 ? Json(nullptr) : Json(waiting->pid)},
                                     {"cgroup", waiting->cgroup},
                                     {"killed_by", waiting->by_kernel ? "kernel" : "oomguard"},
                                     {"ms_ago", decision.waiting_ms_ago}};
  }
  log_.write("decision", line);
}

void DecisionLog::nextVictim(const DomainState& state) {
  const auto& victim = state.history.empty() ? std::nullopt : state.history.back().victim;
  Json line{{"domain", domainJson(state.domain)}, {"victim", victim ? candidate(*victim) : Json(nullptr)}};
  appendForecast(state.domain.cgroup, line);
  log_.write("next_victim", line);
}

void DecisionLog::warning(const Warning& warning) {
  Json line{{"domain", domainJson(warning.domain)},
            {"reason", policies::toString(warning.crossing.kind)},
            {"reading", warning.crossing.text}};
  appendForecast(warning.domain.cgroup, line);
  line["policy"] = policies::toString(warning.policy);
  line["victim"] = warning.victim ? candidate(*warning.victim) : Json(nullptr);
  line["chosen_because"] = warning.chosen_because;
  line["hook"] = warning.hook ? Json(*warning.hook + (warning.dry_run ? " (not run: --dry-run)" : "")) : Json(nullptr);
  if (warning.dry_run) {
    line["dry_run"] = true;
  }
  log_.write("warning", line);
}

std::string DecisionLog::kernelKillText(const KernelKillCheck& checked) {
  const auto& victim = checked.kill.victim;
  const auto kb = [](const std::optional<uint64_t>& value) {
    return value ? std::to_string(*value) + " kB" : std::string("?");
  };
  std::string text = "the kernel's OOM killer killed pid " + std::to_string(victim.pid) + " (" + victim.comm + "): " +
                     checked.kill.summary.constraint + ", OOM domain " +
                     (checked.domain == "/" ? std::string("the host") : checked.domain) +
                     (checked.domain_limit_bytes ? " (limit " + text::humanBytes(*checked.domain_limit_bytes) + ")"
                                                 : std::string()) +
                     "; anon-rss " +
                     kb(victim.anon_rss_kb) + ", file-rss " + kb(victim.file_rss_kb) + ", shmem-rss " +
                     kb(victim.shmem_rss_kb) + ", page tables " + kb(victim.pgtables_kb) + ", oom_score_adj " +
                     (victim.oom_score_adj ? std::to_string(*victim.oom_score_adj) : std::string("?"));
  if (victim.allocating_task) {
    text += "; the allocating task (vm.oom_kill_allocating_task)";
  }
  if (checked.result == PredictionCheck::kMatch) {
    text += "; oomguard had predicted it";
  } else if (checked.predicted) {
    text += "; oomguard had predicted pid " + std::to_string(checked.predicted->pid) + " (" + checked.predicted->comm + ")";
  }
  return text;
}

void DecisionLog::kernelReport(const OomReport& report) {
  if (const auto* checked = std::get_if<KernelKillCheck>(&report)) {
    const auto& kill = checked->kill;
    const auto& victim = kill.victim;
    // The pod and container by name when the API server has told, by uid and runtime ID always (they
    // are in the cgroup path the kubelet made).
    Json workload = nullptr;
    const std::string where = kill.summary.task_memcg.value_or(checked->domain);
    if (const auto identity = kube::identifyCgroup(where); identity.inPod()) {
      const auto labels = labels_of_(where);
      workload = Json{{"namespace", labels.namespace_name}, {"pod", labels.pod},       {"container", labels.container},
                      {"pod_uid", identity.pod_uid},        {"container_id", identity.container_id}};
    }
    log_.write("kernel_oom_kill",
               Json{{"constraint", kill.summary.constraint},
                    {"domain", checked->domain},
                    {"domain_limit_bytes", checked->domain_limit_bytes ? Json(*checked->domain_limit_bytes) : Json(nullptr)},
                    {"oom_memcg", kill.summary.oom_memcg ? Json(*kill.summary.oom_memcg) : Json(nullptr)},
                    {"task_memcg", kill.summary.task_memcg ? Json(*kill.summary.task_memcg) : Json(nullptr)},
                    {"victim", Json{{"pid", victim.pid},
                                    {"comm", victim.comm},
                                    {"anon_rss_kb", victim.anon_rss_kb.value_or(0)},
                                    {"file_rss_kb", victim.file_rss_kb.value_or(0)},
                                    {"shmem_rss_kb", victim.shmem_rss_kb.value_or(0)},
                                    {"oom_score_adj", victim.oom_score_adj ? Json(*victim.oom_score_adj) : Json(nullptr)}}},
                    {"allocating_task", victim.allocating_task},
                    {"report_rate_limited", kill.rate_limited},
                    {"invoked_by", kill.invocation.comm},
                    {"predicted", checked->predicted ? candidate(*checked->predicted) : Json(nullptr)},
                    {"prediction", toString(checked->result)},
                    {"workload", workload}});
  } else if (const auto* group = std::get_if<cgroupfs::KernelOomGroupKill>(&report)) {
    log_.write("kernel_oom_group_kill", Json{{"cgroup", group->cgroup}});
  } else if (const auto* member = std::get_if<cgroupfs::KernelGroupMemberKilled>(&report)) {
    log_.write("kernel_oom_group_member_killed",
               Json{{"cgroup", member->cgroup}, {"pid", member->process.pid}, {"comm", member->process.comm}});
  }
}

}  // namespace oomguard::guardian::daemon
