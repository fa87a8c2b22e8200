#include "guardian/metrics_prometheus.hpp"

#include "guardian/format.hpp"

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <chrono>
#include <cmath>
#include <functional>
#include <mutex>
#include <stdexcept>
#include <utility>

namespace oomguard::guardian {

namespace pm = prometheus;

namespace {

constexpr std::array<const char*, 6> kMemoryEvents = {"low", "high",     "max",
                                                      "oom", "oom_kill", "oom_group_kill"};
constexpr std::array<const char*, 3> kWindows = {"avg10", "avg60", "avg300"};
// The kernel's spellings (oom-kill:constraint=...), created at 0 so the first kill is an increase.
constexpr std::array<const char*, 4> kConstraints = {"CONSTRAINT_NONE", "CONSTRAINT_CPUSET",
                                                     "CONSTRAINT_MEMORY_POLICY", "CONSTRAINT_MEMCG"};
constexpr std::array<const char*, 2> kPredictionResults = {"match", "mismatch"};

// ---- Text format helpers ------------------------------------------------------------------------------

// name="value" with the text format's escapes (backslash, double quote, newline), value made UTF-8.
void appendLabel(std::string& out, std::string_view name, std::string_view value) {
  out.append(name);
  out.append("=\"");
  for (const char c : validUtf8(value)) {
    switch (c) {
      case '\\':
        out.append("\\\\");
        break;
      case '"':
        out.append("\\\"");
        break;
      case '\n':
        out.append("\\n");
        break;
      default:
        out.push_back(c);
    }
  }
  out.push_back('"');
}

void appendNumber(std::string& out, double value) {
  if (std::isnan(value)) {
    out.append("NaN");
    return;
  }
  if (std::isinf(value)) {
    out.append(value > 0 ? "+Inf" : "-Inf");
    return;
  }
  char buffer[32];
  const auto result = std::to_chars(buffer, buffer + sizeof buffer, value);
  out.append(buffer, result.ptr);
}

void appendNumber(std::string& out, long value) {
  char buffer[24];
  const auto result = std::to_chars(buffer, buffer + sizeof buffer, value);
  out.append(buffer, result.ptr);
}

void appendNumber(std::string& out, uint64_t value) {
  char buffer[24];
  const auto result = std::to_chars(buffer, buffer + sizeof buffer, value);
  out.append(buffer, result.ptr);
}

void appendHeader(std::string& out, std::string_view name, std::string_view help, std::string_view type) {
  out.append("# HELP ").append(name).push_back(' ');
  for (const char c : help) {
    if (c == '\\') {
      out.append("\\\\");
    } else if (c == '\n') {
      out.append("\\n");
    } else {
      out.push_back(c);
    }
  }
  out.append("\n# TYPE ").append(name).push_back(' ');
  out.append(type).push_back('\n');
}

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

bool sameVictim(const RankedVictim& a, const RankedVictim& b) {
  return a.rank == b.rank && a.points == b.points && a.oom_score == b.oom_score && a.cgroup == b.cgroup &&
         a.comm == b.comm && a.workload.namespace_name == b.workload.namespace_name &&
         a.workload.pod == b.workload.pod && a.workload.container == b.workload.container;
}

// ---- The families scoped to a domain or a cgroup ------------------------------------------------------

struct ScopedFamily {
  const char* name;
  const char* type;
  const char* help;
};

constexpr ScopedFamily kVictimRank{
    "oomguard_victim_rank", "gauge",
    "Rank of a process in the OOM victim order of an OOM domain (1 = the next victim), one pid-free series "
    "per "
    "rank of the top K; domain is \"host\" or the cgroup with the memory limit; ranking=\"kernel\" is the "
    "kernel's own order (oom_badness), \"oomguard\" the order after the operator's protections. "
    "Dimensionless."};
constexpr ScopedFamily kVictimPoints{
    "oomguard_victim_points", "gauge",
    "The kernel's oom_badness() points of the ranked process in its OOM domain: RSS + swap + page-table "
    "pages, plus oom_score_adj * totalpages / 1000. Unit: pages (4 KiB on x86)."};
constexpr ScopedFamily kVictimOomScore{
    "oomguard_victim_oom_score", "gauge",
    "The ranked process's /proc/<pid>/oom_score, the kernel's host-domain score (0..2000 from Linux 5.9, "
    "0..1000 before). Dimensionless."};
constexpr ScopedFamily kDomainLimitBytes{
    "oomguard_domain_limit_bytes", "gauge",
    "Memory limit of an OOM domain (domain = \"host\" or the cgroup with the memory limit): for the host "
    "MemTotal + SwapTotal of /proc/meminfo, for a cgroup its memory.max. Unit: bytes."};
constexpr ScopedFamily kDomainUsageBytes{
    "oomguard_domain_usage_bytes", "gauge",
    "Memory in use in an OOM domain (domain = \"host\" or the cgroup with the memory limit): for the host "
    "(MemTotal - MemAvailable) + (SwapTotal - SwapFree) of /proc/meminfo, for a cgroup its "
    "memory.current. Headroom = 1 - usage / limit. Unit: bytes."};
constexpr ScopedFamily kMemoryEventsTotal{
    "oomguard_memory_events_total", "counter",
    "Events of a cgroup's memory.events (hierarchical) counted since oomguard started tracking the cgroup: "
    "low, high (memory.high throttling), max (memory.max reached), oom, oom_kill, oom_group_kill. Unit: "
    "events."};
constexpr ScopedFamily kWaitingSeconds{
    "oomguard_pressure_waiting_seconds_total", "counter",
    "Memory PSI \"some\" total of a cgroup (\"/\" = the host, /proc/pressure/memory): time in which at least "
    "one task was stalled waiting for memory. Unit: seconds (the kernel counts microseconds)."};
constexpr ScopedFamily kStalledSeconds{
    "oomguard_pressure_stalled_seconds_total", "counter",
    "Memory PSI \"full\" total of a cgroup (\"/\" = the host): time in which all non-idle tasks were stalled "
    "on memory at once. Unit: seconds (the kernel counts microseconds)."};
constexpr ScopedFamily kPressureRatio{
    "oomguard_pressure_ratio", "gauge",
    "Memory PSI running average of a cgroup (\"/\" = the host) as a ratio of wall time, 0..1 (the kernel "
    "prints percent): kind some|full, window avg10|avg60|avg300 (10 s, 60 s, 300 s)."};

// One (domain, ranking) top K: immutable once published.
struct RankingSnapshot {
  std::vector<RankedVictim> rows;   // as given, for comparison and the cgroup references
  std::vector<std::string> labels;  // per row: {domain="..",ranking="..",rank="..",cgroup="..",...}
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

// A counter fed with the kernel's absolute totals: the first reading counts in full (so the counter
// equals the kernel's total, like node_exporter's), later ones count the increase; a total that went
// down (a new cgroup under the old name) counts from zero again.
void addTotal(std::atomic<uint64_t>& counter, std::optional<uint64_t>& last, uint64_t total) {
  const uint64_t increase = last && total >= *last ? total - *last : total;
  counter.fetch_add(increase, std::memory_order_relaxed);
  last = total;
}

}  // namespace

class PrometheusMetrics::ScopedSeries {
 public:
  explicit ScopedSeries(size_t top_k) : top_k_(top_k) {}

