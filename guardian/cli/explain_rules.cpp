#include "guardian/cli/explain_rules.hpp"

#include "guardian/text/format.hpp"

namespace oomguard::guardian::cli {

using Json = nlohmann::ordered_json;

RuleMatch matchRules(const config::Config& config, io::Node& node, const cgroupfs::ProcessSnapshot& process) {
  RuleMatch match;
  size_t index = 0;
  const config::ProcessRule* by_process = config::processRuleFor(
      config.processes, process.status.comm, process.status.uid,
      [&] { return node.cmdline(process.pid, process.status.comm, /*may_read=*/true); }, &index);
  if (by_process != nullptr) {
    match.process_rule = index;
  }
  const config::CgroupRule* by_cgroup = process.cgroup ? config::ruleFor(config, *process.cgroup) : nullptr;
  if (by_cgroup != nullptr) {
    match.cgroup_rule = static_cast<size_t>(by_cgroup - config.cgroups.data());
  }
  match.applied = config::rulesApplied(by_process, by_cgroup);
  return match;
}

Json rulesJson(const config::Config& config, const RuleMatch& match) {
  Json rules{{"process_rule", nullptr}, {"cgroup_rule", nullptr}};
  if (match.process_rule) {
    rules["process_rule"] = Json{{"path", "/processes/" + std::to_string(*match.process_rule)},
                                 {"match", config.processes[*match.process_rule].text}};
  }
  if (match.cgroup_rule) {
    rules["cgroup_rule"] = Json{{"path", "/cgroups/" + std::to_string(*match.cgroup_rule)},
                                {"match", config.cgroups[*match.cgroup_rule].match}};
  }
  const config::RulesApplied& applied = match.applied;
  rules["preference"] =
      Json{{"value", policies::toString(applied.preference)}, {"source", applied.preference_source}};
  rules["protection"] =
      Json{{"oom_score_adj", applied.oom_score_adj ? Json(*applied.oom_score_adj) : Json(nullptr)},
           {"source", applied.protection_source}};
  rules["mode"] = config::toString(config.mode);
  return rules;
}

void printRules(const config::Config& config, const RuleMatch& match, const std::string& config_path,
                std::ostream& out) {
  out << "\nrules of " << text::printable(config_path) << " (mode " << config::toString(config.mode)
      << "):\n";
  if (match.process_rule) {
    out << "  process rule /processes/" << *match.process_rule << " ("
        << text::printable(config.processes[*match.process_rule].text) << ") matches\n";
  } else {
    out << "  no process rule matches\n";
  }
  if (match.cgroup_rule) {
    out << "  cgroup rule /cgroups/" << *match.cgroup_rule << " (match "
        << text::printable(config.cgroups[*match.cgroup_rule].match) << ") matches\n";
  } else {
    out << "  no cgroup rule matches\n";
  }
  const config::RulesApplied& applied = match.applied;
  out << "  preference " << policies::toString(applied.preference) << " (" << applied.preference_source
      << ")\n";
  if (applied.oom_score_adj) {
    out << "  protection: oom_score_adj " << *applied.oom_score_adj << " (" << applied.protection_source
        << (config.mode == config::Mode::kAct ? ", written in mode act" : ", not written: mode observe")
        << ")\n";
  } else {
    out << "  protection: none (oom_score_adj left as it is)\n";
  }
  out << "  (a pod's annotations are not read here: where these rules say nothing, a pod's may)\n";
}

}  // namespace oomguard::guardian::cli
