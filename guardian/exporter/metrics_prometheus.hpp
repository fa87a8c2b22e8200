// The Prometheus exporter (DESIGN.md section 5): a Metrics implementation served over HTTP by
// HttpServer (Boost.Beast) on a thread of its own.
//
// Two kinds of series. The low-cardinality families (kills, kernel OOM kills, predictions, the two
// histograms, sysctl drift, build info) are prometheus-cpp Families in one Registry, built once in the
// constructor. Everything scoped to a domain or a cgroup (victim rankings, domain memory, memory.events,
// PSI), which is tens of thousands of series on a big node, lives in a table of our own (ScopedSeries in
// metrics_prometheus_internal.hpp and metrics_prometheus_scoped.cpp) and is written straight into the
// exposition text: prometheus-cpp's Collectable route (a ClientMetric per series, then its
// TextSerializer) took 60-95 ms and left 35 MiB more RSS per scrape at 500 domains.
//
// Threads. The daemon calls the Metrics methods from its one thread; scrapes run on the server's thread.
// A domain's ranking is an immutable snapshot swapped in by pointer (so a scrape shows each ranking
// whole), a cgroup's (and a domain's memory) values are atomics, and a scrape holds the table's mutex only to copy pointers: the
// daemon never waits for a scrape's formatting or network I/O. Registry families lock only themselves,
// briefly. Only the daemon's thread adds or removes series.
//
// HTTP. Only GET /metrics (text format 0.0.4) and GET|HEAD /healthz (200 "ok"); any other path is 404
// and any other method 405 (prometheus-cpp's Exposer could not add /healthz nor answer 404 for
// /metrics/anything). The server's bounds (timeouts, connection slots) are in http_server.hpp.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <unordered_map>
#include <vector>

#include "guardian/exporter/http_server.hpp"
#include "guardian/exporter/metrics.hpp"

namespace prometheus {
class Counter;
class Gauge;
class Histogram;
class Registry;
template <typename T>
class Family;
}  // namespace prometheus

namespace oomguard::guardian::exporter {

class PrometheusMetrics final : public Metrics {
 public:
  // `top_k`: the most victims exported per domain and ranking (whatever the daemon passes);
  // `version` and `kernel` label oomguard_build_info.
  PrometheusMetrics(size_t top_k, const std::string& version, const std::string& kernel);
  ~PrometheusMetrics() override;
  PrometheusMetrics(const PrometheusMetrics&) = delete;
  PrometheusMetrics& operator=(const PrometheusMetrics&) = delete;

  // Starts serving on `listen` (parseListenAddress: "127.0.0.1:9743"; port 0 picks a free one) on one
  // thread of its own. Throws std::runtime_error when the address is invalid or cannot be bound (with
  // the errno). Call at most once.
  void serve(const std::string& listen, HttpServer::Limits limits = {});
  // Also serves /healthz alone on `listen` (same rules as serve), on a thread of its own.
  void serveHealth(const std::string& listen, HttpServer::Limits limits = {});
  // /healthz answers 503 once loopTurned() has not been called for `limit` (from serve() on).
  void setLoopStallLimit(std::chrono::milliseconds limit) override { stall_limit_ms_ = limit.count(); }
  void loopTurned() override;
  void countOomKill(const kube::WorkloadLabels& workload, const std::string& killer,
                    const std::string& constraint) override;
  void podGone(const std::string& namespace_name, const std::string& pod, uint64_t now_us) override;
  void expireSeries(uint64_t now_us) override;
  // The port(s) bound by serve() (the real one when it was given port 0).
  [[nodiscard]] std::vector<int> listeningPorts() const;

  // What GET /metrics returns (text format 0.0.4), handed to `flush` in pieces of about 64 KiB, and
  // whole; and the number of samples in it. Thread-safe.
  void write(const std::function<void(std::string_view)>& flush) const;
  [[nodiscard]] std::string render() const;
  [[nodiscard]] size_t seriesCount() const;

