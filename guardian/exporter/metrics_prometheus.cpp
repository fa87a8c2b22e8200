// PrometheusMetrics: the registry's low-cardinality families, built once, and the Metrics
// implementation the daemon calls. The exposition is in metrics_prometheus_text.cpp, the series scoped
// to a domain or a cgroup in metrics_prometheus_scoped.cpp, the HTTP endpoint in
// metrics_prometheus_http.cpp.
#include "guardian/exporter/metrics_prometheus.hpp"

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "guardian/exporter/metrics_prometheus_internal.hpp"
#include "guardian/text/format.hpp"

namespace oomguard::guardian::exporter {

namespace pm = prometheus;
using namespace detail;

namespace {

// The kernel's spellings (oom-kill:constraint=...), created at 0 so the first kill is an increase.
constexpr std::array<const char*, 4> kConstraints = {"CONSTRAINT_NONE", "CONSTRAINT_CPUSET",
                                                     "CONSTRAINT_MEMORY_POLICY", "CONSTRAINT_MEMCG"};
constexpr std::array<const char*, 2> kPredictionResults = {"match", "mismatch"};

// A counter fed with the kernel's absolute totals: the first reading counts in full (so the counter
// equals the kernel's total, like node_exporter's), later ones count the increase; a total that went
// down (a new cgroup under the old name) counts from zero again.
void addTotal(std::atomic<uint64_t>& counter, std::optional<uint64_t>& last, uint64_t total) {
  const uint64_t increase = last && total >= *last ? total - *last : total;
  counter.fetch_add(increase, std::memory_order_relaxed);
  last = total;
}

}  // namespace

// ---- PrometheusMetrics --------------------------------------------------------------------------------

const std::vector<double>& PrometheusMetrics::scanBuckets() {
  static const std::vector<double> buckets = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                              0.1,    0.25,  0.5,    1,     2.5,  5,     10};
  return buckets;
}

const std::vector<double>& PrometheusMetrics::reactionBuckets() {
  static const std::vector<double> buckets = {0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025,
                                              0.005,   0.01,   0.025,   0.05,   0.1,   0.25,
                                              0.5,     1,      2.5,     5,      10};
  return buckets;
}

