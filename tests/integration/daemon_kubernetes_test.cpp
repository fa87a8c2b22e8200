// The daemon's Kubernetes side end to end: a kubelet-shaped cgroup tree in a temporary directory (a plain
// directory stands in for cgroupfs, as in daemon_act_test.cpp) holding real processes, a real TLS API
// server on loopback (fake_api_server.hpp) serving the node's pods and taking Events, and a recording
// actuator. The daemon's io_context runs on the test's thread; the server answers on threads of its own.
// Every wait has a deadline: nothing here sleeps for a fixed time.
#include <gtest/gtest.h>

#include "daemon_kubernetes_fixture.hpp"

namespace oomguard::testing {
namespace {

using namespace daemon_kube;  // NOLINT(google-build-using-namespace): the fixture and its constants
namespace fs = std::filesystem;
using Json = nlohmann::json;
using namespace std::chrono_literals;

const Json* candidateOf(const Json& decision, pid_t pid) {
  for (const Json& candidate : decision["candidates"]) {
    if (candidate["pid"] == pid) {
      return &candidate;
    }
  }
  return nullptr;
}

TEST_F(DaemonKubernetes, AnnotationsAreAppliedLabelsLoggedAndTheKillReportedAsAnEvent) {
  serve({podObject("batch", kSacrificialGroup, "90")});
  start(server->port());

  // sacrificial: oom_score_adj 1000 for the processes of both containers; oom-group: the pod cgroup's
  // memory.oom.group. Both come from the refresh posted when the pod arrived (the timer's is an hour away).
  ASSERT_TRUE(runUntil(io, [&] {
    return recorded("adj " + std::to_string(trainer) + " 1000") &&
           recorded("adj " + std::to_string(metrics) + " 1000") && recorded("oom.group " + kPodCgroup + " 1");
  })) << log_text.str();
  EXPECT_EQ(daemon->stats().refreshes, 2U);
  for (const std::string& action : recordedStartingWith("adj ")) {
    EXPECT_TRUE(action == "adj " + std::to_string(trainer) + " 1000" ||
                action == "adj " + std::to_string(metrics) + " 1000")
        << action;
  }
  // Only the pod cgroup: oom-group "true" leaves the containers' own memory.oom.group to kubelet.
  for (const std::string& action : recordedStartingWith("oom.group ")) {
    EXPECT_EQ(action, "oom.group " + kPodCgroup + " 1");
  }
  const auto protections = lines("protection");
  ASSERT_GE(protections.size(), 3U);
  for (const Json& line : protections) {
    EXPECT_EQ(line["source"], "annotation") << line.dump();
  }
  const auto policies = lines("pod_policy");
  ASSERT_EQ(policies.size(), 1U);
  EXPECT_EQ(policies[0]["namespace"], "batch");
  EXPECT_EQ(policies[0]["pod"], kPodName);
  EXPECT_EQ(policies[0]["policy"]["protection"], "sacrificial");
  EXPECT_EQ(policies[0]["policy"]["oom_group"], true);
  // The requests carried the service account's token.
  ASSERT_FALSE(server->requests().empty());
  EXPECT_EQ(server->requests().front().authorization, std::string("Bearer ") + kToken);
  EXPECT_EQ(server->requests().front().param("fieldSelector"), "spec.nodeName=node-1");

  // What the real actuator's write would have left in the tree; and a hungry child forked in the metrics
  // container, which makes it the kernel's next victim.
  writeFile(cgroupDir(kPodCgroup) / "memory.oom.group", "1\n");
  const pid_t burst = population.spawn({96 * kMiB, 0, 0});
  ASSERT_GT(burst, 0);
  writeFile(cgroupDir(kMetricsCgroup) / "cgroup.procs",
            std::to_string(metrics) + "\n" + std::to_string(burst) + "\n");

  Json decision = hitLimit();
  ASSERT_FALSE(decision.is_null()) << log_text.str();
  EXPECT_EQ(decision["domain"]["cgroup"], kPodCgroup);
  const std::map<pid_t, std::string> containers = {
      {trainer, "trainer"}, {metrics, "metrics"}, {burst, "metrics"}};
  for (const auto& [pid, container] : containers) {
    const Json* candidate = candidateOf(decision, pid);
    ASSERT_NE(candidate, nullptr) << "pid " << pid << " in " << decision.dump();
    EXPECT_EQ((*candidate)["namespace"], "batch") << candidate->dump();
    EXPECT_EQ((*candidate)["pod"], kPodName) << candidate->dump();
    EXPECT_EQ((*candidate)["container"], container) << candidate->dump();
  }
  EXPECT_EQ(decision["victim"]["pid"], burst);
  EXPECT_EQ(decision["victim"]["container"], "metrics");
  // The new prediction is logged with the pod's names too.
  const auto predictions = lines("next_victim");
  ASSERT_FALSE(predictions.empty());
  const Json& prediction = predictions.back()["victim"];
  EXPECT_EQ(prediction["pid"], burst) << prediction.dump();
  EXPECT_EQ(prediction["namespace"], "batch");
  EXPECT_EQ(prediction["pod"], kPodName);
  EXPECT_EQ(prediction["container"], "metrics");

  // memory.oom.group on the pod: the whole pod goes, as the kernel would take it.
  EXPECT_EQ(decision["action"], "kill_cgroup") << decision.dump();
  EXPECT_EQ(decision["result"], "killed");
  EXPECT_EQ(decision["cgroup"], kPodCgroup);
  EXPECT_EQ(decision["target"]["namespace"], "batch");
  EXPECT_EQ(decision["target"]["pod"], kPodName);
  EXPECT_EQ(decision["target"]["container"], "metrics");
  EXPECT_TRUE(recorded("kill-cgroup " + kPodCgroup));

  // After the kill, an Event on the pod.
  ASSERT_TRUE(runUntil(io, [&] { return !postedEvents("OomguardKilled").empty(); })) << log_text.str();
  const auto killed = postedEvents("OomguardKilled");
  ASSERT_EQ(killed.size(), 1U);
  EXPECT_EQ(killed[0].first, "/api/v1/namespaces/batch/events");
  const Json& event = killed[0].second;
  EXPECT_EQ(event["type"], "Warning");
  EXPECT_EQ(event["involvedObject"]["kind"], "Pod");
  EXPECT_EQ(event["involvedObject"]["namespace"], "batch");
  EXPECT_EQ(event["involvedObject"]["name"], kPodName);
  EXPECT_EQ(event["involvedObject"]["uid"], kPodUid);
  EXPECT_EQ(event["source"]["host"], kNode);
  const std::string message = event.value("message", "");
  EXPECT_NE(message.find("cgroup " + kPodCgroup + " (memory.oom.group)"), std::string::npos) << message;
  EXPECT_NE(message.find("in container metrics"), std::string::npos) << message;
  EXPECT_NE(message.find("trigger memory_max"), std::string::npos) << message;
  EXPECT_TRUE(postedEvents("OomguardAnnotationRefused").empty());
}

TEST_F(DaemonKubernetes, EscalationFromATenantNamespaceIsRefusedLoggedAndReported) {
  serve({podObject("tenant-a", {{"oomguard.io/v1.protection", "critical"}}, "90")});
  start(server->port(), 0.1);

  ASSERT_TRUE(runUntil(io, [&] { return !lines("annotation_refused").empty(); })) << log_text.str();
  const auto refused = lines("annotation_refused");
  ASSERT_EQ(refused.size(), 1U);
  EXPECT_EQ(refused[0]["namespace"], "tenant-a");
  EXPECT_EQ(refused[0]["pod"], kPodName);
  EXPECT_EQ(refused[0]["key"], "oomguard.io/v1.protection");
  EXPECT_EQ(refused[0]["value"], "critical");
  EXPECT_FALSE(refused[0].value("reason", "").empty());

  ASSERT_TRUE(runUntil(io, [&] { return !postedEvents("OomguardAnnotationRefused").empty(); }));
  const auto events = postedEvents("OomguardAnnotationRefused");
  ASSERT_EQ(events.size(), 1U);
  EXPECT_EQ(events[0].first, "/api/v1/namespaces/tenant-a/events");
  EXPECT_EQ(events[0].second["involvedObject"]["name"], kPodName);
  EXPECT_EQ(events[0].second["involvedObject"]["uid"], kPodUid);
  EXPECT_NE(events[0].second.value("message", "").find("oomguard.io/v1.protection=\"critical\" not applied"),
            std::string::npos)
      << events[0].second.dump();

  // Refreshes go on with the pod known (a decision names it) and none writes critical's -998, nor any
  // other value: the refused annotation leaves the pod as kubelet set it.
  const uint64_t refreshes = daemon->stats().refreshes;
  ASSERT_TRUE(runUntil(io, [&] { return daemon->stats().refreshes >= refreshes + 3; }));
  Json decision = hitLimit();
  const Json* candidate = candidateOf(decision, trainer);
  ASSERT_NE(candidate, nullptr) << decision.dump();
  EXPECT_EQ((*candidate)["namespace"], "tenant-a");
  EXPECT_EQ((*candidate)["container"], "trainer");
  EXPECT_EQ((*candidate)["oom_score_adj"], 0);
  EXPECT_FALSE(recorded("adj " + std::to_string(trainer) + " -998"));
  EXPECT_FALSE(recorded("adj " + std::to_string(metrics) + " -998"));
  EXPECT_TRUE(recordedStartingWith("adj ").empty()) << log_text.str();
  EXPECT_TRUE(recordedStartingWith("oom.group ").empty());
  EXPECT_TRUE(lines("pod_policy").empty());
  // The kill goes ahead on the kernel's ranking: critical gave the trainer no protection.
  EXPECT_EQ(decision["target"]["pid"], trainer) << decision.dump();
  EXPECT_EQ(decision["result"], "killed");
}

TEST_F(DaemonKubernetes, PodArrivingThroughTheWatchIsProtectedLive) {
  serve({});
  start(server->port());
  // Listed (empty) and watching: nothing known, nothing written.
  ASSERT_TRUE(runUntil(io, [&] {
    const auto requests = server->requests();
    return std::any_of(requests.begin(), requests.end(),
                       [](const Request& request) { return request.isWatch(); });
  }));
  runFor(io, 50ms);
  EXPECT_TRUE(actuator.actions.empty());
  EXPECT_EQ(hitLimit()["victim"].count("namespace"), 0U);

  pushWatchEvent(watchEvent("ADDED", podObject("batch", kSacrificialGroup, "101")));
  ASSERT_TRUE(runUntil(io, [&] {
    return recorded("adj " + std::to_string(trainer) + " 1000") &&
           recorded("adj " + std::to_string(metrics) + " 1000") && recorded("oom.group " + kPodCgroup + " 1");
  })) << log_text.str();
  Json decision = hitLimit();
  EXPECT_EQ(decision["victim"]["pod"], kPodName) << decision.dump();

  // The annotations removed: kubelet's own value goes back, per container (its memory request).
  actuator.actions.clear();
  pushWatchEvent(watchEvent("MODIFIED", podObject("batch", {}, "102")));
  const int64_t capacity = memTotalBytes();
  ASSERT_GT(capacity, 0);
  guardian::kube::KubeletOomInput burstable;
  burstable.qos = guardian::kube::QosClass::kBurstable;
  burstable.memory_capacity_bytes = capacity;
  burstable.memory_request_bytes = kTrainerRequest;
  const int trainer_adj = guardian::kube::kubeletOomScoreAdj(burstable);
  burstable.memory_request_bytes = kMetricsRequest;
  const int metrics_adj = guardian::kube::kubeletOomScoreAdj(burstable);
  ASSERT_NE(trainer_adj, metrics_adj);
  ASSERT_TRUE(runUntil(io, [&] {
    return recorded("adj " + std::to_string(trainer) + " " + std::to_string(trainer_adj)) &&
           recorded("adj " + std::to_string(metrics) + " " + std::to_string(metrics_adj));
  })) << log_text.str();
  EXPECT_EQ(daemon->stats().refreshes, 3U);  // the start, and one per pod change: never the timer
}

TEST_F(DaemonKubernetes, ContainersNamedAfterThePodArrivedAreProtectedAtOnce) {
  // As a pod starts: ADDED while its containers are being created, MODIFIED once they run. The policy
  // does not change in between, but only then can it reach the containers' processes.
  serve({podObject("batch", kSacrificialGroup, "90", false)});
  start(server->port());
  ASSERT_TRUE(runUntil(io, [&] { return !lines("pod_policy").empty() && daemon->stats().refreshes >= 2; }))
      << log_text.str();
  EXPECT_TRUE(recorded("oom.group " + kPodCgroup + " 1"));  // the pod cgroup needs no container name
  EXPECT_TRUE(recordedStartingWith("adj ").empty());
  // Not named by the pod's status yet: kubelet's labels call such a container the sandbox.
  Json before = hitLimit();
  const Json* unnamed = candidateOf(before, trainer);
  ASSERT_NE(unnamed, nullptr) << before.dump();
  EXPECT_EQ((*unnamed)["container"], "POD");

  pushWatchEvent(watchEvent("MODIFIED", podObject("batch", kSacrificialGroup, "91")));
  ASSERT_TRUE(runUntil(io, [&] {
    return recorded("adj " + std::to_string(trainer) + " 1000") &&
           recorded("adj " + std::to_string(metrics) + " 1000");
  })) << log_text.str();
  EXPECT_EQ(daemon->stats().refreshes, 3U);  // the pod change's, not the timer's
}

TEST_F(DaemonKubernetes, UnreachableApiServerNeverHoldsTheGuardianBack) {
  // A port nobody listens on: every connection is refused.
  uint16_t closed_port = 0;
  {
    boost::asio::io_context scratch;
    boost::asio::ip::tcp::acceptor probe(
        scratch, boost::asio::ip::tcp::endpoint(boost::asio::ip::make_address("127.0.0.1"), 0));
    closed_port = probe.local_endpoint().port();
  }
  start(closed_port);
  EXPECT_EQ(lines("started").size(), 1U) << log_text.str();
  ASSERT_TRUE(runUntil(io, [&] {
    const auto kubernetes = lines("kubernetes");
    return std::any_of(kubernetes.begin(), kubernetes.end(),
                       [](const Json& line) { return line.value("what", "") == "reconnect"; });
  })) << log_text.str();
  const auto kubernetes = lines("kubernetes");
  const auto reconnect = std::find_if(kubernetes.begin(), kubernetes.end(),
                                      [](const Json& line) { return line.value("what", "") == "reconnect"; });
  ASSERT_NE(reconnect, kubernetes.end());
  EXPECT_NE(reconnect->value("detail", "").find("127.0.0.1:" + std::to_string(closed_port)),
            std::string::npos)
      << reconnect->dump();

  // The guardian ranks and acts on the tree as without Kubernetes: the trainer (the pod's largest) dies.
  Json decision = hitLimit();
  ASSERT_FALSE(decision.is_null()) << log_text.str();
  EXPECT_EQ(decision["domain"]["cgroup"], kPodCgroup);
  EXPECT_EQ(decision["action"], "kill");
  EXPECT_EQ(decision["result"], "killed");
  EXPECT_EQ(decision["target"]["pid"], trainer);
  EXPECT_EQ(decision["target"].count("pod"), 0U) << decision.dump();
  EXPECT_EQ(decision["victim"].count("namespace"), 0U);
  EXPECT_EQ(actuator.actions, (std::vector<std::string>{"kill " + std::to_string(trainer) + " grace 0"}));
}

}  // namespace
}  // namespace oomguard::testing
