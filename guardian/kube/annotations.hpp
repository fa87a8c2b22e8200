// Per-workload policy from pod annotations (the versioned set under "oomguard.io/v1."), tenant safety
// (only operator-allowlisted namespaces may ask for more protection), and kubelet's own oom_score_adj
// formula, which is the default every annotation starts from. Pure functions; docs/kubernetes.md is the
// user-facing description and must change together with this file.
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "guardian/config/tenant.hpp"
#include "guardian/kube/kubernetes_identity.hpp"
#include "policies/act.hpp"

namespace oomguard::guardian::kube {

inline constexpr std::string_view kAnnotationDomain = "oomguard.io/";
inline constexpr std::string_view kAnnotationVersion = "v1";

// Protection classes and preferences are policies::ProtectionClass and policies::Preference (the order
// victims are chosen in; see policies/act.hpp); their names are the annotation values.
enum class PressureKind { kSome, kFull };
// What happens when the pod's pressure limit is crossed.
enum class PressureAction { kKillWorst, kKillGroup, kObserve };

std::string_view toString(PressureKind kind);
std::string_view toString(PressureAction action);

// The range an explicit oomguard.io/v1.oom-score-adj may take.
inline constexpr int kMinAnnotationOomScoreAdj = -998;
inline constexpr int kMaxAnnotationOomScoreAdj = 1000;
inline constexpr uint32_t kMaxPressureDurationSeconds = 60;

// "<some|full> <percent>% <duration>s": stalled (some/full) for more than `percent` of `duration_s`.
struct PressureLimit {
  PressureKind kind = PressureKind::kSome;
  double percent = 0;                      // (0, 100]
  uint32_t duration_s = 0;                 // 1..60
  [[nodiscard]] std::string text() const;  // canonical spelling, e.g. "full 20% 5s"
  // The PSI trigger that watches it when the duration fits the kernel's window (<= 10 s):
  // "<kind> <stall_us> <window_us>"; nullopt for longer durations (followed over consecutive windows).
  [[nodiscard]] std::optional<std::string> triggerText() const;
  bool operator==(const PressureLimit&) const = default;
};

struct WorkloadPolicy {
  policies::ProtectionClass protection = policies::ProtectionClass::kNormal;
  std::optional<int> oom_score_adj;                 // explicit; beats the class's bound
  std::optional<bool> oom_group;                    // the pod cgroup's memory.oom.group
  std::map<std::string, bool> container_oom_group;  // per container name
  policies::Preference preference = policies::Preference::kNone;
  std::optional<PressureLimit> pressure_limit;
  PressureAction pressure_action = PressureAction::kKillWorst;
  std::optional<uint32_t> sigterm_grace_seconds;  // SIGTERM, wait, then SIGKILL; 0 = SIGKILL at once
  bool operator==(const WorkloadPolicy&) const = default;
};

// One annotation that was not applied, and why (the message names the key, the value and the default kept).
struct AnnotationIssue {
  std::string key;
  std::string value;
  std::string reason;
  bool operator==(const AnnotationIssue&) const = default;
};

struct ParsedAnnotations {
  WorkloadPolicy policy;
  std::vector<AnnotationIssue> invalid;  // unknown keys or versions under oomguard.io/, bad values
};

// Bounds on what one pod's annotations can make the daemon hold, log and send (a tenant may write up to
// the API server's 256 KiB of annotations, in any number of keys): the pod cache keeps only the keys
// under oomguard.io/ that selectAnnotation admits, each value cut to kMaxAnnotationValueBytes.
inline constexpr size_t kMaxAnnotationValueBytes = 256;  // every valid value is far shorter
inline constexpr size_t kMaxContainerOomGroupKeys = 64;  // oom-group.<container> keys read per pod
inline constexpr size_t kMaxUnknownAnnotationKeys = 4;   // other keys under oomguard.io/ kept to report
// The smallest share a pod's pressure-limit may name: below it the limit fires on any stall at all.
inline constexpr double kMinPressureLimitPercent = 1.0;

// What the pod cache does with one annotation key.
enum class AnnotationKey {
  kOther,           // not under oomguard.io/: dropped
  kKnown,           // one of this version's names: kept
  kContainerGroup,  // oom-group.<container>: kept up to kMaxContainerOomGroupKeys
  kUnknown,         // under oomguard.io/ but not understood: kept up to kMaxUnknownAnnotationKeys, reported
};
AnnotationKey classifyAnnotationKey(std::string_view key);
// `value` cut to kMaxAnnotationValueBytes; a cut value ends in "..." (which no valid value contains, so
// it is reported as invalid, never half-applied).
std::string boundedAnnotationValue(std::string_view value);

// Reads every "oomguard.io/..." annotation; others are ignored. Never throws: a bad value leaves that
// field at its default and is reported.
ParsedAnnotations parseAnnotations(const std::map<std::string, std::string>& annotations);


struct EffectivePolicy {
  WorkloadPolicy policy;
  std::vector<AnnotationIssue> invalid;
  std::vector<AnnotationIssue> refused;  // escalations from a namespace that is not allowlisted
};

// The policy a pod gets. `baseline_oom_score_adj` is the largest oom_score_adj kubelet gives any of the
// pod's containers (kubeletOomScoreAdj): an explicit oom-score-adj below it would protect some container
// more than kubelet does, which is an escalation. A refused item keeps its default, so a refused
// annotation never changes what the pod would have had without it.
EffectivePolicy effectivePolicy(const std::map<std::string, std::string>& annotations,
                                std::string_view namespace_name, const config::TenantPolicy& tenant,
                                int baseline_oom_score_adj);

// The oom_score_adj to write for one container's processes, from the effective policy and the value kubelet
// gave that container: the explicit value if any; else critical and high lower it to their value (never
// raise it), low raises it to 500 (never lowers it), sacrificial sets 1000, normal leaves kubelet's.
int containerOomScoreAdj(const WorkloadPolicy& policy, int kubelet_oom_score_adj);

// memory.oom.group to write on the pod cgroup, or nullopt to leave it (kubelet never sets it there).
std::optional<bool> podOomGroup(const WorkloadPolicy& policy);
// memory.oom.group to write on a container's cgroup, or nullopt to leave kubelet's value (1 on cgroup v2
// from kubelet 1.28 unless singleProcessOOMKill): the per-container annotation, else "false" pod-wide.
std::optional<bool> containerOomGroup(const WorkloadPolicy& policy, std::string_view container_name);

// kubelet's oom_score_adj for a container (pkg/kubelet/qos/policy.go, GetContainerOOMScoreAdjust).
inline constexpr int kKubeletOwnOomScoreAdj = -999;  // kubelet and kube-proxy
inline constexpr int kGuaranteedOomScoreAdj = -997;  // Guaranteed pods and node-critical pods
inline constexpr int kBestEffortOomScoreAdj = 1000;
inline constexpr int kSandboxOomScoreAdj = -998;  // containerd's and CRI-O's pause containers
struct KubeletOomInput {
  QosClass qos = QosClass::kBurstable;  // kUnknown counts as Burstable
  bool node_critical = false;         // a critical pod with priorityClassName system-node-critical
  int64_t memory_request_bytes = 0;   // the container's (allocated) request
  int64_t memory_capacity_bytes = 0;  // the node's memory capacity (MemTotal)
  // A restartable init container ("sidecar"): it is never ranked above the pod's regular containers.
  bool sidecar = false;
  int64_t min_regular_memory_request_bytes = 0;
  // PodLevelResources: (pod memory request - sum of container requests) / number of containers, added to
  // every container's request; 0 when the pod sets no pod-level request.
  int64_t pod_level_extra_request_bytes = 0;
};
int kubeletOomScoreAdj(const KubeletOomInput& input);

}  // namespace oomguard::guardian::kube
