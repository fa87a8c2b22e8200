#include "guardian/kube/kubernetes_identity.hpp"

#include <algorithm>
#include <array>

namespace oomguard::guardian::kube {
namespace {

std::vector<std::string_view> splitSegments(std::string_view path) {
  std::vector<std::string_view> segments;
  size_t start = 0;
  while (start <= path.size()) {
    const size_t end = std::min(path.find('/', start), path.size());
    if (end > start) {
      segments.push_back(path.substr(start, end - start));
    }
    start = end + 1;
  }
  return segments;
}

std::string joinSegments(const std::vector<std::string_view>& segments, size_t count) {
  std::string path;
  for (size_t i = 0; i < count && i < segments.size(); ++i) {
    path += '/';
    path += segments[i];
  }
  return path.empty() ? "/" : path;
}

bool isLowerHex(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

// Container IDs from CRI runtimes are 64 lowercase hex digits; shorter ones (12+) are accepted for
// runtimes that abbreviate, never anything else.
bool isContainerId(std::string_view text) {
  return text.size() >= 12 && text.size() <= 64 && std::all_of(text.begin(), text.end(), isLowerHex);
}

// A pod UID as kubelet puts it in a cgroup name: an API UID (hex with dashes) or a static pod's config
// hash (32 hex). The systemd driver escapes '-' as '_'.
std::optional<std::string> podUid(std::string_view text, char separator) {
  if (text.empty() || text.size() > 64) {
    return std::nullopt;
  }
  std::string uid;
  for (const char c : text) {
    const char lower = (c >= 'A' && c <= 'F') ? static_cast<char>(c - 'A' + 'a') : c;
    if (isLowerHex(lower)) {
      uid += lower;
    } else if (c == separator) {
      uid += '-';
    } else {
      return std::nullopt;
    }
  }
  if (uid.front() == '-' || uid.back() == '-') {
    return std::nullopt;
  }
  return uid;
}

bool consumePrefix(std::string_view& text, std::string_view prefix) {
  if (text.substr(0, prefix.size()) != prefix) {
    return false;
  }
  text.remove_prefix(prefix.size());
  return true;
}

bool consumeSuffix(std::string_view& text, std::string_view suffix) {
  if (text.size() < suffix.size() || text.substr(text.size() - suffix.size()) != suffix) {
    return false;
  }
  text.remove_suffix(suffix.size());
  return true;
}

struct ContainerSegment {
  KubeCgroupRole role = KubeCgroupRole::kUnknownInPod;
  ContainerRuntime runtime = ContainerRuntime::kUnknown;
  std::string id;
};

// One cgroup name below a pod cgroup: "cri-containerd-<id>.scope", "crio-<id>.scope", "docker-<id>.scope",
// "crio-conmon-<id>.scope" (systemd) or "<id>", "crio-<id>", "crio-conmon-<id>" (cgroupfs).
ContainerSegment containerSegment(std::string_view name) {
  ContainerSegment result;
  std::string_view rest = name;
  const bool scope = consumeSuffix(rest, ".scope");
  struct Prefix {
    std::string_view text;
    ContainerRuntime runtime;
    KubeCgroupRole role;
  };
  static constexpr std::array<Prefix, 4> kPrefixes = {{
      {"crio-conmon-", ContainerRuntime::kCrio, KubeCgroupRole::kRuntimeHelper},
      {"crio-", ContainerRuntime::kCrio, KubeCgroupRole::kContainer},
      {"cri-containerd-", ContainerRuntime::kContainerd, KubeCgroupRole::kContainer},
      {"docker-", ContainerRuntime::kDocker, KubeCgroupRole::kContainer},
  }};
  for (const Prefix& prefix : kPrefixes) {
    std::string_view id = rest;
    if (consumePrefix(id, prefix.text) && isContainerId(id)) {
      result.role = prefix.role;
      result.runtime = prefix.runtime;
      result.id = std::string(id);
      return result;
    }
  }
  if (isContainerId(rest)) {  // cgroupfs: containerd or Docker; a scope with a bare ID: unknown runtime
    result.role = KubeCgroupRole::kContainer;
    result.id = std::string(rest);
    return result;
  }
  if (scope) {  // "<other runtime>-<id>.scope"
    const size_t dash = rest.rfind('-');
    if (dash != std::string_view::npos && isContainerId(rest.substr(dash + 1))) {
      result.role = KubeCgroupRole::kContainer;
      result.id = std::string(rest.substr(dash + 1));
    }
  }
  return result;
}

std::optional<QosClass> qosName(std::string_view name) {
  if (name == "burstable") {
    return QosClass::kBurstable;
  }
  if (name == "besteffort") {
    return QosClass::kBestEffort;
  }
  return std::nullopt;
}

// Fills in the container part from segments[index] on (the first segment below the pod cgroup).
void identifyBelowPod(CgroupIdentity& identity, const std::vector<std::string_view>& segments, size_t index) {
  if (index >= segments.size()) {
    identity.role = KubeCgroupRole::kPod;
    return;
  }
  const ContainerSegment container = containerSegment(segments[index]);
  identity.role = container.role;
  identity.runtime = container.runtime;
  identity.container_id = container.id;
  if (container.role == KubeCgroupRole::kContainer || container.role == KubeCgroupRole::kRuntimeHelper) {
    identity.container_cgroup = joinSegments(segments, index + 1);
  }
  if (index + 1 < segments.size() && container.role == KubeCgroupRole::kContainer) {
    identity.role = KubeCgroupRole::kInsideContainer;
  }
}

// cgroupfs: <anchor>/kubepods[/burstable|/besteffort][/pod<uid>[/<container>[/...]]]
CgroupIdentity identifyCgroupfs(const std::vector<std::string_view>& segments, size_t anchor) {
  CgroupIdentity identity;
  identity.driver = CgroupDriver::kCgroupfs;
  identity.kubepods_cgroup = joinSegments(segments, anchor + 1);
  size_t index = anchor + 1;
  if (index == segments.size()) {
    identity.role = KubeCgroupRole::kKubepods;
    return identity;
  }
  if (const auto qos = qosName(segments[index])) {
    identity.qos = *qos;
    ++index;
    if (index == segments.size()) {
      identity.role = KubeCgroupRole::kQosClass;
      return identity;
    }
  } else {
    identity.qos = QosClass::kGuaranteed;  // Guaranteed pods sit directly under kubepods
  }
  std::string_view pod = segments[index];
  const auto uid = consumePrefix(pod, "pod") ? podUid(pod, '-') : std::nullopt;
  if (!uid) {
    return CgroupIdentity{};
  }
  identity.pod_uid = *uid;
  identity.pod_cgroup = joinSegments(segments, index + 1);
  identifyBelowPod(identity, segments, index + 1);
  return identity;
}

// systemd: <anchor>/<S>.slice[/<S>-burstable.slice]/<S>[-burstable]-pod<uid>.slice/<container>.scope,
// where <S> is the anchor's stem ("kubepods", "kubelet-kubepods").
CgroupIdentity identifySystemd(const std::vector<std::string_view>& segments, size_t anchor) {
  CgroupIdentity identity;
  identity.driver = CgroupDriver::kSystemd;
  identity.kubepods_cgroup = joinSegments(segments, anchor + 1);
  std::string_view stem = segments[anchor];
  consumeSuffix(stem, ".slice");
  const std::string prefix = std::string(stem) + "-";
  size_t index = anchor + 1;
  if (index == segments.size()) {
    identity.role = KubeCgroupRole::kKubepods;
    return identity;
  }
  std::string_view next = segments[index];
  if (!consumePrefix(next, prefix) || !consumeSuffix(next, ".slice")) {
    return CgroupIdentity{};
  }
  std::string_view pod = next;
  if (const auto qos = qosName(next)) {  // <S>-burstable.slice
    identity.qos = *qos;
    ++index;
    if (index == segments.size()) {
      identity.role = KubeCgroupRole::kQosClass;
      return identity;
    }
    pod = segments[index];
    const std::string qos_prefix = prefix + std::string(next) + "-";
    if (!consumePrefix(pod, qos_prefix) || !consumeSuffix(pod, ".slice")) {
      return CgroupIdentity{};
    }
  } else {
    identity.qos = QosClass::kGuaranteed;
  }
  const auto uid = consumePrefix(pod, "pod") ? podUid(pod, '_') : std::nullopt;
  if (!uid) {
    return CgroupIdentity{};
  }
  identity.pod_uid = *uid;
  identity.pod_cgroup = joinSegments(segments, index + 1);
  identifyBelowPod(identity, segments, index + 1);
  return identity;
}

// "<[prefix-]kubepods[-qos]-pod<uid>.slice>:<runtime prefix>:<id>": the cgroupsPath containerd or CRI-O
// hands runc for the systemd driver, left as a plain directory name when no systemd unit was made.
CgroupIdentity identifyColonForm(const std::vector<std::string_view>& segments, size_t index) {
  const std::string_view segment = segments[index];
  const size_t first = segment.find(':');
  const size_t second = segment.find(':', first + 1);
  if (first == std::string_view::npos || second == std::string_view::npos ||
      segment.find(':', second + 1) != std::string_view::npos) {
    return CgroupIdentity{};
  }
  std::string_view slice = segment.substr(0, first);
  const std::string_view runtime = segment.substr(first + 1, second - first - 1);
  const std::string_view id = segment.substr(second + 1);
  if (!consumeSuffix(slice, ".slice") || !isContainerId(id)) {
    return CgroupIdentity{};
  }
  const size_t kubepods = slice.find("kubepods-");
  if (kubepods == std::string_view::npos || (kubepods != 0 && slice[kubepods - 1] != '-')) {
    return CgroupIdentity{};
  }
  std::string_view rest = slice.substr(kubepods + std::string_view("kubepods-").size());
  CgroupIdentity identity;
  identity.driver = CgroupDriver::kSystemd;
  identity.qos = QosClass::kGuaranteed;
  for (const std::string_view qos : {"burstable-", "besteffort-"}) {
    if (consumePrefix(rest, qos)) {
      identity.qos = *qosName(qos.substr(0, qos.size() - 1));
      break;
    }
  }
  const auto uid = consumePrefix(rest, "pod") ? podUid(rest, '_') : std::nullopt;
  if (!uid) {
    return CgroupIdentity{};
  }
  identity.pod_uid = *uid;
  identity.container_id = std::string(id);
  if (runtime == "cri-containerd") {
    identity.runtime = ContainerRuntime::kContainerd;
  } else if (runtime == "crio") {
    identity.runtime = ContainerRuntime::kCrio;
  } else if (runtime == "docker") {
    identity.runtime = ContainerRuntime::kDocker;
  }
  identity.container_cgroup = joinSegments(segments, index + 1);
  identity.role = index + 1 < segments.size() ? KubeCgroupRole::kInsideContainer : KubeCgroupRole::kContainer;
  return identity;
}

bool isSystemdAnchor(std::string_view segment) {
  return segment == "kubepods.slice" ||
         (segment.size() > std::string_view("-kubepods.slice").size() &&
          segment.substr(segment.size() - std::string_view("-kubepods.slice").size()) == "-kubepods.slice");
}

}  // namespace

std::string_view toString(QosClass qos) {
  switch (qos) {
    case QosClass::kGuaranteed:
      return "guaranteed";
    case QosClass::kBurstable:
      return "burstable";
    case QosClass::kBestEffort:
      return "besteffort";
    case QosClass::kUnknown:
      break;
  }
  return "unknown";
}

std::string_view toString(CgroupDriver driver) {
  switch (driver) {
    case CgroupDriver::kSystemd:
      return "systemd";
    case CgroupDriver::kCgroupfs:
      return "cgroupfs";
    case CgroupDriver::kUnknown:
      break;
  }
  return "unknown";
}

std::string_view toString(ContainerRuntime runtime) {
  switch (runtime) {
    case ContainerRuntime::kContainerd:
      return "containerd";
    case ContainerRuntime::kCrio:
      return "cri-o";
    case ContainerRuntime::kDocker:
      return "docker";
    case ContainerRuntime::kUnknown:
      break;
  }
  return "unknown";
}

std::string_view toString(KubeCgroupRole role) {
  switch (role) {
    case KubeCgroupRole::kNone:
      return "none";
    case KubeCgroupRole::kKubepods:
      return "kubepods";
    case KubeCgroupRole::kQosClass:
      return "qos";
    case KubeCgroupRole::kPod:
      return "pod";
    case KubeCgroupRole::kContainer:
      return "container";
    case KubeCgroupRole::kInsideContainer:
      return "inside-container";
    case KubeCgroupRole::kRuntimeHelper:
      return "runtime-helper";
    case KubeCgroupRole::kUnknownInPod:
      return "unknown-in-pod";
  }
  return "none";
}

CgroupIdentity identifyCgroup(std::string_view cgroup_path) {
  const std::vector<std::string_view> segments = splitSegments(cgroup_path);
  for (size_t i = 0; i < segments.size(); ++i) {
    const std::string_view segment = segments[i];
    if (segment == "kubepods") {
      return identifyCgroupfs(segments, i);
    }
    if (isSystemdAnchor(segment)) {
      return identifySystemd(segments, i);
    }
    if (segment.find(':') != std::string_view::npos && segment.find("kubepods-") != std::string_view::npos) {
      return identifyColonForm(segments, i);
    }
  }
  return CgroupIdentity{};
}

std::optional<ApiContainerId> parseApiContainerId(std::string_view text) {
  const size_t separator = text.find("://");
  if (separator == std::string_view::npos) {
    return std::nullopt;
  }
  const std::string_view scheme = text.substr(0, separator);
  const std::string_view id = text.substr(separator + 3);
  if (!isContainerId(id)) {
    return std::nullopt;
  }
  ApiContainerId result;
  result.id = std::string(id);
  if (scheme == "containerd") {
    result.runtime = ContainerRuntime::kContainerd;
  } else if (scheme == "cri-o") {
    result.runtime = ContainerRuntime::kCrio;
  } else if (scheme == "docker") {
    result.runtime = ContainerRuntime::kDocker;
  } else if (scheme.empty()) {
    return std::nullopt;
  }
  return result;
}

WorkloadLabels workloadLabels(const CgroupIdentity& identity, const PodRef& pod) {
  if (!identity.inPod() || identity.pod_uid != pod.uid) {
    return {};
  }
  WorkloadLabels labels{pod.namespace_name, pod.name, ""};
  if (identity.role != KubeCgroupRole::kContainer && identity.role != KubeCgroupRole::kInsideContainer) {
    return labels;  // the pod-level cgroup, conmon, or an unknown cgroup in the pod: charged to the pod
  }
  for (const PodContainerRef& container : pod.containers) {
    const auto id = parseApiContainerId(container.container_id);
    if (id && id->id == identity.container_id) {
      labels.container = container.name;
      return labels;
    }
  }
  labels.container = "POD";
  return labels;
}

}  // namespace oomguard::guardian::kube
