// Kubernetes identity from cgroup paths (table-driven on the shapes kubelet, containerd, CRI-O and
// cri-dockerd produce), the oomguard.io/v1 annotations, tenant safety and kubelet's oom_score_adj formula.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "guardian/kube/annotations.hpp"
#include "guardian/kube/kubernetes_identity.hpp"

namespace oomguard::guardian::kube {
namespace {

using config::namespaceGlobMatches;
using config::parseTenantPolicy;
using config::TenantPolicy;
using policies::Preference;
using Protection = policies::ProtectionClass;

// Real-shaped IDs: 64-hex container IDs, API UIDs (escaped with '_' by the systemd driver), and a static
// pod's 32-hex config hash as its UID.
constexpr const char* kId = "9bca8d63d5fa610783847915bcff0ecac1273e5b4bed3f6fa1b07350e0135961";
constexpr const char* kId2 = "40af7cdcbe507acad47a5a62025743ad3ddc6ab93b77b21363aa1c1d641047c9";
constexpr const char* kUid = "2c48913c-b29f-11e7-9350-020968147796";
constexpr const char* kUidEscaped = "2c48913c_b29f_11e7_9350_020968147796";
constexpr const char* kStaticUid = "d76e26fba3bf2bfd215eb29011d55250";

struct PathCase {
  const char* name;
  std::string path;
  KubeCgroupRole role;
  CgroupDriver driver = CgroupDriver::kUnknown;
  QosClass qos = QosClass::kUnknown;
  std::string uid;
  std::string pod_cgroup;
  ContainerRuntime runtime = ContainerRuntime::kUnknown;
  std::string id;
  std::string container_cgroup;
  std::string kubepods_cgroup;
};

void PrintTo(const PathCase& value, std::ostream* out) {
  *out << value.name;
}

std::string s(const std::string& a) {
  return a;
}
const std::string kBurstablePodSd =
    "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + s(kUidEscaped) + ".slice";
const std::string kBestEffortPodSd =
    "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + s(kUidEscaped) + ".slice";
const std::string kGuaranteedPodSd = "/kubepods.slice/kubepods-pod" + s(kUidEscaped) + ".slice";
const std::string kKindRoot = "/kubelet.slice/kubelet-kubepods.slice";
const std::string kKindPod = kKindRoot +
                             "/kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod" +
                             s(kUidEscaped) + ".slice";

PathCase none(const char* name, const std::string& path) {
  return PathCase{name,
                  path,
                  KubeCgroupRole::kNone,
                  CgroupDriver::kUnknown,
                  QosClass::kUnknown,
                  "",
                  "",
                  ContainerRuntime::kUnknown,
                  "",
                  "",
                  ""};
}

class Identity : public ::testing::TestWithParam<PathCase> {};

TEST_P(Identity, FromThePath) {
  const PathCase& c = GetParam();
  const CgroupIdentity identity = identifyCgroup(c.path);
  EXPECT_EQ(toString(identity.role), toString(c.role)) << c.path;
  if (c.role == KubeCgroupRole::kNone) {
    EXPECT_EQ(identity, CgroupIdentity{});
    return;
  }
  EXPECT_EQ(toString(identity.driver), toString(c.driver));
  EXPECT_EQ(toString(identity.qos), toString(c.qos));
  EXPECT_EQ(identity.pod_uid, c.uid);
  EXPECT_EQ(identity.pod_cgroup, c.pod_cgroup);
  EXPECT_EQ(toString(identity.runtime), toString(c.runtime));
  EXPECT_EQ(identity.container_id, c.id);
  EXPECT_EQ(identity.container_cgroup, c.container_cgroup);
  EXPECT_EQ(identity.kubepods_cgroup, c.kubepods_cgroup);
}

using R = KubeCgroupRole;
using D = CgroupDriver;
using Q = QosClass;
using RT = ContainerRuntime;

INSTANTIATE_TEST_SUITE_P(
    SystemdDriver, Identity,
    ::testing::Values(
        PathCase{"kubepods_root", "/kubepods.slice", R::kKubepods, D::kSystemd, Q::kUnknown, "", "",
                 RT::kUnknown, "", "", "/kubepods.slice"},
        PathCase{"qos_slice", "/kubepods.slice/kubepods-burstable.slice", R::kQosClass, D::kSystemd,
                 Q::kBurstable, "", "", RT::kUnknown, "", "", "/kubepods.slice"},
        PathCase{"burstable_pod", kBurstablePodSd, R::kPod, D::kSystemd, Q::kBurstable, kUid, kBurstablePodSd,
                 RT::kUnknown, "", "", "/kubepods.slice"},
        PathCase{"containerd_burstable", kBurstablePodSd + "/cri-containerd-" + kId + ".scope", R::kContainer,
                 D::kSystemd, Q::kBurstable, kUid, kBurstablePodSd, RT::kContainerd, kId,
                 kBurstablePodSd + "/cri-containerd-" + kId + ".scope", "/kubepods.slice"},
        PathCase{"crio_besteffort", kBestEffortPodSd + "/crio-" + kId + ".scope", R::kContainer, D::kSystemd,
                 Q::kBestEffort, kUid, kBestEffortPodSd, RT::kCrio, kId,
                 kBestEffortPodSd + "/crio-" + kId + ".scope", "/kubepods.slice"},
        PathCase{"crio_conmon", kBestEffortPodSd + "/crio-conmon-" + kId + ".scope", R::kRuntimeHelper,
                 D::kSystemd, Q::kBestEffort, kUid, kBestEffortPodSd, RT::kCrio, kId,
                 kBestEffortPodSd + "/crio-conmon-" + kId + ".scope", "/kubepods.slice"},
        PathCase{"crun_container_leaf", kBestEffortPodSd + "/crio-" + kId + ".scope/container",
                 R::kInsideContainer, D::kSystemd, Q::kBestEffort, kUid, kBestEffortPodSd, RT::kCrio, kId,
                 kBestEffortPodSd + "/crio-" + kId + ".scope", "/kubepods.slice"},
        PathCase{"docker_guaranteed", kGuaranteedPodSd + "/docker-" + kId + ".scope", R::kContainer,
                 D::kSystemd, Q::kGuaranteed, kUid, kGuaranteedPodSd, RT::kDocker, kId,
                 kGuaranteedPodSd + "/docker-" + kId + ".scope", "/kubepods.slice"},
        PathCase{"guaranteed_pod", kGuaranteedPodSd, R::kPod, D::kSystemd, Q::kGuaranteed, kUid,
                 kGuaranteedPodSd, RT::kUnknown, "", "", "/kubepods.slice"},
        PathCase{"pause_sandbox_same_shape", kGuaranteedPodSd + "/cri-containerd-" + kId2 + ".scope",
                 R::kContainer, D::kSystemd, Q::kGuaranteed, kUid, kGuaranteedPodSd, RT::kContainerd, kId2,
                 kGuaranteedPodSd + "/cri-containerd-" + kId2 + ".scope", "/kubepods.slice"},
        PathCase{"trailing_and_double_slashes", "//kubepods.slice//kubepods-pod" + s(kUidEscaped) + ".slice/",
                 R::kPod, D::kSystemd, Q::kGuaranteed, kUid, kGuaranteedPodSd, RT::kUnknown, "", "",
                 "/kubepods.slice"},
        PathCase{"unknown_runtime_scope", kBurstablePodSd + "/kata-" + kId + ".scope", R::kContainer,
                 D::kSystemd, Q::kBurstable, kUid, kBurstablePodSd, RT::kUnknown, kId,
                 kBurstablePodSd + "/kata-" + kId + ".scope", "/kubepods.slice"},
        PathCase{"unknown_in_pod", kBurstablePodSd + "/something.scope", R::kUnknownInPod, D::kSystemd,
                 Q::kBurstable, kUid, kBurstablePodSd, RT::kUnknown, "", "", "/kubepods.slice"}));

INSTANTIATE_TEST_SUITE_P(
    NestedRoots, Identity,
    ::testing::Values(
        // kubelet --cgroup-root=/kubelet with the systemd driver, as in a kind node (the node's own view).
        PathCase{"kind_node_view", kKindPod + "/cri-containerd-" + kId + ".scope", R::kContainer, D::kSystemd,
                 Q::kBestEffort, kUid, kKindPod, RT::kContainerd, kId,
                 kKindPod + "/cri-containerd-" + kId + ".scope", kKindRoot},
        // The same from the host: the node is a Docker container.
        PathCase{
            "kind_host_view",
            "/system.slice/docker-" + s(kId2) + ".scope" + kKindPod + "/cri-containerd-" + kId + ".scope",
            R::kContainer, D::kSystemd, Q::kBestEffort, kUid,
            "/system.slice/docker-" + s(kId2) + ".scope" + kKindPod, RT::kContainerd, kId,
            "/system.slice/docker-" + s(kId2) + ".scope" + kKindPod + "/cri-containerd-" + kId + ".scope",
            "/system.slice/docker-" + s(kId2) + ".scope" + kKindRoot},
        PathCase{"kind_guaranteed", kKindRoot + "/kubelet-kubepods-pod" + kUidEscaped + ".slice", R::kPod,
                 D::kSystemd, Q::kGuaranteed, kUid,
                 kKindRoot + "/kubelet-kubepods-pod" + kUidEscaped + ".slice", RT::kUnknown, "", "",
                 kKindRoot},
        // No systemd unit could be made: the "slice:prefix:id" cgroupsPath became a directory.
        PathCase{"colon_form_containerd",
                 "/system.slice/containerd.service/kubepods-burstable-pod" + s(kUidEscaped) +
                     ".slice:cri-containerd:" + kId,
                 R::kContainer, D::kSystemd, Q::kBurstable, kUid, "", RT::kContainerd, kId,
                 "/system.slice/containerd.service/kubepods-burstable-pod" + s(kUidEscaped) +
                     ".slice:cri-containerd:" + kId,
                 ""},
        PathCase{"colon_form_crio_guaranteed",
                 "/kubelet-kubepods-pod" + s(kUidEscaped) + ".slice:crio:" + kId, R::kContainer, D::kSystemd,
                 Q::kGuaranteed, kUid, "", RT::kCrio, kId,
                 "/kubelet-kubepods-pod" + s(kUidEscaped) + ".slice:crio:" + kId, ""},
        // A kind node running as a pod of the outer cluster: the outer pod owns everything below.
        PathCase{"kubelet_inside_a_pod",
                 kBurstablePodSd + "/cri-containerd-" + kId + ".scope" + kKindPod + "/cri-containerd-" +
                     kId2 + ".scope",
                 R::kInsideContainer, D::kSystemd, Q::kBurstable, kUid, kBurstablePodSd, RT::kContainerd, kId,
                 kBurstablePodSd + "/cri-containerd-" + kId + ".scope", "/kubepods.slice"}));

INSTANTIATE_TEST_SUITE_P(
    CgroupfsDriver, Identity,
    ::testing::Values(
        PathCase{"kubepods_root", "/kubepods", R::kKubepods, D::kCgroupfs, Q::kUnknown, "", "", RT::kUnknown,
                 "", "", "/kubepods"},
        PathCase{"qos", "/kubepods/besteffort", R::kQosClass, D::kCgroupfs, Q::kBestEffort, "", "",
                 RT::kUnknown, "", "", "/kubepods"},
        PathCase{"static_pod_bare_id", "/kubepods/besteffort/pod" + s(kStaticUid) + "/" + kId2, R::kContainer,
                 D::kCgroupfs, Q::kBestEffort, kStaticUid, "/kubepods/besteffort/pod" + s(kStaticUid),
                 RT::kUnknown, kId2, "/kubepods/besteffort/pod" + s(kStaticUid) + "/" + kId2, "/kubepods"},
        PathCase{"burstable_pod", "/kubepods/burstable/pod" + s(kUid), R::kPod, D::kCgroupfs, Q::kBurstable,
                 kUid, "/kubepods/burstable/pod" + s(kUid), RT::kUnknown, "", "", "/kubepods"},
        PathCase{"guaranteed_container", "/kubepods/pod" + s(kUid) + "/" + kId, R::kContainer, D::kCgroupfs,
                 Q::kGuaranteed, kUid, "/kubepods/pod" + s(kUid), RT::kUnknown, kId,
                 "/kubepods/pod" + s(kUid) + "/" + kId, "/kubepods"},
        PathCase{"crio", "/kubepods/burstable/pod" + s(kUid) + "/crio-" + kId, R::kContainer, D::kCgroupfs,
                 Q::kBurstable, kUid, "/kubepods/burstable/pod" + s(kUid), RT::kCrio, kId,
                 "/kubepods/burstable/pod" + s(kUid) + "/crio-" + kId, "/kubepods"},
        PathCase{"crio_conmon", "/kubepods/burstable/pod" + s(kUid) + "/crio-conmon-" + kId,
                 R::kRuntimeHelper, D::kCgroupfs, Q::kBurstable, kUid, "/kubepods/burstable/pod" + s(kUid),
                 RT::kCrio, kId, "/kubepods/burstable/pod" + s(kUid) + "/crio-conmon-" + kId, "/kubepods"},
        PathCase{"under_kubelet_root", "/kubelet/kubepods/burstable/pod" + s(kUid) + "/" + kId + "/nested",
                 R::kInsideContainer, D::kCgroupfs, Q::kBurstable, kUid,
                 "/kubelet/kubepods/burstable/pod" + s(kUid), RT::kUnknown, kId,
                 "/kubelet/kubepods/burstable/pod" + s(kUid) + "/" + kId, "/kubelet/kubepods"},
        PathCase{"unknown_in_pod", "/kubepods/burstable/pod" + s(kUid) + "/kata_sandbox", R::kUnknownInPod,
                 D::kCgroupfs, Q::kBurstable, kUid, "/kubepods/burstable/pod" + s(kUid), RT::kUnknown, "", "",
                 "/kubepods"}));

INSTANTIATE_TEST_SUITE_P(
    NotKubernetes, Identity,
    ::testing::Values(
        none("root", "/"), none("empty", ""), none("containerd_service", "/system.slice/containerd.service"),
        none("user_session", "/user.slice/user-1000.slice/user@1000.service/app.slice"),
        none("rootfs_mount", "/system.slice/run-containerd-io.containerd.runtime.v1.linux-k8s.io-" + s(kId) +
                                 "-rootfs.mount"),
        none("plain_docker", "/system.slice/docker-" + s(kId) + ".scope"),
        none("podman", "/machine.slice/libpod-" + s(kId) + ".scope"),
        none("bad_qos_slice", "/kubepods.slice/kubepods-weird.slice"),
        none("qos_mismatch",
             "/kubepods.slice/kubepods-burstable.slice/kubepods-besteffort-pod" + s(kUidEscaped) + ".slice"),
        none("not_a_pod", "/kubepods/burstable/notapod"), none("bad_uid", "/kubepods/burstable/podxyz"),
        none("dashes_in_systemd_uid", "/kubepods.slice/kubepods-pod" + s(kUid) + ".slice"),
        none("lookalike", "/system.slice/mykubepods.service"),
        none("colon_without_pod",
             "/system.slice/containerd.service/kubepods-burstable.slice:cri-containerd:" + s(kId))));

TEST(ApiContainerId, ParsesTheStatusSpelling) {
  EXPECT_EQ(parseApiContainerId("containerd://" + s(kId)),
            (ApiContainerId{ContainerRuntime::kContainerd, kId}));
  EXPECT_EQ(parseApiContainerId("cri-o://" + s(kId)), (ApiContainerId{ContainerRuntime::kCrio, kId}));
  EXPECT_EQ(parseApiContainerId("docker://" + s(kId)), (ApiContainerId{ContainerRuntime::kDocker, kId}));
  EXPECT_EQ(parseApiContainerId("other://" + s(kId)), (ApiContainerId{ContainerRuntime::kUnknown, kId}));
  EXPECT_FALSE(parseApiContainerId(""));
  EXPECT_FALSE(parseApiContainerId(kId));
  EXPECT_FALSE(parseApiContainerId("containerd://"));
  EXPECT_FALSE(parseApiContainerId("://" + s(kId)));
  EXPECT_FALSE(parseApiContainerId("containerd://NOT-HEX"));
}

TEST(WorkloadLabels, SpelledAsKubeletDoes) {
  const PodRef pod{
      "shop",
      "cart-7d9f",
      kUid,
      {{"cart", "containerd://" + s(kId)}, {"istio-proxy", ""}, {"init-db", "containerd://" + s(kId2)}}};
  const auto labels = [&](const std::string& path) { return workloadLabels(identifyCgroup(path), pod); };
  const WorkloadLabels app = labels(kBurstablePodSd + "/cri-containerd-" + kId + ".scope");
  EXPECT_EQ(app.namespace_name, "shop");
  EXPECT_EQ(app.pod, "cart-7d9f");
  EXPECT_EQ(app.container, "cart");
  EXPECT_EQ(labels(kBurstablePodSd + "/cri-containerd-" + kId2 + ".scope").container, "init-db");
  EXPECT_EQ(labels(kBurstablePodSd + "/cri-containerd-" + kId + ".scope/nested").container, "cart");
  const WorkloadLabels pod_level = labels(kBurstablePodSd);
  EXPECT_EQ(pod_level.pod, "cart-7d9f");
  EXPECT_EQ(pod_level.container, "");
  // An ID the status does not list: the sandbox.
  const std::string sandbox(64, 'a');
  EXPECT_EQ(labels(kBurstablePodSd + "/cri-containerd-" + sandbox + ".scope").container, "POD");
  EXPECT_EQ(labels(kBurstablePodSd + "/crio-conmon-" + s(kId) + ".scope").container, "");
  // Another pod's cgroup, or no pod at all: nothing.
  const std::string other = "/kubepods.slice/kubepods-pod11111111_2222_3333_4444_555555555555.slice";
  EXPECT_EQ(labels(other).pod, "");
  EXPECT_EQ(labels("/system.slice/kubelet.service").namespace_name, "");
}

// ---- annotations ----

std::map<std::string, std::string> annotations(
    std::initializer_list<std::pair<const std::string, std::string>> items) {
  return {items};
}

TEST(Annotations, EveryKeyParses) {
  const ParsedAnnotations parsed = parseAnnotations(annotations({
      {"oomguard.io/v1.protection", "high"},
      {"oomguard.io/v1.oom-score-adj", "-250"},
      {"oomguard.io/v1.oom-group", "true"},
      {"oomguard.io/v1.oom-group.worker", "false"},
      {"oomguard.io/v1.preference", "prefer"},
      {"oomguard.io/v1.pressure-limit", "full 12.5% 5s"},
      {"oomguard.io/v1.pressure-action", "kill-group"},
      {"oomguard.io/v1.sigterm-grace-seconds", " 7 "},
      {"kubectl.kubernetes.io/last-applied-configuration", "{}"},
      {"prometheus.io/scrape", "true"},
  }));
  EXPECT_TRUE(parsed.invalid.empty()) << parsed.invalid.front().key << ": " << parsed.invalid.front().reason;
  const WorkloadPolicy& p = parsed.policy;
  EXPECT_EQ(p.protection, Protection::kHigh);
  EXPECT_EQ(p.oom_score_adj, -250);
  EXPECT_EQ(p.oom_group, true);
  EXPECT_EQ(p.container_oom_group, (std::map<std::string, bool>{{"worker", false}}));
  EXPECT_EQ(p.preference, Preference::kPrefer);
  ASSERT_TRUE(p.pressure_limit);
  EXPECT_EQ(p.pressure_limit->kind, PressureKind::kFull);
  EXPECT_DOUBLE_EQ(p.pressure_limit->percent, 12.5);
  EXPECT_EQ(p.pressure_limit->duration_s, 5U);
  EXPECT_EQ(p.pressure_limit->text(), "full 12.5% 5s");
  EXPECT_EQ(p.pressure_limit->triggerText(), "full 625000 5000000");
  EXPECT_EQ(p.pressure_action, PressureAction::kKillGroup);
  EXPECT_EQ(p.sigterm_grace_seconds, 7U);
}

TEST(Annotations, NoneGivesTheDefaults) {
  const ParsedAnnotations parsed = parseAnnotations({});
  EXPECT_EQ(parsed.policy, WorkloadPolicy{});
  EXPECT_TRUE(parsed.invalid.empty());
  // Spelling the defaults out changes nothing.
  const ParsedAnnotations spelled = parseAnnotations(
      annotations({{"oomguard.io/v1.protection", "normal"}, {"oomguard.io/v1.preference", "none"}}));
  EXPECT_EQ(spelled.policy, WorkloadPolicy{});
  EXPECT_TRUE(spelled.invalid.empty());
}

TEST(Annotations, LongPressureWindowsHaveNoSingleTrigger) {
  const PressureLimit limit{PressureKind::kSome, 20, 30};
  EXPECT_EQ(limit.text(), "some 20% 30s");
  EXPECT_FALSE(limit.triggerText());
  EXPECT_EQ((PressureLimit{PressureKind::kSome, 100, 10}).triggerText(), "some 10000000 10000000");
}

struct BadAnnotation {
  const char* name;
  std::string key;
  std::string value;
  const char* reason;  // the message must contain this
};
void PrintTo(const BadAnnotation& value, std::ostream* out) {
  *out << value.name;
}

class InvalidAnnotations : public ::testing::TestWithParam<BadAnnotation> {};

TEST_P(InvalidAnnotations, ClearMessageAndTheDefaultIsKept) {
  const BadAnnotation& bad = GetParam();
  const ParsedAnnotations parsed = parseAnnotations({{bad.key, bad.value}});
  ASSERT_EQ(parsed.invalid.size(), 1U);
  EXPECT_EQ(parsed.invalid[0].key, bad.key);
  EXPECT_NE(parsed.invalid[0].reason.find(bad.reason), std::string::npos) << parsed.invalid[0].reason;
  EXPECT_EQ(parsed.policy, WorkloadPolicy{});
}

INSTANTIATE_TEST_SUITE_P(
    Cases, InvalidAnnotations,
    ::testing::Values(
        BadAnnotation{"protection", "oomguard.io/v1.protection", "urgent",
                      "\"urgent\" is not one of critical, high, normal, low, sacrificial; keeping normal"},
        BadAnnotation{"protection_case", "oomguard.io/v1.protection", "High", "keeping normal"},
        BadAnnotation{"adj_text", "oomguard.io/v1.oom-score-adj", "low",
                      "is not a whole number from -998 to 1000"},
        BadAnnotation{"adj_unkillable", "oomguard.io/v1.oom-score-adj", "-1000", "unkillable"},
        BadAnnotation{"adj_kubelet", "oomguard.io/v1.oom-score-adj", "-999", "kubelet's and the runtime's"},
        BadAnnotation{"adj_high", "oomguard.io/v1.oom-score-adj", "1001", "keeping kubelet's value"},
        BadAnnotation{"adj_plus", "oomguard.io/v1.oom-score-adj", "+5", "not a whole number"},
        BadAnnotation{"adj_float", "oomguard.io/v1.oom-score-adj", "5.0", "not a whole number"},
        BadAnnotation{"group_yes", "oomguard.io/v1.oom-group", "yes", "is not \"true\" or \"false\""},
        BadAnnotation{"group_container_name", "oomguard.io/v1.oom-group.Web_1", "true",
                      "is not a container name"},
        BadAnnotation{"preference", "oomguard.io/v1.preference", "never",
                      "is not one of prefer, none, avoid, omit"},
        BadAnnotation{"pressure_kind", "oomguard.io/v1.pressure-limit", "most 20% 5s", "is not some or full"},
        BadAnnotation{"pressure_form", "oomguard.io/v1.pressure-limit", "full 20 5s",
                      "expected \"<some|full>"},
        BadAnnotation{"pressure_extra", "oomguard.io/v1.pressure-limit", "full 20% 5s now", "expected"},
        BadAnnotation{"pressure_zero", "oomguard.io/v1.pressure-limit", "some 0% 5s", "must be at least 1%"},
        // Issue 16: a share of 0.0001% was accepted, a limit that fires on any stall at all.
        BadAnnotation{"pressure_tiny", "oomguard.io/v1.pressure-limit", "some 0.0001% 5s", "must be at least 1%"},
        BadAnnotation{"pressure_over", "oomguard.io/v1.pressure-limit", "some 100.5% 5s", "at most 100%"},
        BadAnnotation{"pressure_long", "oomguard.io/v1.pressure-limit", "some 10% 61s", "from 1s to 60s"},
        BadAnnotation{"pressure_ms", "oomguard.io/v1.pressure-limit", "some 10% 500ms", "from 1s to 60s"},
        BadAnnotation{"action_alone", "oomguard.io/v1.pressure-action", "observe", "has no effect without"},
        BadAnnotation{"action", "oomguard.io/v1.pressure-action", "panic", "is not one of kill-worst"},
        BadAnnotation{"grace", "oomguard.io/v1.sigterm-grace-seconds", "121", "from 0 to 120"},
        BadAnnotation{"grace_negative", "oomguard.io/v1.sigterm-grace-seconds", "-1",
                      "whole number of seconds"},
        BadAnnotation{"unknown_key", "oomguard.io/v1.protecton", "high", "unknown annotation"},
        BadAnnotation{"future_version", "oomguard.io/v2.protection", "high", "version v2 is not understood"},
        BadAnnotation{"no_version", "oomguard.io/protection", "high",
                      "did you mean oomguard.io/v1.protection?"}));

TEST(TenantSafety, RefusedEscalationFromANamespaceNotAllowlisted) {
  const TenantPolicy tenant{{"kube-system", "platform-*"}, 10};
  const auto wanted = annotations({
      {"oomguard.io/v1.protection", "critical"},
      {"oomguard.io/v1.oom-score-adj", "-500"},
      {"oomguard.io/v1.preference", "omit"},
      {"oomguard.io/v1.sigterm-grace-seconds", "60"},
      // Undoes kubelet's per-container group kill: later OOM kills could land on neighbours' processes.
      {"oomguard.io/v1.oom-group", "false"},
      {"oomguard.io/v1.oom-group.app", "true"},          // only changes how this pod dies: allowed
      {"oomguard.io/v1.pressure-limit", "some 20% 5s"},  // a limit on itself: allowed
  });
  const EffectivePolicy tenant_pod = effectivePolicy(wanted, "team-a", tenant, 900);
  EXPECT_TRUE(tenant_pod.invalid.empty());
  ASSERT_EQ(tenant_pod.refused.size(), 5U);
  std::vector<std::string> keys;
  for (const AnnotationIssue& issue : tenant_pod.refused) {
    keys.push_back(issue.key);
    EXPECT_NE(issue.reason.find("namespace \"team-a\" is not allowed to raise protection"), std::string::npos)
        << issue.reason;
  }
  EXPECT_EQ(keys,
            (std::vector<std::string>{"oomguard.io/v1.protection", "oomguard.io/v1.oom-score-adj",
                                      "oomguard.io/v1.preference", "oomguard.io/v1.sigterm-grace-seconds",
                                      "oomguard.io/v1.oom-group"}));
  EXPECT_FALSE(tenant_pod.policy.oom_group.has_value());
  EXPECT_EQ(tenant_pod.policy.container_oom_group, (std::map<std::string, bool>{{"app", true}}));
  EXPECT_EQ(tenant_pod.refused[1].value, "-500");
  EXPECT_NE(tenant_pod.refused[1].reason.find("below kubelet's 900"), std::string::npos);
  // Every refused field is back at its default; nothing else changed.
  WorkloadPolicy expected;
  expected.container_oom_group = {{"app", true}};
  expected.pressure_limit = PressureLimit{PressureKind::kSome, 20, 5};
  EXPECT_EQ(tenant_pod.policy, expected);
  EXPECT_EQ(containerOomScoreAdj(tenant_pod.policy, 900), 900);

  // The same annotations in allowlisted namespaces (exact and glob) are applied whole.
  for (const char* ns : {"kube-system", "platform-ingress"}) {
    const EffectivePolicy operator_pod = effectivePolicy(wanted, ns, tenant, 900);
    EXPECT_TRUE(operator_pod.refused.empty()) << ns;
    EXPECT_EQ(operator_pod.policy.protection, Protection::kCritical);
    EXPECT_EQ(operator_pod.policy.oom_score_adj, -500);
    EXPECT_EQ(operator_pod.policy.preference, Preference::kOmit);
    EXPECT_EQ(operator_pod.policy.sigterm_grace_seconds, 60U);
  }
}

TEST(TenantSafety, LessProtectionIsAlwaysAllowed) {
  const TenantPolicy nobody;
  const EffectivePolicy pod = effectivePolicy(annotations({{"oomguard.io/v1.protection", "sacrificial"},
                                                           {"oomguard.io/v1.oom-score-adj", "950"},
                                                           {"oomguard.io/v1.preference", "prefer"},
                                                           {"oomguard.io/v1.sigterm-grace-seconds", "10"}}),
                                              "anyone", nobody, 900);
  EXPECT_TRUE(pod.refused.empty());
  EXPECT_EQ(pod.policy.protection, Protection::kSacrificial);
  EXPECT_EQ(pod.policy.oom_score_adj, 950);
  // An adj equal to kubelet's is no escalation either.
  EXPECT_TRUE(effectivePolicy(annotations({{"oomguard.io/v1.oom-score-adj", "900"}}), "x", nobody, 900)
                  .refused.empty());
  // An invalid value is reported as invalid, not as refused.
  const EffectivePolicy bad =
      effectivePolicy(annotations({{"oomguard.io/v1.protection", "max"}}), "x", nobody, 900);
  EXPECT_EQ(bad.invalid.size(), 1U);
  EXPECT_TRUE(bad.refused.empty());
}

TEST(TenantSafety, NamespaceGlobs) {
  EXPECT_TRUE(namespaceGlobMatches("kube-system", "kube-system"));
  EXPECT_FALSE(namespaceGlobMatches("kube-system", "kube-system2"));
  EXPECT_TRUE(namespaceGlobMatches("kube-*", "kube-"));
  EXPECT_TRUE(namespaceGlobMatches("kube-*", "kube-public"));
  EXPECT_FALSE(namespaceGlobMatches("kube-*", "kubex"));
  EXPECT_TRUE(namespaceGlobMatches("*-prod", "team-a-prod"));
  EXPECT_TRUE(namespaceGlobMatches("team-?-prod", "team-b-prod"));
  EXPECT_FALSE(namespaceGlobMatches("team-?-prod", "team-bb-prod"));
  EXPECT_TRUE(namespaceGlobMatches("*", "anything"));
  EXPECT_TRUE(namespaceGlobMatches("a*b*c", "axxbyyc"));
  EXPECT_FALSE(namespaceGlobMatches("a*b*c", "axxbyy"));
  EXPECT_FALSE(namespaceGlobMatches("", "x"));
}

TEST(TenantSafety, ParsedFromJson) {
  const TenantPolicy tenant = parseTenantPolicy(nlohmann::json::parse(
      R"({"protected_namespaces":["kube-system","platform-*"],"tenant_max_sigterm_grace_seconds":5})"));
  EXPECT_EQ(tenant.protected_namespaces, (std::vector<std::string>{"kube-system", "platform-*"}));
  EXPECT_EQ(tenant.tenant_max_sigterm_grace_seconds, 5U);
  EXPECT_EQ(parseTenantPolicy(nlohmann::json::object()).protected_namespaces.size(), 0U);
  const auto error = [](const char* text) {
    try {
      (void)parseTenantPolicy(nlohmann::json::parse(text));
    } catch (const std::invalid_argument& e) {
      return std::string(e.what());
    }
    return std::string("(no error)");
  };
  EXPECT_EQ(error(R"({"protected_namespaces":["Kube System"]})"),
            "/protected_namespaces/0: must be a namespace name or glob (a-z, 0-9, '-', '*', '?')");
  EXPECT_EQ(error(R"({"tenant_max_sigterm_grace_seconds":-1})"),
            "/tenant_max_sigterm_grace_seconds: must be a whole number from 0 to 120");
  EXPECT_EQ(error(R"({"allow":[]})"), "/allow: unknown key");
  EXPECT_EQ(error("[]"), "must be an object");
}

TEST(ProtectionClasses, BoundKubeletsValue) {
  WorkloadPolicy policy;
  const auto adj = [&](Protection protection, int kubelet) {
    policy.protection = protection;
    return containerOomScoreAdj(policy, kubelet);
  };
  EXPECT_EQ(adj(Protection::kNormal, 750), 750);
  EXPECT_EQ(adj(Protection::kCritical, 750), -998);
  EXPECT_EQ(adj(Protection::kCritical, kGuaranteedOomScoreAdj), -998);
  EXPECT_EQ(adj(Protection::kHigh, 750), -500);
  EXPECT_EQ(adj(Protection::kHigh, kGuaranteedOomScoreAdj), -997);  // never weaker than kubelet's
  EXPECT_EQ(adj(Protection::kLow, 750), 750);                       // never stronger than kubelet's
  EXPECT_EQ(adj(Protection::kLow, 100), 500);
  EXPECT_EQ(adj(Protection::kLow, kGuaranteedOomScoreAdj), 500);
  EXPECT_EQ(adj(Protection::kSacrificial, kGuaranteedOomScoreAdj), 1000);
  policy.oom_score_adj = 42;  // an explicit value wins over the class
  EXPECT_EQ(containerOomScoreAdj(policy, 750), 42);
  // critical stays killable and below the node agents.
  EXPECT_GT(policies::oomScoreAdjFor(Protection::kCritical), -1000);
  EXPECT_GT(policies::oomScoreAdjFor(Protection::kCritical), kKubeletOwnOomScoreAdj);
}

TEST(OomGroup, PodWideAndPerContainer) {
  WorkloadPolicy policy;
  EXPECT_EQ(podOomGroup(policy), std::nullopt);
  EXPECT_EQ(containerOomGroup(policy, "app"), std::nullopt);  // kubelet's value stays
  policy.oom_group = true;
  EXPECT_EQ(podOomGroup(policy), true);
  EXPECT_EQ(containerOomGroup(policy, "app"), std::nullopt);
  policy.oom_group = false;  // single-process kills everywhere in the pod
  EXPECT_EQ(podOomGroup(policy), false);
  EXPECT_EQ(containerOomGroup(policy, "app"), false);
  policy.container_oom_group["db"] = true;
  EXPECT_EQ(containerOomGroup(policy, "db"), true);
  EXPECT_EQ(containerOomGroup(policy, "app"), false);
}

// ---- kubelet's formula (pkg/kubelet/qos/policy.go) ----

constexpr int64_t kGiB = int64_t{1} << 30;

struct KubeletCase {
  const char* name;
  KubeletOomInput input;
  int adj;
};
void PrintTo(const KubeletCase& value, std::ostream* out) {
  *out << value.name;
}

class KubeletFormula : public ::testing::TestWithParam<KubeletCase> {};

TEST_P(KubeletFormula, MatchesKubelet) {
  EXPECT_EQ(kubeletOomScoreAdj(GetParam().input), GetParam().adj);
}

KubeletOomInput burstable(int64_t request, int64_t capacity) {
  KubeletOomInput input;
  input.qos = QosClass::kBurstable;
  input.memory_request_bytes = request;
  input.memory_capacity_bytes = capacity;
  return input;
}

KubeletOomInput qos(QosClass qos, bool node_critical, int64_t request) {
  KubeletOomInput input = burstable(request, 16 * kGiB);
  input.qos = qos;
  input.node_critical = node_critical;
  return input;
}

KubeletOomInput withSidecar(KubeletOomInput input, int64_t min_regular) {
  input.sidecar = true;
  input.min_regular_memory_request_bytes = min_regular;
  return input;
}

KubeletOomInput withPodLevel(KubeletOomInput input, int64_t extra) {
  input.pod_level_extra_request_bytes = extra;
  return input;
}

INSTANTIATE_TEST_SUITE_P(
    Cases, KubeletFormula,
    ::testing::Values(
        KubeletCase{"guaranteed", qos(QosClass::kGuaranteed, false, 4 * kGiB), -997},
        KubeletCase{"besteffort", qos(QosClass::kBestEffort, false, 0), 1000},
        KubeletCase{"node_critical_burstable", qos(QosClass::kBurstable, true, kGiB), -997},
        KubeletCase{"node_critical_besteffort", qos(QosClass::kBestEffort, true, 0), -997},
        KubeletCase{"quarter_of_the_node", burstable(4 * kGiB, 16 * kGiB), 750},
        KubeletCase{"tenth_of_the_node", burstable(1600, 16000), 900},
        KubeletCase{"tiny_request_is_999_not_1000", burstable(1, 16 * kGiB), 999},
        KubeletCase{"no_memory_request", burstable(0, 16 * kGiB), 999},
        KubeletCase{"truncates_like_go", burstable(7, 3000), 998},  // 1000 - 7000/3000 = 1000 - 2
        KubeletCase{"whole_node_is_3", burstable(16 * kGiB, 16 * kGiB), 3},
        KubeletCase{"over_the_node_is_3", burstable(32 * kGiB, 16 * kGiB), 3},
        KubeletCase{"just_under_the_floor", burstable(9980, 10000), 3},  // 1000 - 998 = 2 -> 3
        KubeletCase{"at_the_floor", burstable(9970, 10000), 3},
        KubeletCase{"above_the_floor", burstable(9960, 10000), 4},
        KubeletCase{"sidecar_follows_smallest_regular", withSidecar(burstable(100, 1000), 500), 500},
        KubeletCase{"sidecar_with_larger_request_keeps_its_own", withSidecar(burstable(800, 1000), 500), 200},
        KubeletCase{"pod_level_request_share", withPodLevel(burstable(100, 1000), 200), 700},
        KubeletCase{"pod_level_sidecar", withPodLevel(withSidecar(burstable(100, 1000), 300), 100), 600}));

}  // namespace
}  // namespace oomguard::guardian::kube
