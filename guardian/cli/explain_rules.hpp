// `oomguard explain PID --config FILE`: which of the operator's rules apply to a process, and what they
// give it, with the daemon's precedence: a process rule (the first that matches) over the process's cgroup
// rule (the first whose glob matches) over a pod's annotations (not read here).
#pragma once

#include <cstddef>
#include <nlohmann/json.hpp>
#include <optional>
#include <ostream>
#include <string>

#include "cgroupfs/types.hpp"
#include "guardian/config/config.hpp"
#include "guardian/io/node.hpp"

namespace oomguard::guardian::cli {

struct RuleMatch {
  std::optional<size_t> process_rule;  // index into config.processes
  std::optional<size_t> cgroup_rule;   // index into config.cgroups
  config::RulesApplied applied;        // what they give it, and from which
};

// The rules of `config` that `process` (its cgroup placed) matches; its command line read through `node`
// only when a process rule needs it.
RuleMatch matchRules(const config::Config& config, io::Node& node, const cgroupfs::ProcessSnapshot& process);
nlohmann::ordered_json rulesJson(const config::Config& config, const RuleMatch& match);
// Plain text, names and patterns made printable.
void printRules(const config::Config& config, const RuleMatch& match, const std::string& config_path, std::ostream& out);

}  // namespace oomguard::guardian::cli
