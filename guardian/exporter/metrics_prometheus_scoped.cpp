// ScopedSeries: the series scoped to a domain or a cgroup (victim rankings, domain memory,
// memory.events, PSI), bounded to the top K per domain and ranking and a fixed label set, kept out of
// prometheus-cpp's registry and written straight into the exposition text (metrics_prometheus.hpp says
// why).
#include <algorithm>
#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "guardian/exporter/metrics_prometheus.hpp"
#include "guardian/exporter/metrics_prometheus_internal.hpp"

namespace oomguard::guardian::exporter {

using namespace detail;

namespace {

constexpr std::array<const char*, 3> kWindows = {"avg10", "avg60", "avg300"};

bool sameVictim(const RankedVictim& a, const RankedVictim& b) {
  return a.rank == b.rank && a.points == b.points && a.oom_score == b.oom_score && a.cgroup == b.cgroup &&
         a.comm == b.comm && a.workload.namespace_name == b.workload.namespace_name &&
         a.workload.pod == b.workload.pod && a.workload.container == b.workload.container;
}

// `{domain="..",ranking="..",rank="..",cgroup="..",namespace="..",pod="..",container="..",comm=".."} `: a
// ranking row's labels, written at each scrape (kept with the row, they cost ~130 B a row for as long
// as the ranking stands; written, a few hundred ns a row).
void appendRankingLabels(std::string& out, std::string_view ranking, std::string_view domain,
                         const RankedVictim& row) {
  out.push_back('{');
  appendLabel(out, "domain", domain);
  out.push_back(',');
  appendLabel(out, "ranking", ranking);
  out.append(",rank=\"");
  appendNumber(out, static_cast<uint64_t>(row.rank));
  out.append("\",");
  appendLabel(out, "cgroup", row.cgroup);
  out.push_back(',');
  appendLabel(out, "namespace", row.workload.namespace_name);
  out.push_back(',');
  appendLabel(out, "pod", row.workload.pod);
  out.push_back(',');
  appendLabel(out, "container", row.workload.container);
  out.push_back(',');
  appendLabel(out, "comm", row.comm);
  out.append("} ");
}

// ---- The families scoped to a domain or a cgroup ------------------------------------------------------

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
constexpr ScopedFamily kDomainOomForecastSeconds{
    "oomguard_domain_oom_forecast_seconds", "gauge",
    "Time until an OOM domain's usage reaches its limit at the rate it is growing now (domain = \"host\" "
    "or the cgroup with the memory limit): a least-squares fit of the last minute of usage readings, "
    "shown once the low envelope of the usage has risen (a leak, not a sawtooth or noise); no sample "
    "while the domain is not growing. 0 = at the limit. Unit: seconds."};
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

}  // namespace

const std::vector<const ScopedFamily*>& PrometheusMetrics::ScopedSeries::families() {
  static const std::vector<const ScopedFamily*> all = {
      &kVictimRank,        &kVictimPoints,   &kVictimOomScore, &kDomainLimitBytes, &kDomainUsageBytes,
      &kDomainOomForecastSeconds, &kMemoryEventsTotal, &kWaitingSeconds, &kStalledSeconds, &kPressureRatio};
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
  // Another ranking of the domain with these rows: its snapshot is shared (the ranking label is the key's).
  for (auto it = rankings_.lower_bound({domain, ""}); it != rankings_.end() && it->first.first == domain; ++it) {
    if (it->first.second != ranking && it->second->rows.size() == count &&
        std::equal(top.begin(), top.begin() + static_cast<std::ptrdiff_t>(count), it->second->rows.begin(),
                   sameVictim)) {
      publish(key, it->second);
      return;
    }
  }
  auto snapshot = std::make_shared<RankingSnapshot>();
  snapshot->domain = domain;
  snapshot->rows.assign(top.begin(), top.begin() + static_cast<std::ptrdiff_t>(count));
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
  // A snapshot the domain's rankings share is replaced by one snapshot they still share.
  std::map<const RankingSnapshot*, std::shared_ptr<const RankingSnapshot>> replaced;
  for (const auto& [key, snapshot] : rankings_) {
    if (std::none_of(snapshot->rows.begin(), snapshot->rows.end(),
                     [&](const auto& row) { return row.cgroup == cgroup; })) {
      continue;
    }
    if (const auto done = replaced.find(snapshot.get()); done != replaced.end()) {
      changed.emplace_back(key, done->second);
      continue;
    }
    auto kept = std::make_shared<RankingSnapshot>();
    kept->domain = snapshot->domain;
    for (const auto& row : snapshot->rows) {
      if (row.cgroup != cgroup) {
        kept->rows.push_back(row);
      }
    }
    std::shared_ptr<const RankingSnapshot> replacement = kept->rows.empty() ? nullptr : std::move(kept);
    replaced.emplace(snapshot.get(), replacement);
    changed.emplace_back(key, std::move(replacement));
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
    view.rankings.emplace_back(entry.first.second, entry.second);
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
    for (const auto& [ranking, snapshot] : rankings) {
      for (const auto& row : snapshot->rows) {
        begin();
        appendRankingLabels(out, ranking, snapshot->domain, row);
        appendNumber(out, &f == &kVictimRank     ? static_cast<long>(row.rank)
                          : &f == &kVictimPoints ? row.points
                                                 : row.oom_score);
        out.push_back('\n');
        sink.lineDone();
      }
    }
    return true;
  }
  if (&f == &kDomainOomForecastSeconds) {
    for (const auto& series : domain_memory) {
      const double seconds = series->oom_in_seconds.load(std::memory_order_relaxed);
      if (seconds < 0) {
        continue;
      }
      begin();
      out.append("{").append(series->label).append("} ");
      appendNumber(out, seconds);
      out.push_back('\n');
      sink.lineDone();
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

}  // namespace oomguard::guardian::exporter