  // What one scrape writes: the snapshots and cgroups of one moment (pointer copies under the lock).
  struct View {
    std::vector<std::shared_ptr<const RankingSnapshot>> rankings;
    std::vector<std::shared_ptr<const CgroupSeries>> cgroups;
    std::vector<std::shared_ptr<const DomainMemorySeries>> domain_memory;
    // Writes family `family` (HELP, TYPE, samples); false when it is not one of ours.
    bool write(std::string_view family, Sink& sink) const;
  };
  [[nodiscard]] View view() const;
  static const std::vector<const ScopedFamily*>& families();

  // The rest is called from the daemon's thread only. It reads the maps without the lock (no other
  // thread writes them) and takes the lock for every change of their structure.
  void setRanking(const std::string& domain, const std::string& ranking,
                  const std::vector<RankedVictim>& top);
  void forgetDomain(const std::string& domain);
  void forgetCgroup(const std::string& cgroup);
  CgroupSeries& cgroup(const std::string& path);
  DomainMemorySeries& domainMemory(const std::string& domain);

 private:
  using RankingKey = std::pair<std::string, std::string>;  // domain, ranking
  void publish(const RankingKey& key, std::shared_ptr<const RankingSnapshot> snapshot);
  void reference(const RankingSnapshot* snapshot, int direction);

