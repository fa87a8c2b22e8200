// The daemon's Kubernetes side end to end: a kubelet-shaped cgroup tree in a temporary directory (a plain
// directory stands in for cgroupfs, as in daemon_act_test.cpp) holding real processes, a real TLS API
// server on loopback (fake_api_server.hpp) serving the node's pods and taking Events, and a recording
// actuator. The daemon's io_context runs on the test's thread; the server answers on threads of its own.
// Every wait has a deadline: nothing here sleeps for a fixed time.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "daemon_test_support.hpp"
#include "fake_api_server.hpp"
#include "guardian/kube/annotations.hpp"
#include "guardian/daemon/daemon.hpp"
#include "process_population.hpp"

namespace oomguard::testing {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;
using namespace std::chrono_literals;

constexpr const char* kNode = "node-1";
constexpr size_t kMiB = size_t{1024} * 1024;
constexpr const char* kToken = "daemon-token";
// The pod's UID as metadata.uid spells it, and escaped ('-' -> '_') in the systemd driver's slice name.
constexpr const char* kPodUid = "5e1f0c2a-7b3d-4e8f-9a6b-1c2d3e4f5a6b";
const std::string kPodCgroup =
    "/kubepods.slice/kubepods-burstable.slice/"
    "kubepods-burstable-pod5e1f0c2a_7b3d_4e8f_9a6b_1c2d3e4f5a6b.slice";
const std::string kTrainerId = "06ea17a8981d25b0315ff17bd1ebad3d95c15a3f8b764eaadb93612d9b61a54e";
const std::string kMetricsId = "177a7ea3611fe6b138557deaf44941614b66c0ece1766308044c8b65c8ba2123";
const std::string kTrainerCgroup = kPodCgroup + "/cri-containerd-" + kTrainerId + ".scope";
const std::string kMetricsCgroup = kPodCgroup + "/cri-containerd-" + kMetricsId + ".scope";
constexpr const char* kPodName = "trainer-7d9f8c6b5-xk2p4";
constexpr int64_t kTrainerRequest = 512LL << 20;  // the pod object's requests, in bytes
constexpr int64_t kMetricsRequest = 64LL << 20;

// The pod as the API server serves it: a Burstable pod of two containers with memory requests, on this
// node; once `started`, its containers' IDs name the cgroups of the tree (before, they are being created).
Json podObject(const std::string& namespace_name, const std::map<std::string, std::string>& annotations,
               const std::string& resource_version, bool started = true) {
  auto container = [](const std::string& name, const std::string& memory) {
    return Json{
        {"name", name},
        {"image", "registry.example/" + name + ":1.4"},
        {"resources", {{"requests", {{"cpu", "250m"}, {"memory", memory}}}, {"limits", {{"cpu", "2"}}}}}};
  };
  auto container_status = [started](const std::string& name, const std::string& id) {
    if (!started) {
      return Json{{"name", name},
                  {"ready", false},
                  {"restartCount", 0},
                  {"state", {{"waiting", {{"reason", "ContainerCreating"}}}}}};
    }
    return Json{{"name", name},
                {"containerID", "containerd://" + id},
                {"ready", true},
                {"restartCount", 0},
                {"state", {{"running", {{"startedAt", "2024-05-02T09:12:50Z"}}}}}};
  };
  return {{"apiVersion", "v1"},
          {"kind", "Pod"},
          {"metadata",
           {{"name", kPodName},
            {"namespace", namespace_name},
            {"uid", kPodUid},
            {"resourceVersion", resource_version},
            {"annotations", annotations.empty() ? Json::object() : Json(annotations)}}},
          {"spec",
           {{"nodeName", kNode},
            {"priority", 0},
            {"containers", Json::array({container("trainer", "512Mi"), container("metrics", "64Mi")})}}},
          {"status",
           {{"phase", started ? "Running" : "Pending"},
            {"qosClass", "Burstable"},
            {"containerStatuses", Json::array({container_status("trainer", kTrainerId),
                                               container_status("metrics", kMetricsId)})}}}};
}

const std::map<std::string, std::string> kSacrificialGroup = {{"oomguard.io/v1.protection", "sacrificial"},
                                                              {"oomguard.io/v1.oom-group", "true"}};

int64_t memTotalBytes() {
  std::ifstream meminfo("/proc/meminfo");
  std::string key;
  int64_t kb = 0;
  while (meminfo >> key >> kb) {
    if (key == "MemTotal:") {
      return kb * 1024;
    }
    meminfo.ignore(64, '\n');
  }
  return 0;
}

class DaemonKubernetes : public ::testing::Test {
 protected:
  fs::path dir;
  fs::path tree;
  ProcessPopulation population;
  pid_t trainer = 0;  // in the trainer container
  pid_t metrics = 0;  // in the metrics container
  uint64_t now_us = 1'000'000;
  uint64_t max_events = 0;
  Pki pki;
  std::unique_ptr<ApiServer> server;
  std::vector<Json> listed;  // the pods the list answers with (set before the server starts)
  std::mutex watch_mutex;
  std::vector<Json> watch_queue;  // events the open watch stream sends next
  boost::asio::io_context io{1};
  std::ostringstream log_text;
  std::ostringstream summary;
  guardian::exporter::NullMetrics metrics_sink;
  RecordingActuator actuator;
  std::unique_ptr<guardian::io::EventLog> log;
  std::unique_ptr<guardian::daemon::Daemon> daemon;