PrometheusMetrics::PrometheusMetrics(size_t top_k, const std::string& version, const std::string& kernel)
    : registry_(std::make_shared<pm::Registry>(pm::Registry::InsertBehavior::Throw)),
      scoped_(std::make_unique<ScopedSeries>(top_k)) {
  auto family = [this](auto builder, const char* name, const char* type, const char* help) -> auto& {
    declared_.push_back(Declared{name, help, type});
    return builder.Name(name).Help(help).Register(*registry_);
  };
  kills_ = &family(
      pm::BuildCounter(), "oomguard_kills_total", "counter",
      "Kills oomguard made or attempted, by policy, reason and result (e.g. killed, vanished, failed, "
      "dry_run). Unit: kills.");
  oom_kills_ = &family(
      pm::BuildCounter(), "oomguard_oom_kills_total", "counter",
      "OOM kills on this node by anyone, attributed: namespace, pod and container (empty outside pods), "
      "killer (kernel or oomguard) and constraint. Kept by oomguard, so a container's restart does not reset "
      "them; a pod's series go an hour after the pod. Unit: kills.");
  kernel_oom_kills_ =
      &family(pm::BuildCounter(), "oomguard_kernel_oom_kills_total", "counter",
              "OOM kills by the kernel itself, read from its reports on /dev/kmsg, by constraint "
              "(CONSTRAINT_NONE = host OOM, CONSTRAINT_MEMCG = a cgroup's memory.max, "
              "CONSTRAINT_CPUSET, CONSTRAINT_MEMORY_POLICY). Unit: kills.");
  hooks_ = &family(pm::BuildCounter(), "oomguard_hooks_total", "counter",
                   "Runs of the operator's hooks, by hook (pre_kill, post_kill, warn) and result (ok, failed, "
                   "timeout, missing, spawn_failed, dropped, cancelled). Unit: runs.");
  warnings_ = &family(pm::BuildCounter(), "oomguard_warnings_total", "counter",
                      "Warnings: an act rule's warn level crossed, by the level (reason: headroom, mem_available, "
                      "swap_free, pressure). Unit: warnings.");
  predictions_ =
      &family(pm::BuildCounter(), "oomguard_predictions_total", "counter",
              "Kernel OOM kills checked against oomguard's predicted next victim of that domain: "
              "result=\"match\" (the kernel killed the predicted process) or \"mismatch\". Unit: kills.");
  sysctl_drift_ =
      &family(pm::BuildGauge(), "oomguard_sysctl_drift", "gauge",
              "1 when an OOM-related sysctl (name) differs from the value oomguard's config asks for, "
              "else 0. Dimensionless.");
  build_info_ = &family(pm::BuildGauge(), "oomguard_build_info", "gauge",
                        "Always 1; the labels name the oomguard version and the running kernel release.");
  scan_duration_ =
      &family(pm::BuildHistogram(), "oomguard_scan_duration_seconds", "histogram",
              "Duration of one refresh of the victim rankings (the /proc and cgroup reads and the ranking "
              "of every OOM domain). Unit: seconds.")
           .Add({}, scanBuckets());
  reaction_ =
      &family(pm::BuildHistogram(), "oomguard_reaction_seconds", "histogram",
              "Time from an event (PSI trigger, memory.events change) reaching oomguard's loop to its "
              "decision, and action when there is one. Unit: seconds.")
           .Add({}, reactionBuckets());
  annotation_issues_ =
      &family(pm::BuildCounter(), "oomguard_annotation_issues_total", "counter",
              "oomguard.io annotations of pods not applied, by namespace and kind: \"invalid\" (a bad key "
              "or value; the pod keeps the default) or \"refused\" (more protection asked from a namespace "
              "the operator's config does not allow). Unit: annotations.");
  kubernetes_events_ =
      &family(pm::BuildCounter(), "oomguard_kubernetes_events_total", "counter",
              "Kubernetes Events oomguard posted about pods (kills, refused annotations), by result: sent, "
              "failed (after the retries), dropped (the queue was full). Unit: events.");
  kubernetes_synced_ = &family(pm::BuildGauge(), "oomguard_kubernetes_pods_synced", "gauge",
                               "1 while oomguard's cache of this node's pods reflects a completed list from the "
                               "API server, else 0. Dimensionless.")
                            .Add({});
  kubernetes_pods_ = &family(pm::BuildGauge(), "oomguard_kubernetes_pods", "gauge",
                             "Pods bound to this node in oomguard's cache of the API server. Unit: pods.")
                          .Add({});
  build_info_->Add({{"version", text::validUtf8(version)}, {"kernel", text::validUtf8(kernel)}}).Set(1);
  for (const char* constraint : kConstraints) {
    kernel_oom_series_[constraint] = &kernel_oom_kills_->Add({{"constraint", constraint}});
  }
  for (const char* result : kPredictionResults) {
    prediction_series_[result] = &predictions_->Add({{"result", result}});
  }
}

PrometheusMetrics::~PrometheusMetrics() = default;

void PrometheusMetrics::setVictimRanking(const std::string& domain, const std::string& ranking,
                                         const std::vector<RankedVictim>& top) {
  scoped_->setRanking(domain, ranking, top);
}

void PrometheusMetrics::forgetDomain(const std::string& domain) {
  scoped_->forgetDomain(domain);
}

void PrometheusMetrics::forgetCgroup(const std::string& cgroup) {
  scoped_->forgetCgroup(cgroup);
}

