// The daemon's Kubernetes side (config.kubernetes): the pod watch feeding kube::Workloads, Events about
// pods, the labels of a cgroup, and the pods' pressure limits (oomguard.io/v1.pressure-limit: a PSI
// trigger on the pod's cgroup, and what crossing it does). Nothing here is on the decision path's
// critical section: the watch and the Events run on the same loop, asynchronously, and a decision only
// reads what is already cached.
#pragma once

#include <boost/asio/io_context.hpp>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "guardian/config/config.hpp"
#include "guardian/daemon/context.hpp"
#include "guardian/daemon/executor.hpp"
#include "guardian/daemon/watch_set.hpp"
#include "guardian/exporter/metrics.hpp"
#include "guardian/io/event_log.hpp"
#include "guardian/io/node.hpp"
#include "guardian/io/watchers.hpp"
#include "guardian/kube/pod.hpp"
#include "guardian/kube/workloads.hpp"
#include "guardian/kube_client/client.hpp"

namespace oomguard::guardian::daemon {

class Pods {
 public:
  // `request_refresh`: the protections should follow a changed pod policy (mode act): one refresh soon.
  Pods(boost::asio::io_context& io, io::Node& node, const config::Config& config, const io::NodeFacts& facts,
       io::EventLog& log, exporter::Metrics& metrics, Executor& executor, DaemonStats& stats, const Clock& clock,
       std::function<void()> request_refresh);
  ~Pods();
  Pods(const Pods&) = delete;
  Pods& operator=(const Pods&) = delete;

  // Starts the pod watch (and the Event recorder) when config.kubernetes.enabled.
  void start();
  // Disarms the pressure triggers and stops the watch; no callback runs after it.
  void stop();

  // The pods known so far; null when Kubernetes is off. The reference stays valid for the Pods' life.
  [[nodiscard]] const kube::Workloads* const& workloads() const { return workloads_raw_; }
  // namespace/pod/container of a cgroup once its pod is known; empty otherwise.
  [[nodiscard]] kube::WorkloadLabels labelsOf(const std::string& cgroup) const;
  [[nodiscard]] const std::string& status() const { return status_; }

  // At each refresh: the pod watch's state and the Events sent into the metrics; the pressure-limit
  // triggers matched to the pods' policies and the cgroups in `watch_set`.
  void publishStatus();
  void reconcilePressure(const WatchSet& watch_set);
  // A Warning Event on the pod, best effort (queued; never waits). `essential` for a kill's Event: the
  // recorder never lets the others crowd it out. The message is sent as text::printable shows it (a
  // value from an annotation can hold newlines and escapes).
  void reportEvent(const kube::KubePod& pod, const std::string& reason, const std::string& message,
                   bool essential = false);
  // A kernel OOM kill in a pod's cgroup: a Warning Event on the pod (OomguardKernelOomKill) with the
  // victim, its memory, the domain and oomguard's prediction; one per OOM (a group kill's members get
  // none of their own), at most one per pod every kKernelKillEventGapUs (the next one says how many
  // kills it stands for). Outside pods: nothing (the log line and the counter have it).
  void reportKernelKill(const std::string& cgroup, const std::string& message);
  static constexpr uint64_t kKernelKillEventGapUs = 10'000'000;
  // After a config reload: the tenant policy applies at once; each pod whose policy changed is logged.
  void tenantChanged();

 private:
  struct PodPressure {
    std::string cgroup;  // the pod-level cgroup
    kube::PressureLimit limit;
    std::shared_ptr<io::PressureWatch> watch;  // null when arming failed (tried once per limit)
    bool no_descriptor = false;                // not armed for want of a descriptor: tried again when one is free
    uint64_t first_fire_us = 0;                // the current streak of fires (limits longer than a window)
    uint64_t last_fire_us = 0;
  };
  void onPodChange(const kube::PodChange& change);
  void onPodPressure(const std::string& uid, bool gone, const std::string& text);
  [[nodiscard]] nlohmann::ordered_json policyJson(const std::string& uid) const;

  boost::asio::io_context& io_;
  io::Node& node_;
  const config::Config& config_;
  const io::NodeFacts& facts_;
  io::EventLog& log_;
  exporter::Metrics& metrics_;
  Executor& executor_;
  DaemonStats& stats_;
  const Clock& clock_;
  // Per pod uid: when its last kernel-kill Event went, and the kills since that had none.
  std::map<std::string, std::pair<uint64_t, uint32_t>> kernel_kill_events_;
  std::function<void()> request_refresh_;
  std::unique_ptr<kube::Workloads> workloads_;
  const kube::Workloads* workloads_raw_ = nullptr;
  std::unique_ptr<kube_client::PodSource> pod_watch_;   // from the TLS client module
  std::unique_ptr<kube_client::EventSink> pod_events_;
  std::string status_ = "off (kubernetes.enabled: false)";
  kube_client::EventRecorderStatus events_counted_;  // what publishStatus has counted into the metrics
  std::map<std::string, PodPressure> pressure_;      // by pod uid
  bool stopped_ = false;
};

}  // namespace oomguard::guardian::daemon