  void SetUp() override {
    dir = fs::temp_directory_path() / ("oomguard-daemon-kube-" + std::to_string(::getpid()) + "-" +
                                       ::testing::UnitTest::GetInstance()->current_test_info()->name());
    tree = dir / "cgroup";
    fs::remove_all(dir);
    trainer = population.spawn({48 * kMiB, 0, 0});
    metrics = population.spawn({8 * kMiB, 0, 0});
    ASSERT_GT(trainer, 0);
    ASSERT_GT(metrics, 0);
    // kubelet's systemd driver: the pod cgroup (limited to 1 GiB: an OOM domain) holds one cgroup per
    // container.
    fs::create_directories(cgroupDir(kTrainerCgroup));
    fs::create_directories(cgroupDir(kMetricsCgroup));
    writeFile(tree / "cgroup.procs", "");
    for (const std::string& slice :
         {std::string("/kubepods.slice"), std::string("/kubepods.slice/kubepods-burstable.slice")}) {
      writeFile(cgroupDir(slice) / "cgroup.procs", "");
      writeFile(cgroupDir(slice) / "memory.max", "max\n");
    }
    const fs::path pod = cgroupDir(kPodCgroup);
    writeFile(pod / "cgroup.procs", "");
    writeFile(pod / "memory.max", "1073741824\n");
    writeFile(pod / "memory.swap.max", "0\n");
    writeFile(pod / "memory.current", "1000000000\n");
    writeFile(pod / "memory.oom.group", "0\n");
    writeFile(pod / "memory.events", eventsText(0));
    writeFile(cgroupDir(kTrainerCgroup) / "cgroup.procs", std::to_string(trainer) + "\n");
    writeFile(cgroupDir(kMetricsCgroup) / "cgroup.procs", std::to_string(metrics) + "\n");
    for (const std::string& container : {kTrainerCgroup, kMetricsCgroup}) {
      writeFile(cgroupDir(container) / "memory.max", "max\n");
      writeFile(cgroupDir(container) / "memory.oom.group", "0\n");
    }
    // The service account directory: the CA the API server's certificate chains to, and a token.
    pki = makePki(dir);
    writeFile(dir / "token", std::string(kToken) + "\n");
  }

  void TearDown() override {
    daemon.reset();
    if (server) {
      server->stop();
    }
    std::error_code ignored;
    fs::remove_all(dir, ignored);
  }

  [[nodiscard]] fs::path cgroupDir(const std::string& cgroup) const { return tree / cgroup.substr(1); }

