// The fixture of the daemon's Kubernetes tests (daemon_kubernetes_test.cpp, daemon_kernel_kills_test.cpp):
// a kubelet-shaped cgroup tree in a temporary directory (a plain directory stands in for cgroupfs) holding
// real processes, a real TLS API server on loopback (fake_api_server.hpp) serving the node's pods and taking
// Events, and a recording actuator. The daemon's io_context runs on the test's thread; the server answers
// on threads of its own. Every wait has a deadline: nothing here sleeps for a fixed time.
#pragma once

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

namespace oomguard::testing::daemon_kube {

namespace fs = std::filesystem;
using Json = nlohmann::json;
using namespace std::chrono_literals;

inline constexpr const char* kNode = "node-1";
inline constexpr size_t kMiB = size_t{1024} * 1024;
inline constexpr const char* kToken = "daemon-token";
// The pod's UID as metadata.uid spells it, and escaped ('-' -> '_') in the systemd driver's slice name.
inline constexpr const char* kPodUid = "5e1f0c2a-7b3d-4e8f-9a6b-1c2d3e4f5a6b";
inline const std::string kPodCgroup =
    "/kubepods.slice/kubepods-burstable.slice/"
    "kubepods-burstable-pod5e1f0c2a_7b3d_4e8f_9a6b_1c2d3e4f5a6b.slice";
inline const std::string kTrainerId = "06ea17a8981d25b0315ff17bd1ebad3d95c15a3f8b764eaadb93612d9b61a54e";
inline const std::string kMetricsId = "177a7ea3611fe6b138557deaf44941614b66c0ece1766308044c8b65c8ba2123";
inline const std::string kTrainerCgroup = kPodCgroup + "/cri-containerd-" + kTrainerId + ".scope";
inline const std::string kMetricsCgroup = kPodCgroup + "/cri-containerd-" + kMetricsId + ".scope";
inline constexpr const char* kPodName = "trainer-7d9f8c6b5-xk2p4";
inline constexpr int64_t kTrainerRequest = 512LL << 20;  // the pod object's requests, in bytes
inline constexpr int64_t kMetricsRequest = 64LL << 20;

// The pod as the API server serves it: a Burstable pod of two containers with memory requests, on this
// node; once `started`, its containers' IDs name the cgroups of the tree (before, they are being created).
inline Json podObject(const std::string& namespace_name, const std::map<std::string, std::string>& annotations,
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

inline const std::map<std::string, std::string> kSacrificialGroup = {{"oomguard.io/v1.protection", "sacrificial"},
                                                              {"oomguard.io/v1.oom-group", "true"}};

inline int64_t memTotalBytes() {
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
    writeLimitedCgroup(cgroupDir(kPodCgroup));
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

  // With `kmsg_path` (a FIFO the test writes kernel records to), the daemon reads it as /dev/kmsg and
  // keeps its kill history in dir/state; without, it reads no kernel log and keeps no history.
  void start(uint16_t api_port, double refresh_interval_s = 3600, const std::string& kmsg_path = "") {
    const std::string kernel_log =
        kmsg_path.empty() ? std::string(R"("read_kmsg": false, "history": null)")
                          : R"("read_kmsg": true, "history": {"dir": ")" + (dir / "state").string() + R"("})";
    const std::string config_text = R"({"mode": "act", "refresh_interval_s": )" +
                                    std::to_string(refresh_interval_s) + ", " + kernel_log +
                                    R"(, "host": {"pressure": null},
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
    if (!kmsg_path.empty()) {
      options.kmsg_path = kmsg_path;
    }
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
  // Callers keep it non-const: a missing member then reads as null (const operator[] would be UB).
  Json hitLimit() {
    const uint64_t before = daemon->stats().decisions;
    writeFile(cgroupDir(kPodCgroup) / "memory.events", eventsText(++max_events));
    EXPECT_TRUE(runUntil(io, [&] { return daemon->stats().decisions > before; })) << log_text.str();
    const auto decisions = lines("decision");
    return decisions.empty() ? Json() : decisions.back();
  }
};

}  // namespace oomguard::testing::daemon_kube
