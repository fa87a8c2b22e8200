#include "guardian/kube/workloads.hpp"

#include <algorithm>
#include <utility>

namespace oomguard::guardian::kube {
namespace {

// kubelet: scheduling.SystemCriticalPriority; a pod at or above it with priorityClassName
// system-node-critical is node-critical and gets the Guaranteed value whatever its QoS class.
constexpr int32_t kSystemCriticalPriority = 2000000000;

QosClass qosOf(const KubePod& pod) {
  if (pod.qos_class == "Guaranteed") {
    return QosClass::kGuaranteed;
  }
  if (pod.qos_class == "BestEffort") {
    return QosClass::kBestEffort;
  }
  return QosClass::kBurstable;
}

bool asksForOomScoreAdj(const WorkloadPolicy& policy) {
  return policy.oom_score_adj.has_value() || policy.protection != policies::ProtectionClass::kNormal;
}

// Whether `issue` is news for the pod (another than the one last reported for its key); remembers it.
bool firstReport(std::map<std::string, AnnotationIssue>& reported, const AnnotationIssue& issue) {
  auto [it, inserted] = reported.try_emplace(issue.key, issue);
  if (!inserted && it->second == issue) {
    return false;
  }
  it->second = issue;
  return true;
}

}  // namespace

Workloads::Workloads(config::TenantPolicy tenant, int64_t memory_capacity_bytes)
    : tenant_(std::move(tenant)), memory_capacity_bytes_(memory_capacity_bytes) {}

int Workloads::kubeletOomScoreAdj(const KubePod& pod, std::string_view container_name) const {
  KubeletOomInput input;
  input.qos = qosOf(pod);
  input.node_critical = pod.priority_class_name == "system-node-critical" &&
                        pod.priority.value_or(0) >= kSystemCriticalPriority;
  const auto request = pod.memory_request_bytes.find(std::string(container_name));
  input.memory_request_bytes = request == pod.memory_request_bytes.end() ? 0 : request->second;
  input.memory_capacity_bytes = memory_capacity_bytes_;
  return kube::kubeletOomScoreAdj(input);
}

EffectivePolicy Workloads::computePolicy(const KubePod& pod) const {
  // The baseline is the largest value kubelet gives any container of the pod: asking for less than that
  // protects some container more than kubelet does.
  int baseline = kubeletOomScoreAdj(pod, "");
  for (const auto& container : pod.containers) {
    baseline = std::max(baseline, kubeletOomScoreAdj(pod, container.name));
  }
  for (const auto& [name, unused] : pod.memory_request_bytes) {
    baseline = std::max(baseline, kubeletOomScoreAdj(pod, name));
  }
  EffectivePolicy effective = effectivePolicy(pod.annotations, pod.namespace_name, tenant_, baseline);
  if (pod.annotations_dropped > 0) {
    effective.invalid.push_back(AnnotationIssue{
        std::string(kAnnotationDomain) + "*", std::to_string(pod.annotations_dropped) + " keys",
        "more annotations under " + std::string(kAnnotationDomain) + " than are read (at most " +
            std::to_string(kMaxContainerOomGroupKeys) + " oom-group.<container> keys and " +
            std::to_string(kMaxUnknownAnnotationKeys) + " unknown keys per pod); the rest are ignored"});
  }
  return effective;
}

Workloads::PodUpdate Workloads::upsert(const KubePod& pod) {
  PodUpdate update;
  EffectivePolicy effective = computePolicy(pod);
  auto [it, inserted] = pods_.try_emplace(pod.uid);
  Held& held = it->second;
  update.policy_changed =
      inserted ? effective.policy != WorkloadPolicy{} : effective.policy != held.effective.policy;
  for (const auto& issue : effective.invalid) {
    if (firstReport(held.reported, issue)) {
      update.new_invalid.push_back(issue);
    }
  }
  for (const auto& issue : effective.refused) {
    if (firstReport(held.reported, issue)) {
      update.new_refused.push_back(issue);
    }
  }
  // A key that no longer has an issue (fixed or removed) is forgotten: its next issue is news again.
  std::erase_if(held.reported, [&](const auto& entry) {
    const auto same_key = [&](const AnnotationIssue& issue) { return issue.key == entry.first; };
    return std::none_of(effective.invalid.begin(), effective.invalid.end(), same_key) &&
           std::none_of(effective.refused.begin(), effective.refused.end(), same_key);
  });
  held.pod = pod;
  held.effective = std::move(effective);
  held.adj_changed_once = held.adj_changed_once || asksForOomScoreAdj(held.effective.policy);
  return update;
}

bool Workloads::erase(const std::string& uid) {
  return pods_.erase(uid) > 0;
}

std::vector<std::string> Workloads::setTenant(config::TenantPolicy tenant) {
  tenant_ = std::move(tenant);
  std::vector<std::string> changed;
  for (auto& [uid, held] : pods_) {
    EffectivePolicy effective = computePolicy(held.pod);
    if (effective.policy != held.effective.policy) {
      changed.push_back(uid);
    }
    held.effective = std::move(effective);
    held.adj_changed_once = held.adj_changed_once || asksForOomScoreAdj(held.effective.policy);
    held.reported.clear();  // a new tenant policy: its refusals are news
  }
  return changed;
}

const KubePod* Workloads::pod(const std::string& uid) const {
  const auto found = pods_.find(uid);
  return found == pods_.end() ? nullptr : &found->second.pod;
}

const WorkloadPolicy* Workloads::policy(const std::string& uid) const {
  const auto found = pods_.find(uid);
  return found == pods_.end() ? nullptr : &found->second.effective.policy;
}

Workloads::Resolved Workloads::resolve(std::string_view cgroup) const {
  Resolved resolved;
  resolved.identity = identifyCgroup(cgroup);
  if (!resolved.identity.inPod()) {
    return resolved;
  }
  const auto found = pods_.find(resolved.identity.pod_uid);
  if (found == pods_.end()) {
    return resolved;
  }
  resolved.pod = &found->second.pod;
  resolved.policy = &found->second.effective.policy;
  resolved.labels = workloadLabels(resolved.identity, found->second.pod.ref());
  return resolved;
}

std::optional<int> Workloads::oomScoreAdj(const Resolved& resolved) const {
  if (resolved.pod == nullptr || resolved.policy == nullptr) {
    return std::nullopt;
  }
  const auto role = resolved.identity.role;
  if (role != KubeCgroupRole::kContainer && role != KubeCgroupRole::kInsideContainer) {
    return std::nullopt;
  }
  const std::string& container = resolved.labels.container;
  if (container.empty() || container == "POD") {
    return std::nullopt;  // the sandbox keeps the runtime's -998; an unnamed container is not known yet
  }
  const auto held = pods_.find(resolved.pod->uid);
  if (held == pods_.end() || !held->second.adj_changed_once) {
    return std::nullopt;
  }
  return containerOomScoreAdj(*resolved.policy, kubeletOomScoreAdj(*resolved.pod, container));
}

std::optional<bool> Workloads::oomGroup(const Resolved& resolved) {
  if (resolved.policy == nullptr) {
    return std::nullopt;
  }
  if (resolved.identity.role == KubeCgroupRole::kPod) {
    return podOomGroup(*resolved.policy);
  }
  if (resolved.identity.role == KubeCgroupRole::kContainer && !resolved.labels.container.empty() &&
      resolved.labels.container != "POD") {
    return containerOomGroup(*resolved.policy, resolved.labels.container);
  }
  return std::nullopt;
}

policies::Preference Workloads::preference(const Resolved& resolved) {
  return resolved.policy == nullptr ? policies::Preference::kNone : resolved.policy->preference;
}

policies::ProtectionClass Workloads::protection(const Resolved& resolved) {
  return resolved.policy == nullptr ? policies::ProtectionClass::kNormal : resolved.policy->protection;
}

std::optional<uint32_t> Workloads::sigtermGraceSeconds(const Resolved& resolved) {
  return resolved.policy == nullptr ? std::nullopt : resolved.policy->sigterm_grace_seconds;
}

}  // namespace oomguard::guardian::kube
