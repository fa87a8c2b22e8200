// What the daemon uses of a Kubernetes pod object, parsed from the API server's JSON (a list item or a
// watch event's "object"). Pure: no I/O; kube_client's PodWatch fetches the objects and keeps the cache.
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <vector>

#include "cgroupfs/result.hpp"
#include "guardian/kube/kubernetes_identity.hpp"

namespace oomguard::guardian::kube {

// Members of the API server's JSON objects, tolerant of any shape: the member `key` of an object (null
// when `object` is not an object or has no such member); the member when it is a string (else ""); the
// member when it is an object (else an empty object).
const nlohmann::json* member(const nlohmann::json& object, const char* key);
std::string stringMember(const nlohmann::json& object, const char* key);
const nlohmann::json& objectMember(const nlohmann::json& object, const char* key);

// What the daemon uses of a pod object.
struct KubePod {
  std::string uid;
  std::string namespace_name;
  std::string name;
  std::string resource_version;
  // metadata.annotations under oomguard.io/ only, as kube::classifyAnnotationKey admits them, values
  // cut by kube::boundedAnnotationValue: a pod's other annotations are never held.
  std::map<std::string, std::string> annotations;
  uint32_t annotations_dropped = 0;  // keys under oomguard.io/ over the bounds (reported, not read)
  std::string qos_class;            // status.qosClass: Guaranteed | Burstable | BestEffort | ""
  std::optional<int32_t> priority;  // spec.priority
  std::string priority_class_name;  // spec.priorityClassName
  std::string phase;                // status.phase
  // status.containerStatuses, initContainerStatuses and ephemeralContainerStatuses: name and containerID
  // ("containerd://<id>"; empty until the container has started).
  std::vector<PodContainerRef> containers;
  // spec.containers[].resources.requests.memory, by container name, in bytes (quantities such as "128Mi",
  // "1G", "500M", "1e9" parsed), replaced by status.containerStatuses[].allocatedResources.memory where the
  // status has it (an in-place resize: what kubelet allocated is what it computes oom_score_adj from);
  // containers without a request are absent.
  std::map<std::string, int64_t> memory_request_bytes;

  [[nodiscard]] PodRef ref() const { return PodRef{namespace_name, name, uid, containers}; }
  // Succeeded or Failed: its containers will not run again, so the cache does not keep it.
  [[nodiscard]] bool finished() const { return phase == "Succeeded" || phase == "Failed"; }
  bool operator==(const KubePod&) const = default;
};

// Parses one pod object (the JSON of a list item or of a watch event's "object"). an error for
// an object without metadata.uid/name/namespace; unknown and missing optional fields are tolerated.
cgroupfs::Result<KubePod> parsePod(const std::string& json_text);
// The same, on an object already parsed (an item of a PodList, a watch event's "object"); an error with
// `why` also when it is not a JSON object.
cgroupfs::Result<KubePod> parsePodObject(const nlohmann::json& object);
// A Kubernetes memory quantity ("128Mi", "1Gi", "500M", "1e9", "12345", "0.5Gi") in bytes; nullopt if
// malformed.
std::optional<int64_t> parseMemoryQuantity(const std::string& text);

// One change to a cache of pods (kube_client::PodWatch announces them), by metadata.uid.
struct PodChange {
  enum class Kind { kUpserted, kDeleted };
  Kind kind = Kind::kUpserted;
  std::string uid;
};

}  // namespace oomguard::guardian::kube
