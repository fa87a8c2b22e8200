// The Kubernetes side of each cgroup: which pod and container it is (from its path, and from the pod
// objects the API server reports) and what the pod's oomguard.io/v1.* annotations, after tenant safety,
// ask of oomguard. Pure: the daemon feeds pod objects in and asks per cgroup path; nothing here reads a
// file or talks to the API server. Until a pod's object is known, a cgroup of it resolves with its
// path-derived identity only, empty labels, and the default policy.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "guardian/kube/annotations.hpp"
#include "guardian/kube/pod.hpp"
#include "guardian/kube/kubernetes_identity.hpp"
#include "policies/act.hpp"

namespace oomguard::guardian::kube {

class Workloads {
 public:
  // `memory_capacity_bytes` is the node's MemTotal: kubelet's Burstable formula divides by it.
  Workloads(config::TenantPolicy tenant, int64_t memory_capacity_bytes);

  // What taking in one pod object changed.
  struct PodUpdate {
    bool policy_changed = false;  // the pod's effective policy differs from the one held before
    // Issues with this object's annotations that were not reported for this pod before (each issue is
    // reported once per pod and key, not at every MODIFIED event; a changed value is a new issue).
    std::vector<AnnotationIssue> new_invalid;
    std::vector<AnnotationIssue> new_refused;
  };
  PodUpdate upsert(const KubePod& pod);
  // The pod is gone; returns whether it was known.
  bool erase(const std::string& uid);
  // A reloaded config: every pod's policy is recomputed. Returns the uids whose policy changed.
  std::vector<std::string> setTenant(config::TenantPolicy tenant);

  [[nodiscard]] const KubePod* pod(const std::string& uid) const;
  [[nodiscard]] const WorkloadPolicy* policy(const std::string& uid) const;  // effective, after tenant safety
  [[nodiscard]] size_t podCount() const { return pods_.size(); }

  struct Resolved {
    CgroupIdentity identity;
    const KubePod* pod = nullptr;            // null outside Kubernetes or until the API server told
    const WorkloadPolicy* policy = nullptr;  // the pod's effective policy; null when pod is null
    WorkloadLabels labels;                   // empty until the pod is known
  };
  [[nodiscard]] Resolved resolve(std::string_view cgroup) const;

  // The oom_score_adj the pod's policy wants for the processes of this cgroup (a container's cgroup or
  // one below it), or nullopt to leave what is there: the pod's policy never asked for a change, the
  // container is the sandbox, or not (yet) named in the pod's status. Once a policy asked for a change,
  // a policy that no longer does gets kubelet's value back.
  [[nodiscard]] std::optional<int> oomScoreAdj(const Resolved& resolved) const;
  // memory.oom.group for this cgroup (the pod cgroup or a container's own), or nullopt to leave it.
  [[nodiscard]] static std::optional<bool> oomGroup(const Resolved& resolved);
  [[nodiscard]] static policies::Preference preference(const Resolved& resolved);
  [[nodiscard]] static policies::ProtectionClass protection(const Resolved& resolved);
  [[nodiscard]] static std::optional<uint32_t> sigtermGraceSeconds(const Resolved& resolved);
  // kubelet's oom_score_adj for a container of the pod (GetContainerOOMScoreAdjust, from the pod's QoS
  // class, priority class and the container's memory request).
  [[nodiscard]] int kubeletOomScoreAdj(const KubePod& pod, std::string_view container_name) const;

 private:
  struct Held {
    KubePod pod;
    EffectivePolicy effective;
    // The issue last reported for each annotation key of the pod: one per key, replaced when the value
    // changes, so a pod's updates cost O(its own keys) and the set is bounded by the keys it may hold.
    std::map<std::string, AnnotationIssue> reported;
    // The pod's policy asked for another oom_score_adj at some point: from then on kubelet's value is
    // written back when the policy asks for none (an annotation removed).
    bool adj_changed_once = false;
  };
  EffectivePolicy computePolicy(const KubePod& pod) const;

  config::TenantPolicy tenant_;
  int64_t memory_capacity_bytes_ = 0;
  std::map<std::string, Held> pods_;  // by uid
};

}  // namespace oomguard::guardian::kube