void PrometheusMetrics::countMemoryEvent(const std::string& cgroup, const std::string& event,
                                         uint64_t delta) {
  const auto known = std::find(kMemoryEvents.begin(), kMemoryEvents.end(), event);
  if (known == kMemoryEvents.end()) {
    return;  // keys a newer kernel adds stay out: the label set is fixed
  }
  CgroupSeries& series = scoped_->cgroup(cgroup);
  series.events[static_cast<size_t>(known - kMemoryEvents.begin())].fetch_add(delta,
                                                                              std::memory_order_relaxed);
  series.events_shown.store(true, std::memory_order_release);
}

void PrometheusMetrics::setPressure(const std::string& cgroup, const cgroupfs::Pressure& memory_pressure) {
  CgroupSeries& series = scoped_->cgroup(cgroup);
  addTotal(series.waiting_us, series.last_some_us, memory_pressure.some.total_us);
  const cgroupfs::PressureLine* lines[2] = {&memory_pressure.some,
                                            memory_pressure.full ? &*memory_pressure.full : nullptr};
  for (size_t k = 0; k < 2; ++k) {
    if (lines[k] == nullptr) {
      continue;
    }
    const double averages[3] = {lines[k]->avg10, lines[k]->avg60, lines[k]->avg300};
    for (size_t w = 0; w < 3; ++w) {
      series.ratio[k * 3 + w].store(std::clamp(averages[w] / 100.0, 0.0, 1.0), std::memory_order_relaxed);
    }
  }
  if (memory_pressure.full) {
    addTotal(series.stalled_us, series.last_full_us, memory_pressure.full->total_us);
    series.full_shown.store(true, std::memory_order_release);
  }
  series.pressure_shown.store(true, std::memory_order_release);
}

void PrometheusMetrics::setDomainMemory(const std::string& domain, uint64_t limit_bytes, uint64_t usage_bytes,
                                        std::optional<double> oom_in_seconds) {
  DomainMemorySeries& series = scoped_->domainMemory(domain);
  series.limit_bytes.store(limit_bytes, std::memory_order_relaxed);
  series.usage_bytes.store(usage_bytes, std::memory_order_relaxed);
  series.oom_in_seconds.store(oom_in_seconds && *oom_in_seconds >= 0 ? *oom_in_seconds : -1.0,
                              std::memory_order_relaxed);
}

void PrometheusMetrics::countHook(const std::string& hook, const std::string& result) {
  auto key = std::make_pair(hook, result);
  auto found = hook_series_.find(key);
  if (found == hook_series_.end()) {
    auto& counter = hooks_->Add({{"hook", text::validUtf8(hook)}, {"result", text::validUtf8(result)}});
    found = hook_series_.emplace(std::move(key), &counter).first;
  }
  found->second->Increment();
}

void PrometheusMetrics::countWarning(const std::string& reason) {
  auto found = warning_series_.find(reason);
  if (found == warning_series_.end()) {
    found = warning_series_.emplace(reason, &warnings_->Add({{"reason", text::validUtf8(reason)}})).first;
  }
  found->second->Increment();
}

void PrometheusMetrics::countKill(const std::string& policy, const std::string& reason,
                                  const std::string& result) {
  auto key = std::make_tuple(policy, reason, result);
  auto found = kill_series_.find(key);
  if (found == kill_series_.end()) {
    auto& counter = kills_->Add({{"policy", text::validUtf8(policy)},
                                 {"reason", text::validUtf8(reason)},
                                 {"result", text::validUtf8(result)}});
    found = kill_series_.emplace(std::move(key), &counter).first;
  }
  found->second->Increment();
}

void PrometheusMetrics::countAnnotationIssue(const std::string& namespace_name, const std::string& kind) {
  auto key = std::make_pair(namespace_name, kind);
  auto found = annotation_series_.find(key);
  if (found == annotation_series_.end()) {
    auto& counter = annotation_issues_->Add(
        {{"namespace", text::validUtf8(namespace_name)}, {"kind", text::validUtf8(kind)}});
    found = annotation_series_.emplace(std::move(key), &counter).first;
  }
  found->second->Increment();
}