  void setVictimRanking(const std::string& domain, const std::string& ranking,
                        const std::vector<RankedVictim>& top) override;
  void forgetDomain(const std::string& domain) override;
  void forgetCgroup(const std::string& cgroup) override;
  void countMemoryEvent(const std::string& cgroup, const std::string& event, uint64_t delta) override;
  void setPressure(const std::string& cgroup, const cgroupfs::Pressure& memory_pressure) override;
  void setDomainMemory(const std::string& domain, uint64_t limit_bytes, uint64_t usage_bytes,
                       std::optional<double> oom_in_seconds) override;
  void countKill(const std::string& policy, const std::string& reason, const std::string& result) override;
  void countKernelOomKill(const std::string& constraint) override;
  void countPrediction(const std::string& result) override;
  void observeScanDuration(double seconds) override;
  void observeReaction(double seconds) override;
  void setSysctlDrift(const std::string& name, bool drifted) override;
  void countAnnotationIssue(const std::string& namespace_name, const std::string& kind) override;
  void countKubernetesEvents(const std::string& result, uint64_t count) override;
  void setKubernetesPods(bool synced, size_t pods) override;
  void countHook(const std::string& hook, const std::string& result) override;
  void countWarning(const std::string& reason) override;

  // Bucket upper bounds (seconds) of the two histograms.
  static const std::vector<double>& scanBuckets();
  static const std::vector<double>& reactionBuckets();

 private:
  class ScopedSeries;
  struct Declared {
    std::string name;
    std::string help;
    std::string type;
  };

  std::shared_ptr<prometheus::Registry> registry_;
  std::unique_ptr<ScopedSeries> scoped_;
  std::vector<Declared> declared_;  // the registry's families, for HELP/TYPE while they have no series

  prometheus::Family<prometheus::Counter>* kills_;
  prometheus::Family<prometheus::Counter>* kernel_oom_kills_;
  prometheus::Family<prometheus::Counter>* oom_kills_;
  // By (namespace, pod, container, killer, constraint); and when each gone pod went (by namespace, pod).
  std::map<std::tuple<std::string, std::string, std::string, std::string, std::string>, prometheus::Counter*>
      oom_kill_series_;
  std::map<std::pair<std::string, std::string>, uint64_t> gone_pods_us_;
  prometheus::Family<prometheus::Counter>* predictions_;
  prometheus::Family<prometheus::Gauge>* sysctl_drift_;
  prometheus::Family<prometheus::Gauge>* build_info_;
  prometheus::Family<prometheus::Counter>* annotation_issues_;
  prometheus::Family<prometheus::Counter>* kubernetes_events_;
  prometheus::Family<prometheus::Counter>* hooks_;
  prometheus::Family<prometheus::Counter>* warnings_;
  std::map<std::string, prometheus::Counter*> warning_series_;
  std::map<std::pair<std::string, std::string>, prometheus::Counter*> hook_series_;
  prometheus::Gauge* kubernetes_synced_;
  prometheus::Gauge* kubernetes_pods_;
  prometheus::Histogram* scan_duration_;
  prometheus::Histogram* reaction_;
  // Series of the small families, found again without the family's lock (daemon thread only).
  std::map<std::tuple<std::string, std::string, std::string>, prometheus::Counter*> kill_series_;
  std::unordered_map<std::string, prometheus::Counter*> kernel_oom_series_;
  std::unordered_map<std::string, prometheus::Counter*> prediction_series_;
  std::unordered_map<std::string, prometheus::Gauge*> drift_series_;
  std::map<std::pair<std::string, std::string>, prometheus::Counter*> annotation_series_;
  std::map<std::string, prometheus::Counter*> kubernetes_event_series_;

  // The response to one request (the server's thread).
  [[nodiscard]] HttpServer::Response answer(std::string_view method, std::string_view path) const;

  // What GET|HEAD /healthz answers: 200 "ok", or 503 when the loop has stalled (any thread).
  [[nodiscard]] HttpServer::Response health(std::string_view method) const;

  std::atomic<int64_t> loop_turned_ms_{0};  // steady_clock, milliseconds
  std::atomic<int64_t> stall_limit_ms_{60'000};
  std::unique_ptr<HttpServer> health_server_;
  std::unique_ptr<HttpServer> server_;  // last: stopped before anything it reads goes away
};

}  // namespace oomguard::guardian::exporter
