// Workloads: pod objects joined with cgroup paths; annotation -> policy (oom_score_adj, memory.oom.group,
// preference, class, SIGTERM grace), the refused escalation from a namespace the operator did not allow,
// issue reporting once per pod, and the config section that feeds it.
#include "guardian/kube/workloads.hpp"

#include <gtest/gtest.h>

#include "guardian/config/config.hpp"

namespace oomguard::guardian::kube {
namespace {

using config::ConfigError;
using config::parseConfig;
using config::TenantPolicy;

constexpr const char* kUid = "2c48913c-b29f-11e7-9350-020968147796";
constexpr const char* kUidEscaped = "2c48913c_b29f_11e7_9350_020968147796";
constexpr const char* kAppId = "9bca8d63d5fa610783847915bcff0ecac1273e5b4bed3f6fa1b07350e0135961";
constexpr const char* kSidecarId = "40af7cdcbe507acad47a5a62025743ad3ddc6ab93b77b21363aa1c1d641047c9";
constexpr const char* kSandboxId = "5ef1ca4fd5a07a8c61d5a8d5c7c2ac04ec4f6e3b1a7d0d9c2b3a4f5e6d7c8b9a";
constexpr int64_t kMemTotalBytes = 8LL << 30;

const std::string kPodCgroup =
    std::string("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod") + kUidEscaped + ".slice";
std::string containerCgroup(const char* id) {
  return kPodCgroup + "/cri-containerd-" + id + ".scope";
}

KubePod burstablePod(const std::string& namespace_name, std::map<std::string, std::string> annotations) {
  KubePod pod;
  pod.uid = kUid;
  pod.namespace_name = namespace_name;
  pod.name = "web-7d9c";
  pod.resource_version = "100";
  pod.annotations = std::move(annotations);
  pod.qos_class = "Burstable";
  pod.priority = 0;
  pod.containers = {{"app", std::string("containerd://") + kAppId},
                    {"sidecar", std::string("containerd://") + kSidecarId}};
  pod.memory_request_bytes = {{"app", 1LL << 30}, {"sidecar", 64LL << 20}};
  return pod;
}

TenantPolicy allowing(std::vector<std::string> namespaces) {
  TenantPolicy tenant;
  tenant.protected_namespaces = std::move(namespaces);
  return tenant;
}

TEST(Workloads, UnknownPodResolvesToIdentityOnly) {
  Workloads workloads(allowing({}), kMemTotalBytes);
  const auto resolved = workloads.resolve(containerCgroup(kAppId));
  EXPECT_EQ(resolved.identity.role, KubeCgroupRole::kContainer);
  EXPECT_EQ(resolved.identity.pod_uid, kUid);
  EXPECT_EQ(resolved.pod, nullptr);
  EXPECT_TRUE(resolved.labels.pod.empty());
  EXPECT_EQ(workloads.oomScoreAdj(resolved), std::nullopt);
  EXPECT_EQ(Workloads::oomGroup(resolved), std::nullopt);
  EXPECT_EQ(Workloads::protection(resolved), policies::ProtectionClass::kNormal);
}

TEST(Workloads, LabelsAsCadvisorSpellsThem) {
  Workloads workloads(allowing({}), kMemTotalBytes);
  workloads.upsert(burstablePod("shop", {}));
  const auto app = workloads.resolve(containerCgroup(kAppId));
  EXPECT_EQ(app.labels.namespace_name, "shop");
  EXPECT_EQ(app.labels.pod, "web-7d9c");
  EXPECT_EQ(app.labels.container, "app");
  EXPECT_EQ(workloads.resolve(kPodCgroup).labels.container, "");
  EXPECT_EQ(workloads.resolve(containerCgroup(kSandboxId)).labels.container, "POD");
  EXPECT_TRUE(workloads.resolve("/system.slice/kubelet.service").labels.pod.empty());
}

TEST(Workloads, NoAnnotationsLeavesKubeletsValues) {
  Workloads workloads(allowing({}), kMemTotalBytes);
  const auto update = workloads.upsert(burstablePod("shop", {}));
  EXPECT_FALSE(update.policy_changed);
  const auto app = workloads.resolve(containerCgroup(kAppId));
  EXPECT_EQ(workloads.oomScoreAdj(app), std::nullopt);
  EXPECT_EQ(Workloads::oomGroup(app), std::nullopt);
  EXPECT_EQ(Workloads::oomGroup(workloads.resolve(kPodCgroup)), std::nullopt);
}

TEST(Workloads, KubeletFormulaIsTheBaseline) {
  Workloads workloads(allowing({}), kMemTotalBytes);
  const auto pod = burstablePod("shop", {});
  // 1000 - 1000 * 1 GiB / 8 GiB = 875; 1000 - 1000 * 64 MiB / 8 GiB = 992.1875 -> 993 (Go truncates 7.8125)
  EXPECT_EQ(workloads.kubeletOomScoreAdj(pod, "app"), 875);
  EXPECT_EQ(workloads.kubeletOomScoreAdj(pod, "sidecar"), 993);
  auto critical = pod;
  critical.priority_class_name = "system-node-critical";
  critical.priority = 2000001000;
  EXPECT_EQ(workloads.kubeletOomScoreAdj(critical, "app"), -997);
  auto best_effort = pod;
  best_effort.qos_class = "BestEffort";
  EXPECT_EQ(workloads.kubeletOomScoreAdj(best_effort, "app"), 1000);
}

TEST(Workloads, SacrificialAndGroupAnnotationsApply) {
  Workloads workloads(allowing({"batch"}), kMemTotalBytes);  // oom-group "false" needs a protected namespace
  const auto update =
      workloads.upsert(burstablePod("batch", {{"oomguard.io/v1.protection", "sacrificial"},
                                              {"oomguard.io/v1.oom-group", "true"},
                                              {"oomguard.io/v1.oom-group.sidecar", "false"},
                                              {"oomguard.io/v1.preference", "prefer"},
                                              {"oomguard.io/v1.sigterm-grace-seconds", "5"}}));
  EXPECT_TRUE(update.policy_changed);
  EXPECT_TRUE(update.new_invalid.empty());
  EXPECT_TRUE(update.new_refused.empty());
  const auto app = workloads.resolve(containerCgroup(kAppId));
  EXPECT_EQ(workloads.oomScoreAdj(app), 1000);
  EXPECT_EQ(Workloads::protection(app), policies::ProtectionClass::kSacrificial);
  EXPECT_EQ(Workloads::preference(app), policies::Preference::kPrefer);
  EXPECT_EQ(Workloads::sigtermGraceSeconds(app), 5U);
  EXPECT_EQ(Workloads::oomGroup(workloads.resolve(kPodCgroup)), true);
  EXPECT_EQ(Workloads::oomGroup(workloads.resolve(containerCgroup(kSidecarId))), false);
  EXPECT_EQ(Workloads::oomGroup(app),
            std::nullopt);  // no per-container value, pod-wide "true": kubelet's stays
  // The sandbox keeps the runtime's value.
  EXPECT_EQ(workloads.oomScoreAdj(workloads.resolve(containerCgroup(kSandboxId))), std::nullopt);
  // A process in a cgroup below the container's gets the container's value.
  EXPECT_EQ(workloads.oomScoreAdj(workloads.resolve(containerCgroup(kAppId) + "/container")), 1000);
}

TEST(Workloads, EscalationFromANamespaceNotAllowedIsRefusedAndReportedOnce) {
  Workloads workloads(allowing({"kube-system", "platform-*"}), kMemTotalBytes);
  const std::map<std::string, std::string> asks = {{"oomguard.io/v1.protection", "critical"},
                                                   {"oomguard.io/v1.preference", "omit"},
                                                   {"oomguard.io/v1.oom-score-adj", "-900"}};
  const auto update = workloads.upsert(burstablePod("tenant-a", asks));
  EXPECT_FALSE(update.policy_changed);  // every escalation refused: the default policy
  ASSERT_EQ(update.new_refused.size(), 3U);
  EXPECT_EQ(update.new_refused[0].key, "oomguard.io/v1.protection");
  EXPECT_NE(update.new_refused[0].reason.find("tenant-a"), std::string::npos);
  const auto app = workloads.resolve(containerCgroup(kAppId));
  EXPECT_EQ(Workloads::protection(app), policies::ProtectionClass::kNormal);
  EXPECT_EQ(Workloads::preference(app), policies::Preference::kNone);
  EXPECT_EQ(workloads.oomScoreAdj(app), std::nullopt);
  // The same object again (a MODIFIED event for a status change): nothing new to report.
  auto again = burstablePod("tenant-a", asks);
  again.resource_version = "101";
  const auto second = workloads.upsert(again);
  EXPECT_TRUE(second.new_refused.empty());
  EXPECT_FALSE(second.policy_changed);

  // The same annotations from an allowed namespace apply.
  Workloads platform(allowing({"kube-system", "platform-*"}), kMemTotalBytes);
  const auto allowed = platform.upsert(burstablePod("platform-db", asks));
  EXPECT_TRUE(allowed.new_refused.empty());
  const auto db = platform.resolve(containerCgroup(kAppId));
  EXPECT_EQ(platform.oomScoreAdj(db), -900);
  EXPECT_EQ(Workloads::protection(db), policies::ProtectionClass::kCritical);
  EXPECT_EQ(Workloads::preference(db), policies::Preference::kOmit);
}

TEST(Workloads, InvalidAnnotationKeepsTheDefaultAndIsReported) {
  Workloads workloads(allowing({}), kMemTotalBytes);
  const auto update = workloads.upsert(
      burstablePod("shop", {{"oomguard.io/v1.protection", "immortal"}, {"oomguard.io/v1.oom-group", "yes"}}));
  EXPECT_EQ(update.new_invalid.size(), 2U);
  EXPECT_FALSE(update.policy_changed);
  EXPECT_EQ(Workloads::protection(workloads.resolve(containerCgroup(kAppId))),
            policies::ProtectionClass::kNormal);
}

TEST(Workloads, RemovedAnnotationGivesKubeletsValueBack) {
  Workloads workloads(allowing({}), kMemTotalBytes);
  workloads.upsert(burstablePod("shop", {{"oomguard.io/v1.protection", "low"}}));
  EXPECT_EQ(workloads.oomScoreAdj(workloads.resolve(containerCgroup(kAppId))), 875);  // max(875, 500)
  workloads.upsert(burstablePod("shop", {{"oomguard.io/v1.protection", "sacrificial"}}));
  EXPECT_EQ(workloads.oomScoreAdj(workloads.resolve(containerCgroup(kAppId))), 1000);
  const auto update = workloads.upsert(burstablePod("shop", {}));
  EXPECT_TRUE(update.policy_changed);
  EXPECT_EQ(workloads.oomScoreAdj(workloads.resolve(containerCgroup(kAppId))), 875);
  EXPECT_TRUE(workloads.erase(kUid));
  EXPECT_FALSE(workloads.erase(kUid));
  EXPECT_EQ(workloads.resolve(containerCgroup(kAppId)).pod, nullptr);
}

TEST(Workloads, TenantReloadRecomputes) {
  Workloads workloads(allowing({}), kMemTotalBytes);
  workloads.upsert(burstablePod("tenant-a", {{"oomguard.io/v1.protection", "high"}}));
  EXPECT_EQ(Workloads::protection(workloads.resolve(containerCgroup(kAppId))),
            policies::ProtectionClass::kNormal);
  const auto changed = workloads.setTenant(allowing({"tenant-*"}));
  ASSERT_EQ(changed.size(), 1U);
  EXPECT_EQ(changed[0], kUid);
  EXPECT_EQ(Workloads::protection(workloads.resolve(containerCgroup(kAppId))),
            policies::ProtectionClass::kHigh);
  EXPECT_EQ(workloads.oomScoreAdj(workloads.resolve(containerCgroup(kAppId))), -500);
}

TEST(Workloads, GuardianOrderPutsClassesFirst) {
  policies::VictimCandidate big;
  big.pid = 10;
  big.points = 900000;
  big.protection = policies::ProtectionClass::kCritical;
  policies::VictimCandidate small;
  small.pid = 11;
  small.points = 1000;
  small.protection = policies::ProtectionClass::kSacrificial;
  policies::VictimCandidate middle;
  middle.pid = 12;
  middle.points = 50000;
  const auto order = policies::guardianOrder({big, small, middle});
  ASSERT_EQ(order.size(), 3U);
  EXPECT_EQ(order[0].pid, 11);
  EXPECT_EQ(order[1].pid, 12);
  EXPECT_EQ(order[2].pid, 10);
}

TEST(KubernetesConfig, DefaultsOffAndParses) {
  EXPECT_FALSE(parseConfig(R"({"version": 1})", "t").kubernetes.enabled);
  const auto config = parseConfig(R"({"version": 1, "kubernetes": {"enabled": true, "node_name": "node-a",
      "api_server": "https://10.96.0.1:443", "events": false,
      "protected_namespaces": ["kube-system", "platform-*"], "tenant_max_sigterm_grace_seconds": 30}})",
                                  "t");
  EXPECT_TRUE(config.kubernetes.enabled);
  EXPECT_EQ(config.kubernetes.node_name, "node-a");
  EXPECT_FALSE(config.kubernetes.events);
  EXPECT_EQ(config.kubernetes.tenant.protected_namespaces,
            (std::vector<std::string>{"kube-system", "platform-*"}));
  EXPECT_EQ(config.kubernetes.tenant.tenant_max_sigterm_grace_seconds, 30U);
}