  const size_t top_k_;
  mutable std::mutex mutex_;
  std::map<RankingKey, std::shared_ptr<const RankingSnapshot>> rankings_;
  std::map<std::string, std::shared_ptr<CgroupSeries>> cgroups_;
  std::map<std::string, std::shared_ptr<DomainMemorySeries>> domain_memory_;  // one per domain
  std::unordered_map<std::string, size_t> ranking_refs_;  // cgroup -> ranking rows naming it
};

const std::vector<const ScopedFamily*>& PrometheusMetrics::ScopedSeries::families() {
  static const std::vector<const ScopedFamily*> all = {
      &kVictimRank,        &kVictimPoints,   &kVictimOomScore, &kDomainLimitBytes, &kDomainUsageBytes,
      &kMemoryEventsTotal, &kWaitingSeconds, &kStalledSeconds, &kPressureRatio};
  return all;
}

void PrometheusMetrics::ScopedSeries::setRanking(const std::string& domain, const std::string& ranking,
                                                 const std::vector<RankedVictim>& top) {
  const size_t count = std::min(top.size(), top_k_);
  const RankingKey key{domain, ranking};
  const auto found = rankings_.find(key);
  if (found != rankings_.end() && found->second->rows.size() == count &&
      std::equal(top.begin(), top.begin() + static_cast<std::ptrdiff_t>(count), found->second->rows.begin(),
                 sameVictim)) {
    return;  // unchanged: the steady state allocates nothing
  }
  if (count == 0) {
    if (found != rankings_.end()) {
      publish(key, nullptr);
    }
    return;
  }
  auto snapshot = std::make_shared<RankingSnapshot>();
  snapshot->rows.assign(top.begin(), top.begin() + static_cast<std::ptrdiff_t>(count));
  for (const auto& victim : snapshot->rows) {
    std::string text = "{";
    appendLabel(text, "domain", domain);
    text.push_back(',');
    appendLabel(text, "ranking", ranking);
    text.append(",rank=\"");
    appendNumber(text, static_cast<uint64_t>(victim.rank));
    text.append("\",");
    appendLabel(text, "cgroup", victim.cgroup);
    text.push_back(',');
    appendLabel(text, "namespace", victim.workload.namespace_name);
    text.push_back(',');
    appendLabel(text, "pod", victim.workload.pod);
    text.push_back(',');
    appendLabel(text, "container", victim.workload.container);
    text.push_back(',');
    appendLabel(text, "comm", victim.comm);
    text.push_back('}');
    snapshot->labels.push_back(std::move(text));
  }
  publish(key, std::move(snapshot));
}

void PrometheusMetrics::ScopedSeries::publish(const RankingKey& key,
                                              std::shared_ptr<const RankingSnapshot> snapshot) {
  std::shared_ptr<const RankingSnapshot> old;
  if (snapshot) {
    reference(snapshot.get(), +1);
  }
  {
    const std::lock_guard lock(mutex_);
    const auto found = rankings_.find(key);
    if (found != rankings_.end()) {
      old = std::move(found->second);
      if (snapshot) {
        found->second = std::move(snapshot);
      } else {
        rankings_.erase(found);
      }
    } else if (snapshot) {
      rankings_.emplace(key, std::move(snapshot));
    }
  }
  if (old) {
    reference(old.get(), -1);
  }  // `old` is freed here, or by the last scrape still holding it: never under the lock
}

void PrometheusMetrics::ScopedSeries::reference(const RankingSnapshot* snapshot, int direction) {
  for (const auto& row : snapshot->rows) {
    if (direction > 0) {
      ++ranking_refs_[row.cgroup];
    } else if (const auto found = ranking_refs_.find(row.cgroup);
               found != ranking_refs_.end() && --found->second == 0) {
      ranking_refs_.erase(found);
    }
  }
}

void PrometheusMetrics::ScopedSeries::forgetDomain(const std::string& domain) {
  std::vector<RankingKey> keys;
  for (auto it = rankings_.lower_bound({domain, ""}); it != rankings_.end() && it->first.first == domain;
       ++it) {
    keys.push_back(it->first);
  }
  for (const auto& key : keys) {
    publish(key, nullptr);
  }
  std::shared_ptr<DomainMemorySeries> gone;  // freed here, or by the last scrape still holding it
  if (const auto found = domain_memory_.find(domain); found != domain_memory_.end()) {
    const std::lock_guard lock(mutex_);
    gone = std::move(found->second);
    domain_memory_.erase(found);
  }
}

void PrometheusMetrics::ScopedSeries::forgetCgroup(const std::string& cgroup) {
  std::shared_ptr<CgroupSeries> gone;
  if (const auto found = cgroups_.find(cgroup); found != cgroups_.end()) {
    const std::lock_guard lock(mutex_);
    gone = std::move(found->second);
    cgroups_.erase(found);
  }
  // A domain is a cgroup: when the cgroup goes, so does its domain.
  forgetDomain(cgroup);
  // Ranking rows that name the cgroup (e.g. a process of it in the host's top K) go until the next ranking.
  if (!ranking_refs_.contains(cgroup)) {
    return;
  }
  std::vector<std::pair<RankingKey, std::shared_ptr<const RankingSnapshot>>> changed;
  for (const auto& [key, snapshot] : rankings_) {
    if (std::none_of(snapshot->rows.begin(), snapshot->rows.end(),
                     [&](const auto& row) { return row.cgroup == cgroup; })) {
      continue;
    }
    auto kept = std::make_shared<RankingSnapshot>();
    for (size_t i = 0; i < snapshot->rows.size(); ++i) {
      if (snapshot->rows[i].cgroup != cgroup) {
        kept->rows.push_back(snapshot->rows[i]);
        kept->labels.push_back(snapshot->labels[i]);
      }
    }
    changed.emplace_back(key, kept->rows.empty() ? nullptr : std::move(kept));
  }
  for (auto& [key, snapshot] : changed) {
    publish(key, std::move(snapshot));
  }
}

CgroupSeries& PrometheusMetrics::ScopedSeries::cgroup(const std::string& path) {
  if (const auto found = cgroups_.find(path); found != cgroups_.end()) {
    return *found->second;
  }
  auto series = std::make_shared<CgroupSeries>(path);
  CgroupSeries& result = *series;
  const std::lock_guard lock(mutex_);
  cgroups_.emplace(path, std::move(series));
  return result;
}

DomainMemorySeries& PrometheusMetrics::ScopedSeries::domainMemory(const std::string& domain) {
  if (const auto found = domain_memory_.find(domain); found != domain_memory_.end()) {
    return *found->second;
  }
  auto series = std::make_shared<DomainMemorySeries>(domain);
  DomainMemorySeries& result = *series;
  const std::lock_guard lock(mutex_);
  domain_memory_.emplace(domain, std::move(series));
  return result;
}

PrometheusMetrics::ScopedSeries::View PrometheusMetrics::ScopedSeries::view() const {
  View view;
  const std::lock_guard lock(mutex_);
  view.rankings.reserve(rankings_.size());
  for (const auto& entry : rankings_) {
    view.rankings.push_back(entry.second);
  }
  view.cgroups.reserve(cgroups_.size());
  for (const auto& entry : cgroups_) {
    view.cgroups.push_back(entry.second);
  }
  view.domain_memory.reserve(domain_memory_.size());
  for (const auto& entry : domain_memory_) {
    view.domain_memory.push_back(entry.second);
  }
  return view;
}

bool PrometheusMetrics::ScopedSeries::View::write(std::string_view family, Sink& sink) const {
  const auto found = std::find_if(families().begin(), families().end(),
                                  [&](const ScopedFamily* f) { return f->name == family; });
  if (found == families().end()) {
    return false;
  }
  const ScopedFamily& f = **found;
  std::string& out = sink.buffer;
  appendHeader(out, f.name, f.help, f.type);
  auto begin = [&] { out.append(f.name); };
  if (&f == &kVictimRank || &f == &kVictimPoints || &f == &kVictimOomScore) {
    for (const auto& snapshot : rankings) {
      for (size_t i = 0; i < snapshot->rows.size(); ++i) {
        const auto& row = snapshot->rows[i];
        begin();
        out.append(snapshot->labels[i]).push_back(' ');
        appendNumber(out, &f == &kVictimRank     ? static_cast<long>(row.rank)
                          : &f == &kVictimPoints ? row.points
                                                 : row.oom_score);
        out.push_back('\n');
        sink.lineDone();
      }
    }
    return true;
  }
  if (&f == &kDomainLimitBytes || &f == &kDomainUsageBytes) {
    for (const auto& series : domain_memory) {
      begin();
      out.append("{").append(series->label).append("} ");
      appendNumber(out, (&f == &kDomainLimitBytes ? series->limit_bytes : series->usage_bytes)
                            .load(std::memory_order_relaxed));
      out.push_back('\n');
      sink.lineDone();
    }
    return true;
  }
  for (const auto& series : cgroups) {
    if (&f == &kMemoryEventsTotal) {
      if (!series->events_shown.load(std::memory_order_acquire)) {
        continue;
      }
      for (size_t e = 0; e < kMemoryEvents.size(); ++e) {
        begin();
        out.append("{").append(series->label).append(",event=\"").append(kMemoryEvents[e]).append("\"} ");
        appendNumber(out, series->events[e].load(std::memory_order_relaxed));
        out.push_back('\n');
        sink.lineDone();
      }
      continue;
    }
    if (!series->pressure_shown.load(std::memory_order_acquire)) {
      continue;
    }
    const bool full = series->full_shown.load(std::memory_order_acquire);
    if (&f == &kWaitingSeconds || (&f == &kStalledSeconds && full)) {
      begin();
      out.append("{").append(series->label).append("} ");
      const auto& total = &f == &kWaitingSeconds ? series->waiting_us : series->stalled_us;
      appendNumber(out, static_cast<double>(total.load(std::memory_order_relaxed)) / 1e6);
      out.push_back('\n');
      sink.lineDone();
    } else if (&f == &kPressureRatio) {
      for (size_t k = 0; k < (full ? 2U : 1U); ++k) {
        for (size_t w = 0; w < kWindows.size(); ++w) {
          begin();
          out.append("{")
              .append(series->label)
              .append(k == 0 ? ",kind=\"some\",window=\"" : ",kind=\"full\",window=\"");
          out.append(kWindows[w]).append("\"} ");
          appendNumber(out, series->ratio[k * 3 + w].load(std::memory_order_relaxed));
          out.push_back('\n');
          sink.lineDone();
        }
      }
    }
  }
  return true;
}

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
  kernel_oom_kills_ =
      &family(pm::BuildCounter(), "oomguard_kernel_oom_kills_total", "counter",
              "OOM kills by the kernel itself, read from its reports on /dev/kmsg, by constraint "
              "(CONSTRAINT_NONE = host OOM, CONSTRAINT_MEMCG = a cgroup's memory.max, "
              "CONSTRAINT_CPUSET, CONSTRAINT_MEMORY_POLICY). Unit: kills.");
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
  build_info_->Add({{"version", validUtf8(version)}, {"kernel", validUtf8(kernel)}}).Set(1);
  for (const char* constraint : kConstraints) {
    kernel_oom_series_[constraint] = &kernel_oom_kills_->Add({{"constraint", constraint}});
  }
  for (const char* result : kPredictionResults) {
    prediction_series_[result] = &predictions_->Add({{"result", result}});
  }
}

PrometheusMetrics::~PrometheusMetrics() = default;

HttpServer::Response PrometheusMetrics::answer(std::string_view method, std::string_view path) const {
  constexpr const char* kPlain = "text/plain; charset=utf-8";
  if (path == "/metrics") {
    if (method != "GET") {
      return {405, kPlain, "GET", "method not allowed\n"};
    }
    return {200, "text/plain; version=0.0.4; charset=utf-8", {}, render()};
  }
  if (path == "/healthz") {
    return method == "GET" || method == "HEAD" ? HttpServer::Response{200, kPlain, {}, "ok"}
                                               : HttpServer::Response{405, kPlain, "GET, HEAD", "method not allowed\n"};
  }
  return {404, kPlain, {}, "not found\n"};
}

void PrometheusMetrics::serve(const std::string& listen, HttpServer::Limits limits) {
  const auto address = parseListenAddress(listen);
  if (!address) {
    throw std::runtime_error("metrics listen address " + address.error().message);
  }
  if (server_) {
    throw std::logic_error("PrometheusMetrics::serve called twice");
  }
  server_ = std::make_unique<HttpServer>(
      address.value(), [this](std::string_view method, std::string_view path) { return answer(method, path); }, limits);
}

std::vector<int> PrometheusMetrics::listeningPorts() const {
  return server_ ? std::vector<int>{server_->port()} : std::vector<int>{};
}

void PrometheusMetrics::write(const std::function<void(std::string_view)>& flush) const {
  // The registry's families, serialised by prometheus-cpp; those without series yet still declared.
  std::map<std::string, std::string, std::less<>> small;
  for (const auto& family : registry_->Collect()) {
    small[family.name] = pm::TextSerializer().Serialize({family});
  }
  for (const auto& declared : declared_) {
    if (!small.contains(declared.name)) {
      appendHeader(small[declared.name], declared.name, declared.help, declared.type);
    }
  }
  std::vector<std::string_view> names;
  names.reserve(small.size() + ScopedSeries::families().size());
  for (const auto& [name, text] : small) {
    names.push_back(name);
  }
  for (const auto* family : ScopedSeries::families()) {
    names.push_back(family->name);
  }
  std::sort(names.begin(), names.end());

  const auto view = scoped_->view();
  Sink sink(flush);
  for (const auto name : names) {
    if (const auto found = small.find(name); found != small.end()) {
      sink.buffer.append(found->second);
      sink.lineDone();
    } else {
      view.write(name, sink);
    }
  }
}

std::string PrometheusMetrics::render() const {
  std::string out;
  write([&out](std::string_view piece) { out.append(piece); });
  return out;
}

size_t PrometheusMetrics::seriesCount() const {
  const std::string text = render();
  size_t count = 0;
  size_t start = 0;
  while (start < text.size()) {
    const size_t end = text.find('\n', start);
    count += text[start] != '#' ? 1 : 0;
    start = end == std::string::npos ? text.size() : end + 1;
  }
  return count;
}

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

void PrometheusMetrics::setDomainMemory(const std::string& domain, uint64_t limit_bytes,
                                        uint64_t usage_bytes) {
  DomainMemorySeries& series = scoped_->domainMemory(domain);
  series.limit_bytes.store(limit_bytes, std::memory_order_relaxed);
  series.usage_bytes.store(usage_bytes, std::memory_order_relaxed);
}

void PrometheusMetrics::countKill(const std::string& policy, const std::string& reason,
                                  const std::string& result) {
  auto key = std::make_tuple(policy, reason, result);
  auto found = kill_series_.find(key);
  if (found == kill_series_.end()) {
    auto& counter = kills_->Add(
        {{"policy", validUtf8(policy)}, {"reason", validUtf8(reason)}, {"result", validUtf8(result)}});
    found = kill_series_.emplace(std::move(key), &counter).first;
  }
  found->second->Increment();
}

void PrometheusMetrics::countAnnotationIssue(const std::string& namespace_name, const std::string& kind) {
  auto key = std::make_pair(namespace_name, kind);
  auto found = annotation_series_.find(key);
  if (found == annotation_series_.end()) {
    auto& counter = annotation_issues_->Add({{"namespace", validUtf8(namespace_name)}, {"kind", validUtf8(kind)}});
    found = annotation_series_.emplace(std::move(key), &counter).first;
  }
  found->second->Increment();
}

void PrometheusMetrics::countKubernetesEvents(const std::string& result, uint64_t count) {
  auto found = kubernetes_event_series_.find(result);
  if (found == kubernetes_event_series_.end()) {
    auto& counter = kubernetes_events_->Add({{"result", validUtf8(result)}});
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
                .emplace(constraint, &kernel_oom_kills_->Add({{"constraint", validUtf8(constraint)}}))
                .first;
  }
  found->second->Increment();
}

void PrometheusMetrics::countPrediction(const std::string& result) {
  auto found = prediction_series_.find(result);
  if (found == prediction_series_.end()) {
    found = prediction_series_.emplace(result, &predictions_->Add({{"result", validUtf8(result)}})).first;
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
    found = drift_series_.emplace(name, &sysctl_drift_->Add({{"name", validUtf8(name)}})).first;
  }
  found->second->Set(drifted ? 1 : 0);
}

std::optional<std::string> listenAddressError(std::string_view listen) {
  const auto colon = listen.rfind(':');
  if (colon == std::string_view::npos || colon == 0 || colon + 1 == listen.size()) {
    return "must be ADDRESS:PORT, got \"" + std::string(listen) + "\"";
  }
  const std::string_view port = listen.substr(colon + 1);
  if (port.find_first_not_of("0123456789") != std::string_view::npos || port.size() > 5 ||
      std::stoul(std::string(port)) > 65535) {
    return "port must be 0..65535, got \"" + std::string(port) + "\"";
  }
  const std::string_view host = listen.substr(0, colon);
  const bool bracketed = host.size() > 2 && host.front() == '[' && host.back() == ']';
  const std::string_view allowed = bracketed ? "0123456789abcdefABCDEF:.[]" : "0123456789.";
  if (host.find_first_not_of(allowed) != std::string_view::npos ||
      (bracketed && host.substr(1, host.size() - 2).find_first_of("[]") != std::string_view::npos)) {
    return "address must be an IPv4 address or a bracketed IPv6 address, got \"" + std::string(host) + "\"";
  }
  return std::nullopt;
}

}  // namespace oomguard::guardian
