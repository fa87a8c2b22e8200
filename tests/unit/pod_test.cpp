// The pod model: memory quantities (table-driven on the API's grammar) and pod objects as the API
// server returns them.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "guardian/kube/annotations.hpp"
#include "guardian/kube/pod.hpp"

namespace oomguard::guardian::kube {
namespace {


struct QuantityCase {
  const char* text;
  std::optional<int64_t> bytes;
};

void PrintTo(const QuantityCase& value, std::ostream* out) {
  *out << '"' << value.text << '"';
}

class MemoryQuantity : public ::testing::TestWithParam<QuantityCase> {};

TEST_P(MemoryQuantity, Parses) {
  EXPECT_EQ(parseMemoryQuantity(GetParam().text), GetParam().bytes);
}

constexpr int64_t kKi = 1024;
constexpr int64_t kMi = kKi * 1024;
constexpr int64_t kGi = kMi * 1024;
constexpr int64_t kMax = std::numeric_limits<int64_t>::max();

INSTANTIATE_TEST_SUITE_P(
    Valid, MemoryQuantity,
    ::testing::Values(
        QuantityCase{"0", 0}, QuantityCase{"12345", 12345}, QuantityCase{"+12345", 12345},
        QuantityCase{"128Mi", 128 * kMi}, QuantityCase{"1Gi", kGi}, QuantityCase{"64Ki", 64 * kKi},
        QuantityCase{"2Ti", 2 * kGi * 1024}, QuantityCase{"1Pi", kGi* kMi}, QuantityCase{"7Ei", 7 * kGi* kGi},
        QuantityCase{"500M", 500'000'000}, QuantityCase{"1G", 1'000'000'000}, QuantityCase{"1k", 1000},
        QuantityCase{"3T", 3'000'000'000'000}, QuantityCase{"2P", 2'000'000'000'000'000},
        QuantityCase{"9E", 9'000'000'000'000'000'000}, QuantityCase{"1e3", 1000}, QuantityCase{"1E3", 1000},
        QuantityCase{"1e9", 1'000'000'000}, QuantityCase{"1.5e3", 1500}, QuantityCase{"1e+3", 1000},
        QuantityCase{"15e-1", 2}, QuantityCase{"0.5Gi", kGi / 2}, QuantityCase{"1.5Gi", kGi * 3 / 2},
        QuantityCase{"1.5k", 1500}, QuantityCase{".5k", 500}, QuantityCase{"5.k", 5000},
        QuantityCase{"0.1", 1},  // rounds up to a whole byte
        QuantityCase{"100m", 1}, QuantityCase{"1500m", 2}, QuantityCase{"2000m", 2}, QuantityCase{"1u", 1},
        QuantityCase{"0n", 0}, QuantityCase{"0.0001Ki", 1}, QuantityCase{"000128Mi", 128 * kMi},
        QuantityCase{"1000000000000000000000m", 1'000'000'000'000'000'000},
        QuantityCase{"9223372036854775807", kMax}, QuantityCase{"1e-50", 1}));

INSTANTIATE_TEST_SUITE_P(
    Malformed, MemoryQuantity,
    ::testing::Values(QuantityCase{"", std::nullopt}, QuantityCase{"Mi", std::nullopt},
                      QuantityCase{"-1", std::nullopt}, QuantityCase{"-128Mi", std::nullopt},
                      QuantityCase{"1.2.3", std::nullopt}, QuantityCase{"12 Mi", std::nullopt},
                      QuantityCase{" 12", std::nullopt}, QuantityCase{"12\n", std::nullopt},
                      QuantityCase{"1K", std::nullopt},  // kilo is lower-case; binary is "Ki"
                      QuantityCase{"1mi", std::nullopt}, QuantityCase{"1MiB", std::nullopt},
                      QuantityCase{"1MB", std::nullopt}, QuantityCase{"1e", std::nullopt},
                      QuantityCase{"1e1.5", std::nullopt}, QuantityCase{"1e--3", std::nullopt},
                      QuantityCase{"0x10", std::nullopt}, QuantityCase{".", std::nullopt},
                      QuantityCase{"+", std::nullopt}, QuantityCase{"abc", std::nullopt},
                      QuantityCase{"1Gi ", std::nullopt},
                      // Past INT64_MAX bytes.
                      QuantityCase{"8Ei", std::nullopt}, QuantityCase{"10E", std::nullopt},
                      QuantityCase{"9223372036854775808", std::nullopt}, QuantityCase{"1e19", std::nullopt},
                      QuantityCase{"1e99999", std::nullopt}));

// A pod as `kubectl get pod -o json` prints it (trimmed: managedFields, most conditions, volumes).
constexpr const char* kRealPod = R"json({
  "apiVersion": "v1",
  "kind": "Pod",
  "metadata": {
    "annotations": {
      "kubectl.kubernetes.io/restartedAt": "2024-05-02T09:12:44Z",
      "oomguard.io/v1.protection": "high",
      "oomguard.io/v1.pressure-limit": "full 20% 5s"
    },
    "creationTimestamp": "2024-05-02T09:12:47Z",
    "generateName": "checkout-6c9f7d8b5-",
    "labels": {"app": "checkout", "pod-template-hash": "6c9f7d8b5"},
    "name": "checkout-6c9f7d8b5-q7x2m",
    "namespace": "shop",
    "ownerReferences": [{"apiVersion": "apps/v1", "blockOwnerDeletion": true, "controller": true,
                         "kind": "ReplicaSet", "name": "checkout-6c9f7d8b5",
                         "uid": "0d6e3c47-5a52-4d3e-9d53-8f7a1c2b9e10"}],
    "resourceVersion": "48213377",
    "uid": "2c48913c-b29f-11e7-9350-020968147796"
  },
  "spec": {
    "containers": [
      {"image": "registry.example/checkout:1.42.0", "imagePullPolicy": "IfNotPresent", "name": "checkout",
       "ports": [{"containerPort": 8080, "name": "http", "protocol": "TCP"}],
       "resources": {"limits": {"cpu": "2", "memory": "1Gi"}, "requests": {"cpu": "500m", "memory": "768Mi"}},
       "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File"},
      {"image": "envoyproxy/envoy:v1.30.1", "name": "envoy",
       "resources": {"requests": {"cpu": "100m", "memory": "128M"}}},
      {"image": "busybox:1.36", "name": "log-tailer", "resources": {}}
    ],
    "dnsPolicy": "ClusterFirst",
    "enableServiceLinks": true,
    "initContainers": [{"image": "busybox:1.36", "name": "migrate", "resources": {"requests": {"memory": "64Mi"}}}],
    "nodeName": "worker-3",
    "preemptionPolicy": "PreemptLowerPriority",
    "priority": 100000,
    "priorityClassName": "shop-critical",
    "restartPolicy": "Always",
    "schedulerName": "default-scheduler",
    "serviceAccountName": "checkout",
    "terminationGracePeriodSeconds": 30,
    "tolerations": [{"effect": "NoExecute", "key": "node.kubernetes.io/not-ready", "operator": "Exists",
                     "tolerationSeconds": 300}]
  },
  "status": {
    "conditions": [{"lastProbeTime": null, "lastTransitionTime": "2024-05-02T09:12:52Z", "status": "True",
                    "type": "Ready"}],
    "containerStatuses": [
      {"containerID": "containerd://9bca8d63d5fa610783847915bcff0ecac1273e5b4bed3f6fa1b07350e0135961",
       "image": "registry.example/checkout:1.42.0", "imageID": "registry.example/checkout@sha256:5f2c",
       "lastState": {}, "name": "checkout", "ready": true, "restartCount": 0, "started": true,
       "state": {"running": {"startedAt": "2024-05-02T09:12:50Z"}}},
      {"containerID": "containerd://40af7cdcbe507acad47a5a62025743ad3ddc6ab93b77b21363aa1c1d641047c9",
       "image": "docker.io/envoyproxy/envoy:v1.30.1", "lastState": {}, "name": "envoy", "ready": true,
       "restartCount": 2, "started": true, "state": {"running": {"startedAt": "2024-05-02T09:12:51Z"}}},
      {"image": "busybox:1.36", "imageID": "", "lastState": {}, "name": "log-tailer", "ready": false,
       "restartCount": 0, "started": false, "state": {"waiting": {"reason": "ContainerCreating"}}}
    ],
    "hostIP": "10.0.3.17",
    "initContainerStatuses": [
      {"containerID": "containerd://1f3a5e7c9b2d4f6a8c0e2b4d6f8a0c2e4b6d8f0a2c4e6b8d0f2a4c6e8b0d2f4a",
       "name": "migrate", "ready": true, "restartCount": 0,
       "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}
    ],
    "phase": "Running",
    "podIP": "10.244.3.41",
    "podIPs": [{"ip": "10.244.3.41"}],
    "qosClass": "Burstable",
    "startTime": "2024-05-02T09:12:47Z"
  }
})json";

TEST(ParsePod, RealPodObject) {
  const auto pod = parsePod(kRealPod);
  ASSERT_TRUE(pod) << pod.error().message;
  EXPECT_EQ(pod->uid, "2c48913c-b29f-11e7-9350-020968147796");
  EXPECT_EQ(pod->namespace_name, "shop");
  EXPECT_EQ(pod->name, "checkout-6c9f7d8b5-q7x2m");
  EXPECT_EQ(pod->resource_version, "48213377");
  EXPECT_EQ(pod->annotations,
            (std::map<std::string, std::string>{{"oomguard.io/v1.protection", "high"},  // only oomguard.io/ kept
                                                {"oomguard.io/v1.pressure-limit", "full 20% 5s"}}));
  EXPECT_EQ(pod->qos_class, "Burstable");
  EXPECT_EQ(pod->priority, 100000);
  EXPECT_EQ(pod->priority_class_name, "shop-critical");
  EXPECT_EQ(pod->phase, "Running");
  ASSERT_EQ(pod->containers.size(), 4U);
  EXPECT_EQ(pod->containers[0].name, "checkout");
  EXPECT_EQ(pod->containers[0].container_id,
            "containerd://9bca8d63d5fa610783847915bcff0ecac1273e5b4bed3f6fa1b07350e0135961");
  EXPECT_EQ(pod->containers[1].name, "envoy");
  EXPECT_EQ(pod->containers[2].name, "log-tailer");
  EXPECT_EQ(pod->containers[2].container_id, "");  // not started yet
  EXPECT_EQ(pod->containers[3].name, "migrate");   // init containers' statuses too
  // Regular containers with a request only; the init container's request is not a regular one.
  EXPECT_EQ(pod->memory_request_bytes,
            (std::map<std::string, int64_t>{{"checkout", 768 * kMi}, {"envoy", 128'000'000}}));

  const PodRef ref = pod->ref();
  EXPECT_EQ(ref.uid, pod->uid);
  EXPECT_EQ(ref.namespace_name, "shop");
  EXPECT_EQ(ref.name, pod->name);
  EXPECT_EQ(ref.containers.size(), 4U);
}

TEST(ParsePod, MinimalPodHasEmptyOptionalFields) {
  const auto pod = parsePod(R"({"metadata":{"uid":"u-1","name":"p","namespace":"n"}})");
  ASSERT_TRUE(pod) << pod.error().message;
  EXPECT_TRUE(pod->annotations.empty());
  EXPECT_EQ(pod->qos_class, "");
  EXPECT_FALSE(pod->priority.has_value());
  EXPECT_TRUE(pod->containers.empty());
  EXPECT_TRUE(pod->memory_request_bytes.empty());
}

TEST(ParsePod, ToleratesUnexpectedTypesInOptionalFields) {
  const auto pod = parsePod(R"({"metadata":{"uid":"u-1","name":"p","namespace":"n","resourceVersion":7,
      "annotations":{"oomguard.io/v1.protection":"low","oomguard.io/v1.preference":5,"oomguard.io/v1.oom-group":{}}},
      "spec":{"priority":"high","containers":[{"name":"c","resources":{"requests":{"memory":"lots"}}},
                                              {"name":"d","resources":{"requests":{"memory":"1Ki"}}}, 5]},
      "status":{"qosClass":3,"containerStatuses":{"name":"x"},"initContainerStatuses":[{"containerID":"x"}]},
      "unknownField":[1,2,3]})");
  ASSERT_TRUE(pod) << pod.error().message;
  EXPECT_EQ(pod->resource_version, "");
  EXPECT_EQ(pod->annotations, (std::map<std::string, std::string>{{"oomguard.io/v1.protection", "low"}}));
  EXPECT_FALSE(pod->priority.has_value());
  EXPECT_EQ(pod->qos_class, "");
  EXPECT_TRUE(pod->containers.empty());
  EXPECT_EQ(pod->memory_request_bytes, (std::map<std::string, int64_t>{{"d", 1024}}));
}

TEST(ParsePod, PriorityOutsideInt32IsIgnored) {
  const auto pod =
      parsePod(R"({"metadata":{"uid":"u","name":"p","namespace":"n"},"spec":{"priority":4294967296}})");
  ASSERT_TRUE(pod) << pod.error().message;
  EXPECT_FALSE(pod->priority.has_value());
  const auto negative =
      parsePod(R"({"metadata":{"uid":"u","name":"p","namespace":"n"},"spec":{"priority":-5}})");
  ASSERT_TRUE(negative) << negative.error().message;
  EXPECT_EQ(negative->priority, -5);
}

TEST(ParsePod, RefusesObjectsWithoutIdentity) {
  for (const char* text :
       {R"({"metadata":{"name":"p","namespace":"n"}})", R"({"metadata":{"uid":"u","namespace":"n"}})",
        R"({"metadata":{"uid":"u","name":"p"}})", R"({"metadata":{"uid":"","name":"p","namespace":"n"}})",
        R"({"metadata":{"uid":5,"name":"p","namespace":"n"}})", R"({"spec":{}})", R"([1,2])", R"("pod")",
        "{not json", ""}) {
    const auto pod = parsePod(text);
    ASSERT_FALSE(pod) << text;
    EXPECT_FALSE(pod.error().message.empty()) << text;
  }
}

}  // namespace
TEST(ParsePod, AnnotationsAreBoundedByDesign) {
  // Issue 16: a pod with 10,000 annotations under oomguard.io/ (190 KB) grew the daemon by 40 MiB and
  // stalled its loop for seconds. The cache holds the known keys, 64 oom-group.<container> keys and 4
  // unknown ones (to report them); values are cut to 256 bytes; other annotations are not held at all.
  nlohmann::json annotations = nlohmann::json::object();
  for (int i = 0; i < 10000; ++i) {
    annotations["oomguard.io/v1.x" + std::to_string(i)] = "v";
    annotations["oomguard.io/v1.oom-group.c" + std::to_string(i)] = "true";
    annotations["example.com/other-" + std::to_string(i)] = std::string(100, 'o');
  }
  annotations["oomguard.io/v1.protection"] = "low";
  annotations["oomguard.io/v1.preference"] = std::string(100000, 'p');
  const nlohmann::json object = {{"metadata", {{"uid", "u"}, {"name", "p"}, {"namespace", "n"}, {"annotations", annotations}}}};
  const auto pod = parsePodObject(object);
  ASSERT_TRUE(pod) << pod.error().message;
  EXPECT_EQ(pod->annotations.size(), 2U + kMaxContainerOomGroupKeys + kMaxUnknownAnnotationKeys);
  EXPECT_EQ(pod->annotations_dropped, 20000U - kMaxContainerOomGroupKeys - kMaxUnknownAnnotationKeys);
  EXPECT_EQ(pod->annotations.at("oomguard.io/v1.protection"), "low");
  const std::string& cut = pod->annotations.at("oomguard.io/v1.preference");
  EXPECT_EQ(cut.size(), kMaxAnnotationValueBytes);
  EXPECT_EQ(cut.substr(cut.size() - 3), "...");
  EXPECT_EQ(std::count_if(pod->annotations.begin(), pod->annotations.end(),
                          [](const auto& entry) { return entry.first.rfind("oomguard.io/", 0) != 0; }),
            0);
}

TEST(ParsePod, FinishedPodsAreKnownAsSuch) {
  for (const char* phase : {"Succeeded", "Failed"}) {
    const auto pod = parsePod(std::string(R"({"metadata":{"uid":"u","name":"p","namespace":"n"},"status":{"phase":")") +
                              phase + R"("}})");
    ASSERT_TRUE(pod);
    EXPECT_TRUE(pod->finished()) << phase;
  }
  const auto running = parsePod(R"({"metadata":{"uid":"u","name":"p","namespace":"n"},"status":{"phase":"Running"}})");
  ASSERT_TRUE(running);
  EXPECT_FALSE(running->finished());
}

TEST(ParsePod, AnInPlaceResizeIsReadFromTheAllocatedResources) {
  // Issue 16: the baseline oom_score_adj came from spec requests; after an in-place resize kubelet uses
  // what it allocated (status.containerStatuses[].allocatedResources).
  const auto pod = parsePod(R"({"metadata":{"uid":"u","name":"p","namespace":"n"},
      "spec":{"containers":[{"name":"app","resources":{"requests":{"memory":"1Gi"}}},
                            {"name":"side","resources":{"requests":{"memory":"64Mi"}}}]},
      "status":{"containerStatuses":[{"name":"app","allocatedResources":{"cpu":"1","memory":"256Mi"}},
                                     {"name":"side"}]}})");
  ASSERT_TRUE(pod) << pod.error().message;
  EXPECT_EQ(pod->memory_request_bytes.at("app"), 256LL << 20) << "allocated, not spec";
  EXPECT_EQ(pod->memory_request_bytes.at("side"), 64LL << 20) << "spec, where nothing was allocated";
}

}  // namespace oomguard::guardian::kube