TEST(KubernetesConfig, ErrorsNameTheJsonPath) {
  auto error_of = [](const char* text) {
    try {
      parseConfig(text, "t");
    } catch (const ConfigError& error) {
      return std::string(error.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(error_of(R"({"kubernetes": {"protected_namespaces": ["Kube_System"]}})")
                .find("/kubernetes/protected_namespaces/0"),
            std::string::npos);
  EXPECT_NE(error_of(R"({"kubernetes": {"api_server": "http://x"}})").find("/kubernetes/api_server"),
            std::string::npos);
  EXPECT_NE(error_of(R"({"kubernetes": {"tenant_max_sigterm_grace_seconds": 500}})")
                .find("/kubernetes/tenant_max_sigterm_grace_seconds"),
            std::string::npos);
  EXPECT_NE(error_of(R"({"kubernetes": {"enable": true}})").find("/kubernetes/enable: unknown key"),
            std::string::npos);
}

}  // namespace
TEST(Workloads, AnnotationIssuesAreOnePerKeyReplacedNotAppended) {
  // Issue 16: each distinct issue was appended to a per-pod list that was never pruned and searched
  // linearly; a changed value was a new issue. Now: one issue per key, replaced, reported once.
  Workloads workloads(allowing({}), kMemTotalBytes);
  size_t reported = 0;
  for (int update = 0; update < 50; ++update) {
    std::map<std::string, std::string> annotations;
    for (int i = 0; i < 60; ++i) {
      annotations["oomguard.io/v1.oom-group.c" + std::to_string(i)] = "maybe-" + std::to_string(update);
    }
    const auto result = workloads.upsert(burstablePod("shop", annotations));
    reported += result.new_invalid.size();
    // The same object again: nothing new.
    EXPECT_TRUE(workloads.upsert(burstablePod("shop", annotations)).new_invalid.empty());
  }
  EXPECT_EQ(reported, 50U * 60U) << "a changed value is news once";
  // A fixed annotation is forgotten: the same bad value later is news again.
  workloads.upsert(burstablePod("shop", {}));
  EXPECT_EQ(workloads.upsert(burstablePod("shop", {{"oomguard.io/v1.protection", "bogus"}})).new_invalid.size(), 1U);
  workloads.upsert(burstablePod("shop", {}));
  EXPECT_EQ(workloads.upsert(burstablePod("shop", {{"oomguard.io/v1.protection", "bogus"}})).new_invalid.size(), 1U);
}

TEST(Workloads, KeysOverTheBoundAreOneIssue) {
  Workloads workloads(allowing({}), kMemTotalBytes);
  KubePod pod = burstablePod("shop", {});
  pod.annotations_dropped = 9936;
  const auto update = workloads.upsert(pod);
  ASSERT_EQ(update.new_invalid.size(), 1U);
  EXPECT_EQ(update.new_invalid[0].key, "oomguard.io/*");
  EXPECT_NE(update.new_invalid[0].reason.find("at most 64 oom-group.<container> keys"), std::string::npos)
      << update.new_invalid[0].reason;
}

}  // namespace oomguard::guardian::kube