void PrometheusMetrics::countKubernetesEvents(const std::string& result, uint64_t count) {
  auto found = kubernetes_event_series_.find(result);
  if (found == kubernetes_event_series_.end()) {
    auto& counter = kubernetes_events_->Add({{"result", text::validUtf8(result)}});
    found = kubernetes_event_series_.emplace(result, &counter).first;
  }
  found->second->Increment(static_cast<double>(count));
}

void PrometheusMetrics::setKubernetesPods(bool synced, size_t pods) {
  kubernetes_synced_->Set(synced ? 1 : 0);
  kubernetes_pods_->Set(static_cast<double>(pods));
}

void PrometheusMetrics::countKernelOomKill(const std::string& constraint) {
  auto found = kernel_oom_series_.find(constraint);
  if (found == kernel_oom_series_.end()) {
    found = kernel_oom_series_
                .emplace(constraint, &kernel_oom_kills_->Add({{"constraint", text::validUtf8(constraint)}}))
                .first;
  }
  found->second->Increment();
}

void PrometheusMetrics::countOomKill(const kube::WorkloadLabels& workload, const std::string& killer,
                                     const std::string& constraint) {
  auto key = std::make_tuple(workload.namespace_name, workload.pod, workload.container, killer, constraint);
  auto found = oom_kill_series_.find(key);
  if (found == oom_kill_series_.end()) {
    auto& counter = oom_kills_->Add({{"namespace", text::validUtf8(workload.namespace_name)},
                                     {"pod", text::validUtf8(workload.pod)},
                                     {"container", text::validUtf8(workload.container)},
                                     {"killer", text::validUtf8(killer)},
                                     {"constraint", text::validUtf8(constraint)}});
    found = oom_kill_series_.emplace(std::move(key), &counter).first;
  }
  found->second->Increment();
  gone_pods_us_.erase({workload.namespace_name, workload.pod});  // a pod of that name is back (StatefulSets)
}

void PrometheusMetrics::podGone(const std::string& namespace_name, const std::string& pod, uint64_t now_us) {
  if (std::any_of(oom_kill_series_.begin(), oom_kill_series_.end(), [&](const auto& entry) {
        return std::get<0>(entry.first) == namespace_name && std::get<1>(entry.first) == pod;
      })) {
    gone_pods_us_.try_emplace({namespace_name, pod}, now_us);
  }
}

void PrometheusMetrics::expireSeries(uint64_t now_us) {
  for (auto gone = gone_pods_us_.begin(); gone != gone_pods_us_.end();) {
    if (now_us - std::min(now_us, gone->second) < exporter::kOomKillSeriesTtlUs) {
      ++gone;
      continue;
    }
    for (auto it = oom_kill_series_.begin(); it != oom_kill_series_.end();) {
      if (std::get<0>(it->first) == gone->first.first && std::get<1>(it->first) == gone->first.second) {
        oom_kills_->Remove(it->second);
        it = oom_kill_series_.erase(it);
      } else {
        ++it;
      }
    }
    gone = gone_pods_us_.erase(gone);
  }
}

void PrometheusMetrics::countPrediction(const std::string& result) {
  auto found = prediction_series_.find(result);
  if (found == prediction_series_.end()) {
    found =
        prediction_series_.emplace(result, &predictions_->Add({{"result", text::validUtf8(result)}})).first;
  }
  found->second->Increment();
}

void PrometheusMetrics::observeScanDuration(double seconds) {
  scan_duration_->Observe(seconds);
}

void PrometheusMetrics::observeReaction(double seconds) {
  reaction_->Observe(seconds);
}

void PrometheusMetrics::setSysctlDrift(const std::string& name, bool drifted) {
  auto found = drift_series_.find(name);
  if (found == drift_series_.end()) {
    found = drift_series_.emplace(name, &sysctl_drift_->Add({{"name", text::validUtf8(name)}})).first;
  }
  found->second->Set(drifted ? 1 : 0);
}

}  // namespace oomguard::guardian::exporter
