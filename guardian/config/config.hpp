// The daemon's configuration: typed structs read from JSON. Reading throws ConfigError (start-up only),
// whose message names the JSON path (RFC 6901 pointer, e.g. /cgroups/2/pressure/stall_us) or the line
// and column of a syntax error. Unknown keys are errors. A Config that was returned is valid as a whole.
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "guardian/config/processes.hpp"
#include "guardian/config/tenant.hpp"
#include "policies/act.hpp"

namespace oomguard::guardian::config {

class ConfigError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A PSI trigger: "<kind> <stall_us> <window_us>" written to <resource>.pressure.
struct PressureTrigger {
  std::string resource = "memory";  // memory | cpu | io
  std::string kind = "some";        // some | full
  uint64_t stall_us = 150000;
  uint64_t window_ms = 1000;        // 500..10000
  [[nodiscard]] std::string triggerText() const;  // what is written to the file
};

// When and how oomguard acts in one OOM domain (mode "act" only).
// An act rule's warn stage: levels before its act levels. Crossing one makes a warning (a "warning" line
// with the domain's time-to-OOM forecast and the victim the rule would choose, oomguard_warnings_total, a
// Warning Event on that victim's pod, the warn hook), never a kill: once per excursion above the level,
// and at most one per interval_s in a domain (policies::warningDue). Levels only (headroom_below,
// mem_available_below, swap_free_below, pressure): the kernel's memory.events come at the limit, too
// late to warn. Each level lies before the act level of the same kind.
struct WarnStage {
  policies::Thresholds when;
  double interval_s = 300;
};

struct ActRule {
  policies::Action action = policies::Action::kObserve;
  policies::Thresholds when;
  std::optional<WarnStage> warn;  // with action "observe": a warning and nothing else
  uint32_t sigterm_grace_ms = 0;
  // cgroup rules with when.headroom_below: oomguard sets the domain's memory.high at the threshold
  // (memory.max * (1 - headroom_below)), so the kernel throttles a leak there and raises "high" events.
  bool memory_high_at_threshold = false;
  // With memory_high_at_threshold: also lower a memory.high that someone else set above the threshold
  // (kubelet's MemoryQoS, systemd's MemoryHigh=), and put their value back at exit, on reload and when
  // the rule stops asking. Without it such a memory.high is left alone.
  bool memory_high_override = false;
};

// What to watch in the cgroups whose path matches `match` (the first matching rule applies).
// Globs: "*" matches within one path segment, "**" any number of segments; "/" is the root.
struct CgroupRule {
  std::string match;
  bool watch_events = true;                 // inotify on memory.events / memory.events.local
  std::optional<PressureTrigger> pressure;  // a PSI trigger, if any
  bool pressure_only_if_limited = true;     // arm it only where memory.max is finite (an OOM domain)
  // Protections, applied in mode "act" to every process of the cgroup (and re-applied on refresh).
  std::optional<int> oom_score_adj;
  std::optional<bool> oom_group;
  policies::Preference preference = policies::Preference::kNone;
  // Acting before the kernel in this cgroup's OOM domain (only where memory.max is finite).
  std::optional<ActRule> act;
};

// Every cgroup: memory.events watched, a memory "some 100 ms / 1 s" trigger where memory.max is finite.
CgroupRule defaultCgroupRule();

// observe: never kills, never writes to anything but its own process.
// act: applies the protections and the act rules (--dry-run: decides and logs, touches nothing).
enum class Mode { kObserve, kAct };
const char* toString(Mode mode);  // observe | act

// history: where the daemon journals every OOM kill (`oomguard history` reads it), and how much it keeps.
struct History {
  std::string dir = "/var/lib/oomguard";
  uint64_t max_bytes = uint64_t{1024} * 1024;  // per file; the newest max_bytes..2*max_bytes are kept
  bool operator==(const History&) const = default;
};

// An operator's command, run at one stage of a kill (io::HookRunner). Only from the config file, never from
// a pod's annotations: a pod cannot make the guardian run a command.
struct Hook {
  std::vector<std::string> argv;  // argv[0]: an absolute path; no PATH search, no shell
  uint32_t timeout_ms = 0;        // then its process group gets SIGKILL
  size_t max_output_bytes = 4096; // of stdout and stderr together, kept for the log; the rest is read and dropped
  bool operator==(const Hook&) const = default;
};

// hooks (hooks.cpp): pre_kill runs after the decision and before the signal, which waits for it at most its
// timeout_ms (10..5000, default 500) and is sent whatever the hook did; post_kill once the victim is gone;
// warn at a warning (an act rule's warn stage). post_kill and warn: timeout_ms 10..600000, default 10000.
// A storm is capped: at most max_concurrent hooks run at once and
// max_per_minute start in any minute; one more is dropped and counted, and never delays a kill.
struct Hooks {
  std::optional<Hook> pre_kill;
  std::optional<Hook> post_kill;
  std::optional<Hook> warn;  // at a warning (WarnStage); delays nothing
  size_t max_concurrent = 4;
  size_t max_per_minute = 30;
  // The hooks' own oom_score_adj: they do not inherit oomguard's -1000, so a hook that grows is the
  // kernel's first choice and never the workload.
  int oom_score_adj = 1000;
  bool operator==(const Hooks&) const = default;
};

struct Config {
  Mode mode = Mode::kObserve;
  double refresh_interval_s = 5.0;
  size_t rescan_candidates = 8;   // on an event, re-read this many top candidates of the domain
  size_t log_candidates = 5;      // candidates listed in a decision log line
  struct Self {
    std::optional<int> oom_score_adj = -1000;
    bool mlock = true;
    // Give back the libraries' pages only start-up touched (io/startup_pages.hpp); read at start only.
    bool release_startup_pages = true;
  } self;
  std::string metrics_listen = "127.0.0.1:9743";
  // A second listener that serves only /healthz (empty: none), e.g. on loopback for an exec probe, so
  // that the health check need not be reachable where /metrics is.
  std::string health_listen;
  size_t metrics_top_k = 10;  // victims exported per domain
  bool read_kmsg = true;
  // The kill history on disk (io::KillJournal); none when null.
  std::optional<History> history = History{};
  std::optional<PressureTrigger> host_pressure = PressureTrigger{};
  std::optional<ActRule> host_act;
  // One OOM, one victim: after a kill (oomguard's or the kernel's) the domains holding the victim wait
  // until its memory is released, at most victim_wait_s; and all domains together make at most
  // max_kills_per_minute (the storm guard).
  double victim_wait_s = 2;
  size_t max_kills_per_minute = 6;
  // kill-allocating: growth is measured over this window (of the processes still growing).
  double trend_window_s = 10;
  // The adaptive watch of level thresholds assumes a domain may fill this fast even before a fill is
  // measured (a faster measured fill counts as measured): a reading is due when the room left to the
  // threshold would last half as long at that rate, between 5 ms and refresh_interval_s.
  double assumed_fill_rate_mib_s = 512;
  bool panic_allowed = false;  // the second opt-in an act rule with action "panic" needs
  // The kernel's side of OOM handling, declared: applied at start (mode act), drift reported (metric and
  // log) at every refresh, and written back only when enforce is true.
  std::map<std::string, long> sysctls;  // "vm.panic_on_oom" -> 0
  bool enforce_sysctls = false;
  std::vector<CgroupRule> cgroups = {defaultCgroupRule()};
  // Process rules (processes.hpp): by comm, cmdline and uid. A matching process rule's protection and
  // preference win over its cgroup rule's, which win over a pod's annotations.
  std::vector<ProcessRule> processes;
  Hooks hooks;