  // An API server that lists `pods`, then holds each watch open and sends what pushWatchEvent queued;
  // Events are accepted (201).
  void serve(std::vector<Json> pods) {
    listed = std::move(pods);
    server = std::make_unique<ApiServer>(pki, [this](const Request& request, Responder& out) {
      if (request.method == "POST" && request.path.ends_with("/events")) {
        out.send(201, Json::parse(request.body, nullptr, false));
        return;
      }
      if (request.path != "/api/v1/pods") {
        out.send(404, status(404, "NotFound", "the server could not find the requested resource"));
        return;
      }
      if (!request.isWatch()) {
        out.send(200, podList("100", listed));
        return;
      }
      out.beginStream();
      for (;;) {
        out.hold([this] {
          const std::lock_guard lock(watch_mutex);
          return !watch_queue.empty();
        });
        std::vector<Json> events;
        {
          const std::lock_guard lock(watch_mutex);
          events.swap(watch_queue);
        }
        if (events.empty()) {
          return;  // the server stops (or 20 s passed): the stream is dropped
        }
        for (const Json& event : events) {
          out.event(event);
        }
      }
    });
  }

  void pushWatchEvent(const Json& event) {
    const std::lock_guard lock(watch_mutex);
    watch_queue.push_back(event);
  }

  void start(uint16_t api_port, double refresh_interval_s = 3600) {
    const std::string config_text = R"({"mode": "act", "refresh_interval_s": )" +
                                    std::to_string(refresh_interval_s) +
                                    R"(, "read_kmsg": false, "host": {"pressure": null},
        "policy": {"cooldown_s": 10, "max_kills_per_minute": 2},
        "kubernetes": {"enabled": true, "node_name": ")" +
                                    kNode + R"(", "api_server": "https://127.0.0.1:)" +
                                    std::to_string(api_port) + R"(", "service_account_dir": ")" +
                                    dir.string() + R"(",
                       "protected_namespaces": ["kube-system"]},
        "cgroups": [{"match": ")" + kPodCgroup +
                                    R"(", "act": {"action": "kill-worst", "when": {"on_memory_max": true}}},
                    {"match": "/**"}]})";
    const auto config = guardian::config::parseConfig(config_text, "test");
    guardian::daemon::DaemonOptions options;
    options.cgroup_root = tree.string();
    options.handle_signals = false;
    options.protect_self = false;
    log = std::make_unique<guardian::io::EventLog>(log_text, [] { return std::chrono::system_clock::now(); });
    daemon = std::make_unique<guardian::daemon::Daemon>(io, config, options, *log, metrics_sink, actuator, summary,
                                                [this] { return now_us; });
    daemon->start();
  }

  [[nodiscard]] bool recorded(const std::string& action) const {
    return std::find(actuator.actions.begin(), actuator.actions.end(), action) != actuator.actions.end();
  }

  [[nodiscard]] std::vector<std::string> recordedStartingWith(const std::string& prefix) const {
    std::vector<std::string> found;
    std::copy_if(actuator.actions.begin(), actuator.actions.end(), std::back_inserter(found),
                 [&](const std::string& action) { return action.starts_with(prefix); });
    return found;
  }

  // The Events POSTed so far with this reason: (request path, Event object).
  [[nodiscard]] std::vector<std::pair<std::string, Json>> postedEvents(const std::string& reason) const {
    std::vector<std::pair<std::string, Json>> found;
    for (const Request& request : server->requests()) {
      if (request.method != "POST") {
        continue;
      }
      Json event = Json::parse(request.body, nullptr, false);
      if (!event.is_discarded() && event.value("reason", "") == reason) {
        found.emplace_back(request.path, std::move(event));
      }
    }
    return found;
  }

  [[nodiscard]] std::vector<Json> lines(const std::string& event) const {
    return logLines(log_text.str(), event);
  }

  // Reports a limit hit in the pod cgroup (memory.events "max" rises) and returns the decision logged.
  Json hitLimit() {
    const uint64_t before = daemon->stats().decisions;
    writeFile(cgroupDir(kPodCgroup) / "memory.events", eventsText(++max_events));
    EXPECT_TRUE(runUntil(io, [&] { return daemon->stats().decisions > before; })) << log_text.str();
    const auto decisions = lines("decision");
    return decisions.empty() ? Json() : decisions.back();
  }
};

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

  const Json decision = hitLimit();
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
  const Json decision = hitLimit();
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
  const Json decision = hitLimit();
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
  const Json before = hitLimit();
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
  const Json decision = hitLimit();
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
