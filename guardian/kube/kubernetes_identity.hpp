// Kubernetes identity of a cgroup v2 path: which pod (by UID, as the API spells it), which QoS class,
// which container (by runtime ID) and which runtime, for both kubelet cgroup drivers. Pure functions on
// strings: no I/O, no API calls. docs/kubernetes.md lists the path shapes.
//
// systemd driver (kubelet --cgroup-driver=systemd; escaped UIDs: '-' becomes '_'):
//   /kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid>.slice/cri-containerd-<id>.scope
//   /kubepods.slice/kubepods-pod<uid>.slice/crio-<id>.scope               (Guaranteed: no QoS slice)
//   .../kubepods-besteffort-pod<uid>.slice/docker-<id>.scope               (cri-dockerd)
//   .../crio-conmon-<id>.scope                                              (CRI-O's monitor, not a
//   container) /kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/...
//   (--cgroup-root=/kubelet, kind)
//   /system.slice/containerd.service/kubepods-burstable-pod<uid>.slice:cri-containerd:<id>
//       (runc could not hand the container to systemd: the cgroupsPath stays "slice:prefix:name")
// cgroupfs driver:
//   /kubepods/burstable/pod<uid>/<id>, /kubepods/besteffort/pod<uid>/<id>, /kubepods/pod<uid>/<id>
//   /kubepods/burstable/pod<uid>/crio-<id>, .../crio-conmon-<id>
// The anchor (kubepods, kubepods.slice, <prefix>-kubepods.slice) may sit anywhere in the path, so a
// kubelet under a non-root cgroup (a kind node: /system.slice/docker-<node>.scope/kubelet.slice/...) is
// recognised. The first anchor wins: a kind node running as a pod is that pod's container.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>


namespace oomguard::guardian::kube {

// Kubernetes identity of a cgroup, spelled as kubelet/cAdvisor do; empty outside Kubernetes.
struct WorkloadLabels {
  std::string namespace_name;
  std::string pod;
  std::string container;
};

enum class QosClass { kUnknown, kGuaranteed, kBurstable, kBestEffort };
enum class CgroupDriver { kUnknown, kSystemd, kCgroupfs };
// The cgroupfs driver names containerd's and Docker's containers alike (a bare ID): kUnknown then.
enum class ContainerRuntime { kUnknown, kContainerd, kCrio, kDocker };

// What a cgroup is in kubelet's hierarchy.
enum class KubeCgroupRole {
  kNone,             // not under a kubepods cgroup
  kKubepods,         // the node's pod root: /kubepods.slice, /kubepods
  kQosClass,         // the burstable or besteffort parent
  kPod,              // the pod-level cgroup
  kContainer,        // a container's own cgroup; the sandbox (pause) container has the same shape
  kInsideContainer,  // a cgroup below a container's (crun's "container" leaf, a nested kubelet, systemd)
  kRuntimeHelper,    // CRI-O's conmon scope: charged to the pod, not a container of it
  kUnknownInPod,     // anything else below the pod cgroup
};

std::string_view toString(QosClass qos);  // guaranteed | burstable | besteffort | unknown
std::string_view toString(CgroupDriver driver);
std::string_view toString(ContainerRuntime runtime);  // containerd | cri-o | docker | unknown
std::string_view toString(KubeCgroupRole role);

struct CgroupIdentity {
  KubeCgroupRole role = KubeCgroupRole::kNone;
  CgroupDriver driver = CgroupDriver::kUnknown;
  QosClass qos = QosClass::kUnknown;  // known at the QoS level and below
  std::string kubepods_cgroup;        // the anchor's path; empty for the "slice:prefix:id" form
  std::string pod_uid;                // with dashes, as metadata.uid has it
  std::string pod_cgroup;             // the pod-level cgroup's path; empty for the "slice:prefix:id" form
  std::string container_id;  // the runtime's ID (hex), for kContainer, kInsideContainer, kRuntimeHelper
  ContainerRuntime runtime = ContainerRuntime::kUnknown;
  std::string container_cgroup;  // the container's own cgroup (an ancestor of the path for kInsideContainer)

  [[nodiscard]] bool isKubernetes() const { return role != KubeCgroupRole::kNone; }
  [[nodiscard]] bool inPod() const { return !pod_uid.empty(); }
  bool operator==(const CgroupIdentity&) const = default;
};

// `cgroup_path` is a path inside the cgroup v2 hierarchy ("/kubepods.slice/..."), as oomguard names
// cgroups: the root is "/". Empty segments and a trailing '/' are tolerated.
CgroupIdentity identifyCgroup(std::string_view cgroup_path);

// A container ID as the API's status.containerStatuses[].containerID spells it: "<runtime>://<id>".
struct ApiContainerId {
  ContainerRuntime runtime = ContainerRuntime::kUnknown;
  std::string id;
  bool operator==(const ApiContainerId&) const = default;
};
std::optional<ApiContainerId> parseApiContainerId(std::string_view text);

// What the API says about one pod, as far as naming its cgroups goes.
struct PodContainerRef {
  std::string name;
  std::string container_id;  // "containerd://<id>"; empty while the container has not started
  bool operator==(const PodContainerRef&) const = default;
};
struct PodRef {
  std::string namespace_name;
  std::string name;
  std::string uid;
  std::vector<PodContainerRef> containers;  // regular, init and ephemeral containers' statuses
};

// The metric labels of a cgroup (DESIGN.md section 5), spelled as kubelet's cAdvisor endpoint spells
// them: the pod-level cgroup (and CRI-O's conmon, which is charged to it) has container="", a container
// its name, and a container ID the pod's status does not list is the sandbox: container="POD". A cgroup
// of another pod, or outside Kubernetes, gets empty labels.
WorkloadLabels workloadLabels(const CgroupIdentity& identity, const PodRef& pod);

}  // namespace oomguard::guardian::kube
