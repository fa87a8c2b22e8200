// Internal to guardian/exporter (not installed, not included outside this folder): what the files of
// PrometheusMetrics share.
//   metrics_prometheus.cpp        the registry's families and the Metrics implementation
//   metrics_prometheus_text.cpp   the text exposition: format helpers (label escaping, UTF-8), write()
//   metrics_prometheus_scoped.cpp ScopedSeries, the bounded table of per-domain and per-cgroup series
//   metrics_prometheus_http.cpp   the HTTP endpoint (/metrics, /healthz) and serve()
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "guardian/exporter/metrics_prometheus.hpp"

namespace oomguard::guardian::exporter {

namespace detail {

inline constexpr std::array<const char*, 6> kMemoryEvents = {"low", "high",     "max",
                                                             "oom", "oom_kill", "oom_group_kill"};

// ---- Text format helpers ------------------------------------------------------------------------------

// name="value" with the text format's escapes (backslash, double quote, newline), value made UTF-8.
void appendLabel(std::string& out, std::string_view name, std::string_view value);
void appendNumber(std::string& out, double value);
void appendNumber(std::string& out, long value);
void appendNumber(std::string& out, uint64_t value);
void appendHeader(std::string& out, std::string_view name, std::string_view help, std::string_view type);

// Collects the exposition in pieces of about 64 KiB and hands each to `flush`: a scrape never holds the
// whole text (4 MiB at 500 domains) in memory at once.
class Sink {
 public:
  explicit Sink(const std::function<void(std::string_view)>& flush) : flush_(flush) {
    buffer.reserve(kPiece + 4096);
  }
  ~Sink() {
    if (!buffer.empty()) {
      flush_(buffer);
    }
  }
  Sink(const Sink&) = delete;
  Sink& operator=(const Sink&) = delete;
  void lineDone() {
    if (buffer.size() >= kPiece) {
      flush_(buffer);
      buffer.clear();
    }
  }
  std::string buffer;

 private:
  static constexpr size_t kPiece = size_t{64} * 1024;
  const std::function<void(std::string_view)>& flush_;
};

// ---- The families scoped to a domain or a cgroup ------------------------------------------------------

struct ScopedFamily {
  const char* name;
  const char* type;
  const char* help;
};

// One (domain, ranking) top K: immutable once published. A domain's rankings share one snapshot while
// their rows are equal (the guardian's order is the kernel's on a node without protections). The labels
// are written at each scrape: from the rows, the domain, and the ranking's name (its key).
struct RankingSnapshot {
  std::string domain;               // "host" or the cgroup with the memory limit
  std::vector<RankedVictim> rows;   // as given: the values, the labels, the comparison, the cgroup references
};

// One domain's limit and usage: atomics written by the daemon's thread and read by scrapes.
struct DomainMemorySeries {
  explicit DomainMemorySeries(const std::string& domain)
      : label([&] {
          std::string text;
          appendLabel(text, "domain", domain);
          return text;
        }()) {}
  const std::string label;  // domain="..."
  std::atomic<uint64_t> limit_bytes{0};
  std::atomic<uint64_t> usage_bytes{0};
  std::atomic<double> oom_in_seconds{-1.0};  // negative: not growing (no sample)
};

// One cgroup's memory.events and PSI: atomics written by the daemon's thread and read by scrapes.
struct CgroupSeries {
  explicit CgroupSeries(const std::string& path)
      : label([&] {
          std::string text;
          appendLabel(text, "cgroup", path);
          return text;
        }()) {
    events_shown.store(path != "/", std::memory_order_relaxed);  // the root has no memory.events
  }
  const std::string label;  // cgroup="..."
  std::atomic<bool> events_shown{false};
  std::array<std::atomic<uint64_t>, kMemoryEvents.size()> events{};
  std::atomic<bool> pressure_shown{false};
  std::atomic<bool> full_shown{false};
  std::atomic<uint64_t> waiting_us{0};
  std::atomic<uint64_t> stalled_us{0};
  std::array<std::atomic<double>, 6> ratio{};  // some avg10/60/300, then full
  // The kernel's last totals (daemon thread only).
  std::optional<uint64_t> last_some_us;
  std::optional<uint64_t> last_full_us;
};

}  // namespace detail

class PrometheusMetrics::ScopedSeries {
 public:
  explicit ScopedSeries(size_t top_k) : top_k_(top_k) {}

  // What one scrape writes: the snapshots and cgroups of one moment (pointer copies under the lock).
  struct View {
    // (ranking name, its snapshot), in the order of (domain, ranking).
    std::vector<std::pair<std::string, std::shared_ptr<const detail::RankingSnapshot>>> rankings;
    std::vector<std::shared_ptr<const detail::CgroupSeries>> cgroups;
    std::vector<std::shared_ptr<const detail::DomainMemorySeries>> domain_memory;
    // Writes family `family` (HELP, TYPE, samples); false when it is not one of ours.
    bool write(std::string_view family, detail::Sink& sink) const;
  };
  [[nodiscard]] View view() const;
  static const std::vector<const detail::ScopedFamily*>& families();

  // The rest is called from the daemon's thread only. It reads the maps without the lock (no other
  // thread writes them) and takes the lock for every change of their structure.
  void setRanking(const std::string& domain, const std::string& ranking,
                  const std::vector<RankedVictim>& top);
  void forgetDomain(const std::string& domain);
  void forgetCgroup(const std::string& cgroup);
  detail::CgroupSeries& cgroup(const std::string& path);
  detail::DomainMemorySeries& domainMemory(const std::string& domain);

 private:
  using RankingKey = std::pair<std::string, std::string>;  // domain, ranking
  void publish(const RankingKey& key, std::shared_ptr<const detail::RankingSnapshot> snapshot);
  void reference(const detail::RankingSnapshot* snapshot, int direction);

  const size_t top_k_;
  mutable std::mutex mutex_;
  std::map<RankingKey, std::shared_ptr<const detail::RankingSnapshot>> rankings_;
  std::map<std::string, std::shared_ptr<detail::CgroupSeries>> cgroups_;
  std::map<std::string, std::shared_ptr<detail::DomainMemorySeries>> domain_memory_;  // one per domain
  std::unordered_map<std::string, size_t> ranking_refs_;  // cgroup -> ranking rows naming it
};

}  // namespace oomguard::guardian::exporter
