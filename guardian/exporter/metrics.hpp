// What the daemon reports to Prometheus (DESIGN.md section 5), as an injected object built once at
// start-up. The daemon calls these from its one thread; an implementation publishes the values for a
// scraper without ever blocking that thread. NullMetrics is the implementation for tests and tools.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "cgroupfs/types.hpp"
#include "guardian/kube/kubernetes_identity.hpp"

namespace oomguard::guardian::exporter {

struct RankedVictim {
  size_t rank = 0;  // 1 = next
  std::string cgroup;
  std::string comm;
  long points = 0;
  long oom_score = 0;
  kube::WorkloadLabels workload;
};

// How long the oom-kill series of a pod that is gone stay: long enough for alerts and dashboards to
// see its last kills (the alert rules look 10 minutes back), short enough to bound the series.
inline constexpr uint64_t kOomKillSeriesTtlUs = 3600ULL * 1'000'000;

class Metrics {
 public:
  virtual ~Metrics() = default;
  // Replaces the top K of one domain ("host" or a cgroup path). `ranking` is "kernel" (the kernel's own
  // order) or "oomguard" (after the operator's protections); they differ only when protections apply.
  virtual void setVictimRanking(const std::string& domain, const std::string& ranking,
                                const std::vector<RankedVictim>& top) = 0;
  // A domain or cgroup went away: drop every series that names it.
  virtual void forgetDomain(const std::string& domain) = 0;
  virtual void forgetCgroup(const std::string& cgroup) = 0;
  // A memory.events key of a cgroup rose by `delta` (low, high, max, oom, oom_kill, oom_group_kill).
  virtual void countMemoryEvent(const std::string& cgroup, const std::string& event, uint64_t delta) = 0;
  // The memory PSI of a cgroup ("/" = the host) as last read: totals feed the *_seconds_total counters,
  // the averages the pressure_ratio gauges.
  virtual void setPressure(const std::string& cgroup, const cgroupfs::Pressure& memory_pressure) = 0;
  // The memory limit and use of a domain ("host" or a cgroup path, as in setVictimRanking), in bytes:
  // for the host MemTotal + SwapTotal and (MemTotal - MemAvailable) + (SwapTotal - SwapFree), for a
  // memcg memory.max and memory.current. `oom_in_seconds`: the time-to-OOM forecast from the readings so
  // far (policies::OomForecast), nullopt while the domain is not growing (then no sample). forgetDomain
  // drops them.
  virtual void setDomainMemory(const std::string& domain, uint64_t limit_bytes, uint64_t usage_bytes,
                               std::optional<double> oom_in_seconds) = 0;
  virtual void countKill(const std::string& policy, const std::string& reason, const std::string& result) = 0;
  virtual void countKernelOomKill(const std::string& constraint) = 0;
  // "match" or "mismatch": the kernel's OOM victim against oomguard's prediction for that domain.
  virtual void countPrediction(const std::string& result) = 0;
  virtual void observeScanDuration(double seconds) = 0;
  // From an event reaching the loop to the decision (and action, when there is one).
  virtual void observeReaction(double seconds) = 0;
  virtual void setSysctlDrift(const std::string& name, bool drifted) = 0;
  // An oomguard.io annotation of a pod in `namespace_name` not applied: kind "invalid" or "refused"
  // (an escalation from a namespace the operator did not allow).
  virtual void countAnnotationIssue(const std::string& namespace_name, const std::string& kind) = 0;
  // Kubernetes Events about pods, by result: "sent", "failed" (after the retries), "dropped" (queue full).
  virtual void countKubernetesEvents(const std::string& result, uint64_t count) = 0;
  // The API server's pod watch: 1 while its cache reflects a completed list, and the pods it holds.
  virtual void setKubernetesPods(bool synced, size_t pods) = 0;
  // One run of an operator's hook (io::HookRunner): hook pre_kill | post_kill | warn, result ok | failed |
  // timeout | missing | spawn_failed | dropped | cancelled (a pre_kill hook cut short when oomguard stops).
  virtual void countHook(const std::string& /*hook*/, const std::string& /*result*/) {}
  // One warning (an act rule's warn stage): `reason` the level crossed (headroom | mem_available |
  // swap_free | pressure).
  virtual void countWarning(const std::string& /*reason*/) {}
  // The decision loop turned (a refresh ran): /healthz fails once it has not for the stall limit.
  virtual void loopTurned() {}
  // The stall limit (the daemon's: loopStallLimit of its refresh interval, set again at each refresh).
  virtual void setLoopStallLimit(std::chrono::milliseconds /*limit*/) {}
  // One OOM kill: `killer` "kernel" or "oomguard"; `constraint` the kernel's (CONSTRAINT_MEMCG, _NONE,
  // _CPUSET, _MEMORY_POLICY; oomguard's own kills: CONSTRAINT_MEMCG in a memcg domain, CONSTRAINT_NONE on
  // the host); attributed to the pod's namespace/pod/container (empty outside pods). The series live in
  // oomguard, not in the container: they survive its restarts.
  virtual void countOomKill(const kube::WorkloadLabels& /*workload*/, const std::string& /*killer*/,
                            const std::string& /*constraint*/) {}
  // The pod is gone (deleted, or finished): its oom-kill series are dropped kOomKillSeriesTtlUs after
  // `now_us` (by expireSeries), so the series stay bounded by the pods of the last hour.
  virtual void podGone(const std::string& /*namespace_name*/, const std::string& /*pod*/, uint64_t /*now_us*/) {}
  virtual void expireSeries(uint64_t /*now_us*/) {}
};

// How long the decision loop may go without a turn before /healthz fails: three refresh intervals, and
// at least 30 s (a stuck loop restarts the pod instead of passing its probes forever).
inline std::chrono::milliseconds loopStallLimit(double refresh_interval_s) {
  return std::chrono::milliseconds(static_cast<int64_t>(std::max(30.0, 3 * refresh_interval_s) * 1000));
}

class NullMetrics final : public Metrics {
 public:
  void setVictimRanking(const std::string&, const std::string&, const std::vector<RankedVictim>&) override {}
  void forgetDomain(const std::string&) override {}
  void forgetCgroup(const std::string&) override {}
  void countMemoryEvent(const std::string&, const std::string&, uint64_t) override {}
  void setPressure(const std::string&, const cgroupfs::Pressure&) override {}
  void setDomainMemory(const std::string&, uint64_t, uint64_t, std::optional<double>) override {}
  void countKill(const std::string&, const std::string&, const std::string&) override {}
  void countKernelOomKill(const std::string&) override {}
  void countPrediction(const std::string&) override {}
  void observeScanDuration(double) override {}
  void observeReaction(double) override {}
  void setSysctlDrift(const std::string&, bool) override {}
  void countAnnotationIssue(const std::string&, const std::string&) override {}
  void countKubernetesEvents(const std::string&, uint64_t) override {}
  void setKubernetesPods(bool, size_t) override {}
};

}  // namespace oomguard::guardian::exporter