  // Pod metadata from the API server (names, annotations as per-workload policy, Events on kills).
  struct Kubernetes {
    bool enabled = false;
    std::string node_name;  // empty: $NODE_NAME
    // "https://host:port"; empty: in-cluster (KUBERNETES_SERVICE_HOST / KUBERNETES_SERVICE_PORT).
    std::string api_server;
    std::string service_account_dir = "/var/run/secrets/kubernetes.io/serviceaccount";
    bool events = true;  // a Kubernetes Event on each kill and each refused annotation
    bool annotations = true;  // apply oomguard.io/v1.* annotations (mode act writes them)
    // Tenant safety: the namespaces (globs) whose pods may ask for more protection than kubelet gives.
    TenantPolicy tenant;
  } kubernetes;
};

// Reads /hooks (hooks.cpp); throws ConfigError naming the JSON path.
Hooks parseHooks(const nlohmann::json& value);

// Parses and validates. `source` names the input in messages (a file name).
Config parseConfig(std::string_view json_text, const std::string& source);
Config loadConfigFile(const std::string& path);

// Glob match of a cgroup path against a rule's pattern (see CgroupRule).
bool cgroupMatches(std::string_view pattern, std::string_view path);
// The first rule matching `path`, or nullptr.
const CgroupRule* ruleFor(const Config& config, std::string_view path);

// What the operator's rules give one process, and from which: its first matching process rule over its
// cgroup rule (either may be null), setting by setting as each gives it (a process rule's preference
// "none", or no protection, leaves the cgroup rule's). A pod's annotations come after (the caller's).
struct RulesApplied {
  policies::Preference preference = policies::Preference::kNone;
  const char* preference_source = "default";  // "process rule", "cgroup rule" or "default"
  std::optional<int> oom_score_adj;            // the protection written in mode act
  const char* protection_source = "none";      // "process rule", "cgroup rule" or "none"
};
RulesApplied rulesApplied(const ProcessRule* process_rule, const CgroupRule* cgroup_rule);

// The settings bound or connected at start that a reload cannot change (metrics.listen, metrics.top_k,
// kubernetes.enabled, api_server, node_name, service_account_dir): the JSON paths of those that differ
// between `running` and `fresh`, comma-separated; empty when none does.
std::string restartOnlyChanges(const Config& running, const Config& fresh);

}  // namespace oomguard::guardian::config
