// Process rules (/processes): protections and preferences by what a process is, not where it runs, for
// hosts without containers (earlyoom's --prefer/--avoid/--ignore, nohang's name, cmdline and uid
// matchers). Patterns are RE2 (libre2): matching is linear in the text, so no pattern in a config can make
// it slow, and a pattern RE2 cannot compile is refused at load with its JSON path.
#pragma once

#include <sys/types.h>

#include <functional>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "policies/act.hpp"

namespace re2 {
class RE2;
}  // namespace re2

namespace oomguard::guardian::config {

// One rule: a process matches when every key the rule gives matches (comm and cmdline: an RE2 search,
// unanchored, as earlyoom's; anchor with ^ and $; uid: one of the listed real uids). The first matching
// rule applies, as for cgroup rules.
struct ProcessRule {
  std::shared_ptr<const re2::RE2> comm;     // "Name:" of /proc/<pid>/status (the kernel's comm)
  std::shared_ptr<const re2::RE2> cmdline;  // the command line as cmdlineText() gives it
  std::vector<uid_t> uids;                  // empty: any uid
  policies::Preference preference = policies::Preference::kNone;
  std::optional<int> oom_score_adj;         // "protection": written in mode act, like a cgroup rule's
  std::string text;                         // what it matches, as written: `comm "^java$", uid 1000`
};

// /processes (processes.cpp); throws ConfigError naming the JSON path.
std::vector<ProcessRule> parseProcessRules(const nlohmann::json& value);

// /proc/<pid>/cmdline as a rule matches it: the NUL after each argument read as a space, the last one
// dropped (as `ps` and `pgrep -f` show it). Other bytes stay as they are.
std::string cmdlineText(std::string_view raw);

// Reads a process's command line (raw /proc/<pid>/cmdline bytes) when a rule needs it; nullopt when it
// cannot be read (gone, or no permission): then no cmdline pattern matches.
using CmdlineReader = std::function<std::optional<std::string>()>;

// The first rule of `rules` that the process (`comm`, real `uid`) matches, or nullptr; `index` gets its
// position. `read_cmdline` is called at most once, and only when a rule whose other keys match has a
// cmdline pattern.
const ProcessRule* processRuleFor(const std::vector<ProcessRule>& rules, std::string_view comm, uid_t uid,
                                  const CmdlineReader& read_cmdline, size_t* index = nullptr);

}  // namespace oomguard::guardian::config
