// The Prometheus exporter: the families and labels of DESIGN.md section 5, series removal, PSI totals
// turned into counters, the HTTP surface (on a loopback port of its own) and scrapes concurrent with the
// daemon's thread.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "guardian/config/address.hpp"
#include "common/loopback_http.hpp"
#include "guardian/exporter/metrics_prometheus.hpp"

namespace oomguard::guardian::exporter {
namespace {

// ---- A reader of the text exposition format ----------------------------------------------------------

struct Sample {
  std::string name;
  std::map<std::string, std::string> labels;
  double value = 0;
};

struct Exposition {
  std::map<std::string, std::string> types;  // family -> counter|gauge|histogram|summary
  std::map<std::string, std::string> helps;
  std::vector<Sample> samples;

  // Samples of `name` whose labels include every pair of `match`.
  [[nodiscard]] std::vector<Sample> find(const std::string& name,
                                         const std::map<std::string, std::string>& match = {}) const {
    std::vector<Sample> found;
    for (const auto& sample : samples) {
      bool ok = sample.name == name;
      for (const auto& [key, value] : match) {
        const auto label = sample.labels.find(key);
        ok = ok && label != sample.labels.end() && label->second == value;
      }
      if (ok) {
        found.push_back(sample);
      }
    }
    return found;
  }
  [[nodiscard]] double value(const std::string& name,
                             const std::map<std::string, std::string>& match = {}) const {
    const auto found = find(name, match);
    if (found.size() != 1) {
      ADD_FAILURE() << found.size() << " samples of " << name << " match";
      return -1;
    }
    return found.front().value;
  }
};

Exposition parseExposition(const std::string& text) {
  Exposition out;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) {
      end = text.size();
    }
    const std::string line = text.substr(start, end - start);
    start = end + 1;
    if (line.empty()) {
      continue;
    }
    if (line.rfind("# TYPE ", 0) == 0 || line.rfind("# HELP ", 0) == 0) {
      const size_t space = line.find(' ', 7);
      (line[2] == 'T' ? out.types : out.helps)[line.substr(7, space - 7)] = line.substr(space + 1);
      continue;
    }
    Sample sample;
    size_t i = line.find_first_of("{ ");
    sample.name = line.substr(0, i);
    if (line[i] == '{') {
      ++i;
      while (line[i] != '}') {
        const size_t equals = line.find('=', i);
        const std::string key = line.substr(i, equals - i);
        std::string value;
        size_t k = equals + 2;  // past ="
        for (; line[k] != '"'; ++k) {
          if (line[k] == '\\') {
            ++k;
            value.push_back(line[k] == 'n' ? '\n' : line[k]);
          } else {
            value.push_back(line[k]);
          }
        }
        sample.labels[key] = value;
        i = k + 1;
        if (line[i] == ',') {
          ++i;
        }
      }
      ++i;
    }
    sample.value = std::stod(line.substr(i + 1));
    out.samples.push_back(std::move(sample));
  }
  return out;
}

cgroupfs::Pressure pressure(uint64_t some_total_us, std::optional<uint64_t> full_total_us,
                            double some_avg10 = 0) {
  cgroupfs::Pressure p;
  p.some = cgroupfs::PressureLine{some_avg10, 2.5, 1.0, some_total_us};
  if (full_total_us) {
    p.full = cgroupfs::PressureLine{50.0, 40.0, 100.0, *full_total_us};
  }
  return p;
}

std::vector<RankedVictim> victims(size_t count, const std::string& cgroup_prefix = "/app") {
  std::vector<RankedVictim> top;
  for (size_t i = 0; i < count; ++i) {
    top.push_back(RankedVictim{i + 1,
                               cgroup_prefix + std::to_string(i),
                               "proc" + std::to_string(i),
                               static_cast<long>(10000 - i * 10),
                               static_cast<long>(900 - i),
                               {}});
  }
  return top;
}

PrometheusMetrics makeMetrics(size_t top_k = 10) {
  return PrometheusMetrics(top_k, "1.2.3", "6.1.0-test");
}

// ---- Families and labels --------------------------------------------------------------------------------

TEST(PrometheusMetrics, DeclaresEveryFamilyOfTheContractWithItsType) {
  const auto metrics = makeMetrics();
  const auto exposition = parseExposition(metrics.render());
  const std::map<std::string, std::string> expected = {
      {"oomguard_victim_rank", "gauge"},
      {"oomguard_victim_points", "gauge"},
      {"oomguard_victim_oom_score", "gauge"},
      {"oomguard_domain_limit_bytes", "gauge"},
      {"oomguard_domain_usage_bytes", "gauge"},
      {"oomguard_memory_events_total", "counter"},
      {"oomguard_pressure_waiting_seconds_total", "counter"},
      {"oomguard_pressure_stalled_seconds_total", "counter"},
      {"oomguard_pressure_ratio", "gauge"},
      {"oomguard_kills_total", "counter"},
      {"oomguard_kernel_oom_kills_total", "counter"},
      {"oomguard_oom_kills_total", "counter"},
      {"oomguard_predictions_total", "counter"},
      {"oomguard_scan_duration_seconds", "histogram"},
      {"oomguard_reaction_seconds", "histogram"},
      {"oomguard_sysctl_drift", "gauge"},
      {"oomguard_build_info", "gauge"},
      // Beyond DESIGN.md section 5: the Kubernetes side (docs/kubernetes.md).
      {"oomguard_annotation_issues_total", "counter"},
      {"oomguard_kubernetes_events_total", "counter"},
      {"oomguard_kubernetes_pods", "gauge"},
      {"oomguard_kubernetes_pods_synced", "gauge"},
      // Beyond DESIGN.md section 5: the time-to-OOM forecast (README, "Metrics, alerts and dashboard").
      {"oomguard_domain_oom_forecast_seconds", "gauge"},
      // Beyond DESIGN.md section 5: the operator's hooks (README, docs/config.md "hooks").
      {"oomguard_hooks_total", "counter"},
      // Beyond DESIGN.md section 5: the warn stage (README, docs/config.md "The warn stage").
      {"oomguard_warnings_total", "counter"},
  };
  for (const auto& [name, type] : expected) {
    ASSERT_TRUE(exposition.types.contains(name)) << name;
    EXPECT_EQ(exposition.types.at(name), type) << name;
    EXPECT_GE(exposition.helps.at(name).size(), 40U) << name << ": HELP should say what it is and its unit";
  }
  for (const auto& [name, type] : exposition.types) {
    if (name.rfind("oomguard_", 0) == 0) {
      EXPECT_TRUE(expected.contains(name)) << "not in DESIGN.md section 5, docs/kubernetes.md nor the README: "
                                           << name;
    }
    if (type == "counter") {
      EXPECT_TRUE(name.ends_with("_total")) << name;
    }
  }
}

TEST(PrometheusMetrics, BuildInfoAndTheSeriesThatStartAtZero) {
  const auto metrics = makeMetrics();
  const auto e = parseExposition(metrics.render());
  EXPECT_EQ(e.value("oomguard_build_info", {{"version", "1.2.3"}, {"kernel", "6.1.0-test"}}), 1);
  // Created at 0 so that the first kernel OOM kill or prediction is an increase() for an alert.
  for (const char* constraint :
       {"CONSTRAINT_NONE", "CONSTRAINT_CPUSET", "CONSTRAINT_MEMORY_POLICY", "CONSTRAINT_MEMCG"}) {
    EXPECT_EQ(e.value("oomguard_kernel_oom_kills_total", {{"constraint", constraint}}), 0) << constraint;
  }
  EXPECT_EQ(e.value("oomguard_predictions_total", {{"result", "match"}}), 0);
  EXPECT_EQ(e.value("oomguard_predictions_total", {{"result", "mismatch"}}), 0);
  EXPECT_TRUE(e.find("oomguard_kills_total").empty());
  EXPECT_TRUE(e.find("oomguard_victim_rank").empty());
}

TEST(PrometheusMetrics, OomKillsAreAttributedAndAGonePodsSeriesExpireAfterTheirTtl) {
  auto metrics = makeMetrics();
  const kube::WorkloadLabels web{"shop", "web-1", "app"};
  metrics.countOomKill(web, "kernel", "CONSTRAINT_MEMCG");
  metrics.countOomKill(web, "kernel", "CONSTRAINT_MEMCG");
  metrics.countOomKill(web, "oomguard", "CONSTRAINT_MEMCG");
  metrics.countOomKill({}, "kernel", "CONSTRAINT_NONE");  // a system service on the host
  auto e = parseExposition(metrics.render());
  EXPECT_EQ(e.value("oomguard_oom_kills_total", {{"pod", "web-1"}, {"container", "app"}, {"killer", "kernel"}}), 2);
  EXPECT_EQ(e.value("oomguard_oom_kills_total", {{"pod", "web-1"}, {"killer", "oomguard"}}), 1);
  EXPECT_EQ(e.value("oomguard_oom_kills_total", {{"pod", ""}, {"namespace", ""}, {"constraint", "CONSTRAINT_NONE"}}), 1);
  // The pod goes at t = 100 s: its series stay for the TTL (alerts look 10 minutes back), then go.
  metrics.podGone("shop", "web-1", 100'000'000);
  metrics.expireSeries(100'000'000 + exporter::kOomKillSeriesTtlUs - 1);
  e = parseExposition(metrics.render());
  EXPECT_EQ(e.find("oomguard_oom_kills_total", {{"pod", "web-1"}}).size(), 2U);
  metrics.expireSeries(100'000'000 + exporter::kOomKillSeriesTtlUs);
  e = parseExposition(metrics.render());
  EXPECT_TRUE(e.find("oomguard_oom_kills_total", {{"pod", "web-1"}}).empty());
  EXPECT_EQ(e.find("oomguard_oom_kills_total", {{"pod", ""}}).size(), 1U) << "series outside pods never expire";
  // A pod of the same name that comes back (a StatefulSet's) and is killed again: counted afresh, kept.
  metrics.podGone("shop", "web-1", 200'000'000);  // no series: nothing to expire
  metrics.countOomKill(web, "kernel", "CONSTRAINT_MEMCG");
  metrics.expireSeries(200'000'000 + 2 * exporter::kOomKillSeriesTtlUs);
  EXPECT_EQ(parseExposition(metrics.render()).value("oomguard_oom_kills_total", {{"pod", "web-1"}}), 1);
}

TEST(PrometheusMetrics, VictimRankingHasOneSeriesPerRankWithTheWorkloadLabels) {
  auto metrics = makeMetrics();
  auto top = victims(3);
  top[0].workload = kube::WorkloadLabels{"shop", "cart-7d9f", "cart"};
  metrics.setVictimRanking("/kubepods/burstable", "kernel", top);
  const auto e = parseExposition(metrics.render());
  const auto ranks =
      e.find("oomguard_victim_rank", {{"domain", "/kubepods/burstable"}, {"ranking", "kernel"}});
  ASSERT_EQ(ranks.size(), 3U);
  const auto first = e.find("oomguard_victim_rank", {{"rank", "1"}});
  ASSERT_EQ(first.size(), 1U);
  EXPECT_EQ(first[0].value, 1);
  const std::map<std::string, std::string> labels = {{"domain", "/kubepods/burstable"},
                                                     {"ranking", "kernel"},
                                                     {"rank", "1"},
                                                     {"cgroup", "/app0"},
                                                     {"namespace", "shop"},
                                                     {"pod", "cart-7d9f"},
                                                     {"container", "cart"},
                                                     {"comm", "proc0"}};
  EXPECT_EQ(first[0].labels, labels);
  EXPECT_EQ(e.value("oomguard_victim_rank", {{"rank", "3"}}), 3);
  EXPECT_EQ(e.value("oomguard_victim_points", {{"rank", "2"}}), 9990);
  EXPECT_EQ(e.value("oomguard_victim_oom_score", {{"rank", "3"}}), 898);
  EXPECT_EQ(e.value("oomguard_victim_points", {{"rank", "2"}, {"comm", "proc1"}, {"cgroup", "/app1"}}), 9990);
  // Outside Kubernetes the workload labels are empty (Prometheus drops empty labels).
  EXPECT_EQ(e.find("oomguard_victim_rank", {{"rank", "2"}, {"namespace", ""}, {"pod", ""}, {"container", ""}})
                .size(),
            1U);
}

TEST(PrometheusMetrics, AReplacedRankingRemovesTheRanksThatAreGone) {
  auto metrics = makeMetrics();
  metrics.setVictimRanking("host", "kernel", victims(5));
  metrics.setVictimRanking("host", "oomguard", victims(5));
  EXPECT_EQ(parseExposition(metrics.render()).find("oomguard_victim_rank").size(), 10U);
  metrics.setVictimRanking("host", "kernel", victims(2, "/other"));
  auto e = parseExposition(metrics.render());
  EXPECT_EQ(e.find("oomguard_victim_rank", {{"ranking", "kernel"}}).size(), 2U);
  EXPECT_EQ(e.find("oomguard_victim_points", {{"ranking", "kernel"}}).size(), 2U);
  EXPECT_EQ(e.find("oomguard_victim_oom_score", {{"ranking", "kernel"}}).size(), 2U);
  EXPECT_TRUE(e.find("oomguard_victim_rank", {{"ranking", "kernel"}, {"rank", "3"}}).empty());
  EXPECT_TRUE(e.find("oomguard_victim_rank", {{"ranking", "kernel"}, {"cgroup", "/app0"}}).empty());
  EXPECT_EQ(e.find("oomguard_victim_rank", {{"ranking", "oomguard"}}).size(), 5U);
  metrics.setVictimRanking("host", "kernel", {});
  e = parseExposition(metrics.render());
  EXPECT_TRUE(e.find("oomguard_victim_rank", {{"ranking", "kernel"}}).empty());
  EXPECT_EQ(e.find("oomguard_victim_rank", {{"ranking", "oomguard"}}).size(), 5U);
}

TEST(PrometheusMetrics, EqualRankingsOfADomainShareTheirRowsAndEachKeepsItsRankingLabel) {
  // The guardian's order equals the kernel's on a node without protections: one snapshot serves both.
  auto metrics = makeMetrics();
  metrics.setVictimRanking("/pod", "kernel", victims(3));
  metrics.setVictimRanking("/pod", "oomguard", victims(3));
  auto e = parseExposition(metrics.render());
  for (const char* ranking : {"kernel", "oomguard"}) {
    EXPECT_EQ(e.find("oomguard_victim_rank", {{"domain", "/pod"}, {"ranking", ranking}}).size(), 3U) << ranking;
    EXPECT_EQ(e.value("oomguard_victim_points", {{"ranking", ranking}, {"rank", "2"}, {"cgroup", "/app1"}}), 9990);
  }
  // A cgroup that goes leaves both rankings; a change of one leaves the other as it was.
  metrics.forgetCgroup("/app1");
  e = parseExposition(metrics.render());
  EXPECT_EQ(e.find("oomguard_victim_rank", {{"ranking", "kernel"}}).size(), 2U);
  EXPECT_EQ(e.find("oomguard_victim_rank", {{"ranking", "oomguard"}}).size(), 2U);
  metrics.setVictimRanking("/pod", "oomguard", victims(1, "/other"));
  e = parseExposition(metrics.render());
  EXPECT_EQ(e.find("oomguard_victim_rank", {{"ranking", "kernel"}}).size(), 2U);
  EXPECT_EQ(e.find("oomguard_victim_rank", {{"ranking", "oomguard"}}).size(), 1U);
  EXPECT_EQ(e.find("oomguard_victim_rank", {{"ranking", "oomguard"}, {"cgroup", "/other0"}}).size(), 1U);
  EXPECT_EQ(e.find("oomguard_victim_rank", {{"ranking", "kernel"}, {"cgroup", "/app0"}}).size(), 1U);
}

TEST(PrometheusMetrics, ARankingIsCutAtTopK) {
  auto metrics = makeMetrics(4);
  metrics.setVictimRanking("host", "kernel", victims(12));
  const auto e = parseExposition(metrics.render());
  EXPECT_EQ(e.find("oomguard_victim_rank").size(), 4U);
  EXPECT_TRUE(e.find("oomguard_victim_rank", {{"rank", "5"}}).empty());
}

TEST(PrometheusMetrics, AnUnchangedRankingKeepsItsValuesAndAChangedOneIsPublished) {
  auto metrics = makeMetrics();
  auto top = victims(2);
  metrics.setVictimRanking("host", "kernel", top);
  metrics.setVictimRanking("host", "kernel", top);
  EXPECT_EQ(parseExposition(metrics.render()).value("oomguard_victim_points", {{"rank", "1"}}), 10000);
  top[0].points = 123;
  metrics.setVictimRanking("host", "kernel", top);
  EXPECT_EQ(parseExposition(metrics.render()).value("oomguard_victim_points", {{"rank", "1"}}), 123);
}

TEST(PrometheusMetrics, ForgetDomainDropsBothRankingsOfThatDomainOnly) {
  auto metrics = makeMetrics();
  metrics.setVictimRanking("/a", "kernel", victims(3, "/a/"));
  metrics.setVictimRanking("/a", "oomguard", victims(3, "/a/"));
  metrics.setVictimRanking("/ab", "kernel", victims(2, "/ab/"));
  metrics.forgetDomain("/a");
  const auto e = parseExposition(metrics.render());
  EXPECT_TRUE(e.find("oomguard_victim_rank", {{"domain", "/a"}}).empty());
  EXPECT_EQ(e.find("oomguard_victim_rank", {{"domain", "/ab"}}).size(), 2U);
}

TEST(PrometheusMetrics, DomainMemoryIsOneLimitAndOneUsageSeriesPerDomainUntilForgotten) {
  auto metrics = makeMetrics();
  const size_t start = metrics.seriesCount();
  metrics.setDomainMemory("host", 16ULL << 30, 12ULL << 30, std::nullopt);
  metrics.setDomainMemory("/pods/a", 512ULL << 20, 100ULL << 20, 30.0);
  metrics.setDomainMemory("/pods/a", 512ULL << 20, 480ULL << 20, 12.5);  // replaced, not added
  metrics.setDomainMemory("/pods/ab", 1ULL << 30, 1, std::nullopt);
  auto e = parseExposition(metrics.render());
  EXPECT_EQ(e.types.at("oomguard_domain_limit_bytes"), "gauge");
  EXPECT_EQ(e.types.at("oomguard_domain_usage_bytes"), "gauge");
  EXPECT_NE(e.helps.at("oomguard_domain_limit_bytes").find("bytes"), std::string::npos);
  EXPECT_NE(e.helps.at("oomguard_domain_usage_bytes").find("bytes"), std::string::npos);
  EXPECT_EQ(e.value("oomguard_domain_limit_bytes", {{"domain", "host"}}), static_cast<double>(16ULL << 30));
  EXPECT_EQ(e.value("oomguard_domain_usage_bytes", {{"domain", "host"}}), static_cast<double>(12ULL << 30));
  EXPECT_EQ(e.value("oomguard_domain_limit_bytes", {{"domain", "/pods/a"}}), static_cast<double>(512ULL << 20));
  EXPECT_EQ(e.value("oomguard_domain_usage_bytes", {{"domain", "/pods/a"}}), static_cast<double>(480ULL << 20));
  EXPECT_EQ(e.find("oomguard_domain_limit_bytes").size(), 3U);
  EXPECT_EQ(e.find("oomguard_domain_usage_bytes").size(), 3U);
  for (const auto& sample : e.find("oomguard_domain_limit_bytes")) {
    EXPECT_EQ(sample.labels.size(), 1U) << "only the domain label";
  }
  EXPECT_EQ(metrics.seriesCount(), start + 7) << "a limit and a usage per domain, a forecast for /pods/a";
  // The forecast: a sample only where the domain is growing, the latest value.
  EXPECT_EQ(e.types.at("oomguard_domain_oom_forecast_seconds"), "gauge");
  EXPECT_NE(e.helps.at("oomguard_domain_oom_forecast_seconds").find("seconds"), std::string::npos);
  EXPECT_EQ(e.find("oomguard_domain_oom_forecast_seconds").size(), 1U);
  EXPECT_EQ(e.value("oomguard_domain_oom_forecast_seconds", {{"domain", "/pods/a"}}), 12.5);
  metrics.setDomainMemory("/pods/a", 512ULL << 20, 480ULL << 20, std::nullopt);  // no longer growing
  EXPECT_TRUE(parseExposition(metrics.render()).find("oomguard_domain_oom_forecast_seconds").empty());
  metrics.setDomainMemory("/pods/a", 512ULL << 20, 480ULL << 20, 12.5);

  metrics.forgetDomain("/pods/a");
  e = parseExposition(metrics.render());
  EXPECT_TRUE(e.find("oomguard_domain_limit_bytes", {{"domain", "/pods/a"}}).empty());
  EXPECT_TRUE(e.find("oomguard_domain_usage_bytes", {{"domain", "/pods/a"}}).empty());
  EXPECT_EQ(e.value("oomguard_domain_usage_bytes", {{"domain", "/pods/ab"}}), 1);
  EXPECT_EQ(e.find("oomguard_domain_limit_bytes").size(), 2U);

  metrics.forgetCgroup("/pods/ab");  // a cgroup that goes takes its domain with it
  metrics.forgetDomain("host");
  metrics.forgetDomain("/never-set");
  e = parseExposition(metrics.render());
  EXPECT_TRUE(e.find("oomguard_domain_limit_bytes").empty());
  EXPECT_TRUE(e.find("oomguard_domain_usage_bytes").empty());
  EXPECT_EQ(metrics.seriesCount(), start);
}

TEST(PrometheusMetrics, ForgetCgroupDropsEverySeriesThatNamesIt) {
  auto metrics = makeMetrics();
  metrics.setPressure("/pods/a", pressure(10, 5));
  metrics.countMemoryEvent("/pods/a", "max", 1);
  metrics.setVictimRanking("/pods/a", "kernel", victims(2, "/pods/a/c"));
  // The host's ranking names a process of /pods/a/c0 at rank 2.
  std::vector<RankedVictim> host = {RankedVictim{1, "/system/x", "x", 50, 700, {}},
                                    RankedVictim{2, "/pods/a/c0", "proc0", 40, 690, {}},
                                    RankedVictim{3, "/system/y", "y", 30, 680, {}}};
  metrics.setVictimRanking("host", "kernel", host);
  metrics.setPressure("/pods/b", pressure(10, 5));

  metrics.forgetCgroup("/pods/a/c0");
  auto e = parseExposition(metrics.render());
  EXPECT_TRUE(e.find("oomguard_victim_rank", {{"cgroup", "/pods/a/c0"}}).empty());
  EXPECT_EQ(e.find("oomguard_victim_rank", {{"domain", "host"}}).size(), 2U);
  EXPECT_EQ(e.find("oomguard_victim_rank", {{"domain", "/pods/a"}}).size(), 1U);

  metrics.forgetCgroup("/pods/a");
  e = parseExposition(metrics.render());
  for (const auto& sample : e.samples) {
    for (const auto& [key, value] : sample.labels) {
      EXPECT_FALSE(value == "/pods/a") << sample.name << " still names /pods/a in " << key;
    }
  }
  EXPECT_EQ(e.find("oomguard_pressure_ratio", {{"cgroup", "/pods/b"}}).size(), 6U);
}

TEST(PrometheusMetrics, ChurnOfAThousandCgroupsReturnsTheSeriesCountToItsStart) {
  auto metrics = makeMetrics();
  metrics.setPressure("/", pressure(1000, 500));
  metrics.setVictimRanking("host", "kernel", victims(10, "/system/s"));
  const size_t start = metrics.seriesCount();
  const std::string start_text = metrics.render();

  constexpr size_t kCgroups = 1000;
  for (size_t i = 0; i < kCgroups; ++i) {
    const std::string cgroup = "/churn/c" + std::to_string(i);
    metrics.setPressure(cgroup, pressure(i, i));
    metrics.countMemoryEvent(cgroup, "high", 3);
    metrics.setVictimRanking(cgroup, "kernel", victims(3, cgroup + "/t"));
    metrics.setVictimRanking(cgroup, "oomguard", victims(3, cgroup + "/t"));
  }
  // Per cgroup: 6 memory events + 2 PSI counters + 6 ratios + 2 rankings x 3 ranks x 3 families.
  const size_t during = metrics.seriesCount();
  EXPECT_EQ(during, start + kCgroups * (6 + 2 + 6 + 18));
  for (size_t i = 0; i < kCgroups; ++i) {
    const std::string cgroup = "/churn/c" + std::to_string(i);
    for (size_t t = 0; t < 3; ++t) {
      metrics.forgetCgroup(cgroup + "/t" + std::to_string(t));
    }
    metrics.forgetDomain(cgroup);
    metrics.forgetCgroup(cgroup);
  }
  EXPECT_EQ(metrics.seriesCount(), start);
  EXPECT_EQ(metrics.render(), start_text);
  std::cout << "series: " << start << " at start, " << during << " with " << kCgroups << " cgroups, "
            << metrics.seriesCount() << " after they went\n";
}

// ---- memory.events and PSI ----------------------------------------------------------------------------

TEST(PrometheusMetrics, MemoryEventsCountDeltasAndShowAllSixKeysOfACgroup) {
  auto metrics = makeMetrics();
  metrics.countMemoryEvent("/a", "oom_kill", 2);
  metrics.countMemoryEvent("/a", "oom_kill", 1);
  metrics.countMemoryEvent("/a", "sock_throttled", 9);  // not one of the six: no series
  const auto e = parseExposition(metrics.render());
  EXPECT_EQ(e.find("oomguard_memory_events_total", {{"cgroup", "/a"}}).size(), 6U);
  EXPECT_EQ(e.value("oomguard_memory_events_total", {{"cgroup", "/a"}, {"event", "oom_kill"}}), 3);
  for (const char* event : {"low", "high", "max", "oom", "oom_group_kill"}) {
    EXPECT_EQ(e.value("oomguard_memory_events_total", {{"cgroup", "/a"}, {"event", event}}), 0) << event;
  }
  EXPECT_TRUE(e.find("oomguard_memory_events_total", {{"event", "sock_throttled"}}).empty());
}

TEST(PrometheusMetrics, PressureOfTheRootHasNoMemoryEventsButALimitedCgroupStartsThemAtZero) {
  auto metrics = makeMetrics();
  metrics.setPressure("/", pressure(1, 1));
  metrics.setPressure("/limited", pressure(1, 1));
  const auto e = parseExposition(metrics.render());
  EXPECT_TRUE(e.find("oomguard_memory_events_total", {{"cgroup", "/"}}).empty());
  EXPECT_EQ(e.find("oomguard_memory_events_total", {{"cgroup", "/limited"}}).size(), 6U);
}

TEST(PrometheusMetrics, PsiTotalsInMicrosecondsBecomeSecondCounters) {
  auto metrics = makeMetrics();
  metrics.setPressure("/a", pressure(1'500'000, 250'000, 12.5));
  auto e = parseExposition(metrics.render());
  // The first reading counts in full: the counter equals the kernel's total.
  EXPECT_DOUBLE_EQ(e.value("oomguard_pressure_waiting_seconds_total", {{"cgroup", "/a"}}), 1.5);
  EXPECT_DOUBLE_EQ(e.value("oomguard_pressure_stalled_seconds_total", {{"cgroup", "/a"}}), 0.25);
  EXPECT_DOUBLE_EQ(
      e.value("oomguard_pressure_ratio", {{"cgroup", "/a"}, {"kind", "some"}, {"window", "avg10"}}), 0.125);
  EXPECT_DOUBLE_EQ(
      e.value("oomguard_pressure_ratio", {{"cgroup", "/a"}, {"kind", "some"}, {"window", "avg60"}}), 0.025);
  EXPECT_DOUBLE_EQ(
      e.value("oomguard_pressure_ratio", {{"cgroup", "/a"}, {"kind", "some"}, {"window", "avg300"}}), 0.01);
  EXPECT_DOUBLE_EQ(
      e.value("oomguard_pressure_ratio", {{"cgroup", "/a"}, {"kind", "full"}, {"window", "avg10"}}), 0.5);
  EXPECT_DOUBLE_EQ(
      e.value("oomguard_pressure_ratio", {{"cgroup", "/a"}, {"kind", "full"}, {"window", "avg300"}}), 1.0);

  metrics.setPressure("/a", pressure(2'000'000, 250'000));
  e = parseExposition(metrics.render());
  EXPECT_DOUBLE_EQ(e.value("oomguard_pressure_waiting_seconds_total", {{"cgroup", "/a"}}), 2.0);
  EXPECT_DOUBLE_EQ(e.value("oomguard_pressure_stalled_seconds_total", {{"cgroup", "/a"}}), 0.25);
  // A total that went down (a new cgroup under the old name) counts from zero: the counter never falls.
  metrics.setPressure("/a", pressure(100'000, 50'000));
  e = parseExposition(metrics.render());
  EXPECT_DOUBLE_EQ(e.value("oomguard_pressure_waiting_seconds_total", {{"cgroup", "/a"}}), 2.1);
  EXPECT_DOUBLE_EQ(e.value("oomguard_pressure_stalled_seconds_total", {{"cgroup", "/a"}}), 0.3);
}

TEST(PrometheusMetrics, PressureWithoutAFullLineHasNoFullSeries) {
  auto metrics = makeMetrics();
  metrics.setPressure("/a", pressure(7, std::nullopt));
  const auto e = parseExposition(metrics.render());
  EXPECT_EQ(e.find("oomguard_pressure_waiting_seconds_total", {{"cgroup", "/a"}}).size(), 1U);
  EXPECT_TRUE(e.find("oomguard_pressure_stalled_seconds_total", {{"cgroup", "/a"}}).empty());
  EXPECT_EQ(e.find("oomguard_pressure_ratio", {{"cgroup", "/a"}}).size(), 3U);
  EXPECT_TRUE(e.find("oomguard_pressure_ratio", {{"cgroup", "/a"}, {"kind", "full"}}).empty());
}

// ---- Kills, predictions, histograms, sysctls ----------------------------------------------------------

TEST(PrometheusMetrics, KillsKernelOomKillsAndPredictionsCount) {
  auto metrics = makeMetrics();
  metrics.countKill("pressure", "psi_full", "killed");
  metrics.countKill("pressure", "psi_full", "killed");
  metrics.countKill("limit", "memory_max", "vanished");
  metrics.countKernelOomKill("CONSTRAINT_MEMCG");
  metrics.countPrediction("match");
  metrics.countPrediction("match");
  metrics.countPrediction("mismatch");
  const auto e = parseExposition(metrics.render());
  EXPECT_EQ(
      e.value("oomguard_kills_total", {{"policy", "pressure"}, {"reason", "psi_full"}, {"result", "killed"}}),
      2);
  EXPECT_EQ(e.value("oomguard_kills_total",
                    {{"policy", "limit"}, {"reason", "memory_max"}, {"result", "vanished"}}),
            1);
  EXPECT_EQ(e.value("oomguard_kernel_oom_kills_total", {{"constraint", "CONSTRAINT_MEMCG"}}), 1);
  EXPECT_EQ(e.value("oomguard_kernel_oom_kills_total", {{"constraint", "CONSTRAINT_NONE"}}), 0);
  EXPECT_EQ(e.value("oomguard_predictions_total", {{"result", "match"}}), 2);
  EXPECT_EQ(e.value("oomguard_predictions_total", {{"result", "mismatch"}}), 1);
}

TEST(PrometheusMetrics, ReactionBucketsSpanFiftyMicrosecondsToTenSeconds) {
  auto metrics = makeMetrics();
  metrics.observeReaction(0.00004);  // 40 us
  metrics.observeReaction(0.0003);   // 300 us
  metrics.observeReaction(7.0);      // 7 s
  metrics.observeReaction(60.0);     // beyond the last bucket
  metrics.observeScanDuration(0.003);
  const auto e = parseExposition(metrics.render());
  EXPECT_EQ(PrometheusMetrics::reactionBuckets().front(), 0.00005);
  EXPECT_EQ(PrometheusMetrics::reactionBuckets().back(), 10.0);
  EXPECT_EQ(e.value("oomguard_reaction_seconds_bucket", {{"le", "5e-05"}}), 1);
  EXPECT_EQ(e.value("oomguard_reaction_seconds_bucket", {{"le", "0.0005"}}), 2);
  EXPECT_EQ(e.value("oomguard_reaction_seconds_bucket", {{"le", "5"}}), 2);
  EXPECT_EQ(e.value("oomguard_reaction_seconds_bucket", {{"le", "10"}}), 3);
  EXPECT_EQ(e.value("oomguard_reaction_seconds_bucket", {{"le", "+Inf"}}), 4);
  EXPECT_EQ(e.value("oomguard_reaction_seconds_count"), 4);
  EXPECT_NEAR(e.value("oomguard_reaction_seconds_sum"), 67.00034, 1e-9);
  EXPECT_EQ(e.value("oomguard_scan_duration_seconds_bucket", {{"le", "0.0025"}}), 0);
  EXPECT_EQ(e.value("oomguard_scan_duration_seconds_bucket", {{"le", "0.005"}}), 1);
}

TEST(PrometheusMetrics, SysctlDriftIsAZeroOrOneGauge) {
  auto metrics = makeMetrics();
  metrics.setSysctlDrift("vm.panic_on_oom", true);
  metrics.setSysctlDrift("vm.oom_dump_tasks", false);
  auto e = parseExposition(metrics.render());
  EXPECT_EQ(e.value("oomguard_sysctl_drift", {{"name", "vm.panic_on_oom"}}), 1);
  EXPECT_EQ(e.value("oomguard_sysctl_drift", {{"name", "vm.oom_dump_tasks"}}), 0);
  metrics.setSysctlDrift("vm.panic_on_oom", false);
  e = parseExposition(metrics.render());
  EXPECT_EQ(e.value("oomguard_sysctl_drift", {{"name", "vm.panic_on_oom"}}), 0);
}

TEST(PrometheusMetrics, LabelValuesAreEscapedAndValidUtf8) {
  auto metrics = makeMetrics();
  std::vector<RankedVictim> top = {
      RankedVictim{1, "/we\"ird\\path\n", std::string("bad\xff\xfe") + "comm", 1, 1, {}},
      RankedVictim{2, "/caf\xc3\xa9", "\xe2\x82", 1, 1, {}}};
  metrics.setVictimRanking("host", "kernel", top);
  const std::string text = metrics.render();
  const auto e = parseExposition(text);
  EXPECT_EQ(e.find("oomguard_victim_rank", {{"cgroup", "/we\"ird\\path\n"}}).size(), 1U);
  EXPECT_EQ(e.find("oomguard_victim_rank", {{"comm",
                                             "bad\xEF\xBF\xBD\xEF\xBF\xBD"
                                             "comm"}})
                .size(),
            1U);
  EXPECT_EQ(e.find("oomguard_victim_rank", {{"cgroup", "/caf\xc3\xa9"}}).size(), 1U);  // valid UTF-8 stays
  EXPECT_EQ(e.find("oomguard_victim_rank", {{"comm", "\xEF\xBF\xBD\xEF\xBF\xBD"}}).size(), 1U);
  EXPECT_EQ(text.find('\xff'), std::string::npos);
}

// ---- Threads: scrapes while the daemon's thread changes everything ------------------------------------

TEST(PrometheusMetrics, ScrapesDuringChurnSeeEachRankingWhole) {
  auto metrics = makeMetrics();
  std::atomic<bool> done{false};
  std::atomic<size_t> scrapes{0};
  std::atomic<size_t> torn{0};
  auto scraper = [&] {
    while (!done.load()) {
      const auto e = parseExposition(metrics.render());
      // Within one scrape, every (domain, ranking) shows one ranking whole: ranks 1..n, all from the same
      // setVictimRanking call (the "genN-" in the cgroup names), in all three families.
      using Key = std::pair<std::string, std::string>;
      std::map<Key, std::set<size_t>> ranks;
      std::map<Key, std::set<std::string>> generations;
      std::map<Key, size_t> points;
      std::map<Key, size_t> scores;
      for (const auto& s : e.find("oomguard_victim_rank")) {
        const Key key{s.labels.at("domain"), s.labels.at("ranking")};
        ranks[key].insert(static_cast<size_t>(s.value));
        const std::string& cgroup = s.labels.at("cgroup");
        const size_t gen = cgroup.find("/gen");
        generations[key].insert(gen == std::string::npos ? "?"
                                                         : cgroup.substr(gen, cgroup.find('-', gen) - gen));
      }
      for (const auto& s : e.find("oomguard_victim_points")) {
        ++points[{s.labels.at("domain"), s.labels.at("ranking")}];
      }
      for (const auto& s : e.find("oomguard_victim_oom_score")) {
        ++scores[{s.labels.at("domain"), s.labels.at("ranking")}];
      }
      for (const auto& [key, set] : ranks) {
        const bool whole = generations[key].size() == 1 && *set.begin() == 1 && *set.rbegin() == set.size() &&
                           points[key] == set.size() && scores[key] == set.size();
        if (!whole) {
          ++torn;
        }
      }
      if (points.size() != ranks.size() || scores.size() != ranks.size()) {
        ++torn;
      }
      ++scrapes;
    }
  };
  std::thread first(scraper);
  std::thread second(scraper);
  for (size_t round = 0; round < 300 || scrapes.load() < 20; ++round) {
    for (size_t d = 0; d < 20; ++d) {
      const std::string domain = "/d" + std::to_string(d);
      metrics.setVictimRanking(domain, "kernel",
                               victims(1 + (round + d) % 10, domain + "/gen" + std::to_string(round) + "-"));
      metrics.setPressure(domain, pressure(round, round));
      metrics.countMemoryEvent(domain, "high", 1);
      if ((round + d) % 7 == 0) {
        metrics.forgetCgroup(domain);
      }
    }
    metrics.observeReaction(0.001);
    if (round > 100000) {
      break;  // a bound on the wait, should the scrapers never run
    }
  }
  done = true;
  first.join();
  second.join();
  EXPECT_GE(scrapes.load(), 20U);
  EXPECT_EQ(torn.load(), 0U);
}

// ---- HTTP ----------------------------------------------------------------------------------------------

testing::HttpExchange httpRequest(int port, const std::string& method, const std::string& path) {
  return testing::httpExchange(port, method, path);
}

TEST(PrometheusMetrics, ServesMetricsAndHealthzOnlyOnLoopback) {
  auto metrics = makeMetrics();
  metrics.setVictimRanking("host", "kernel", victims(2));
  metrics.serve("127.0.0.1:0");
  const auto ports = metrics.listeningPorts();
  ASSERT_EQ(ports.size(), 1U);
  ASSERT_GT(ports.front(), 0);
  const int port = ports.front();

  const auto scrape = httpRequest(port, "GET", "/metrics");
  EXPECT_EQ(scrape.status, 200);
  const auto e = parseExposition(scrape.body);
  EXPECT_EQ(e.find("oomguard_victim_rank").size(), 2U);
  EXPECT_EQ(e.value("oomguard_build_info", {{"version", "1.2.3"}}), 1);

  const auto health = httpRequest(port, "GET", "/healthz");
  EXPECT_EQ(health.status, 200);
  EXPECT_EQ(health.body, "ok");
  EXPECT_EQ(httpRequest(port, "HEAD", "/healthz").status, 200);
  for (const char* path : {"/", "/other", "/metrics/extra", "/metricsx", "/healthz/x", "/favicon.ico"}) {
    EXPECT_EQ(httpRequest(port, "GET", path).status, 404) << path;
  }
  EXPECT_EQ(httpRequest(port, "POST", "/metrics").status, 405);
  EXPECT_EQ(httpRequest(port, "PUT", "/healthz").status, 405);
  EXPECT_EQ(httpRequest(port, "DELETE", "/metrics").status, 405);
  EXPECT_EQ(httpRequest(port, "GET", "/metrics?name[]=x").status, 200);
}

TEST(PrometheusMetrics, ServeRefusesAnAddressInUseOrMalformed) {
  auto first = makeMetrics();
  first.serve("127.0.0.1:0");
  const int port = first.listeningPorts().at(0);
  auto second = makeMetrics();
  EXPECT_THROW(second.serve("127.0.0.1:" + std::to_string(port)), std::runtime_error);
  auto third = makeMetrics();
  EXPECT_THROW(third.serve("127.0.0.1:9743,0.0.0.0:80"), std::runtime_error);
}

TEST(PrometheusMetrics, ListenAddresses) {
  for (const char* good : {"127.0.0.1:9743", "0.0.0.0:9743", "127.0.0.1:0", "[::1]:9743", "[::]:1"}) {
    EXPECT_TRUE(config::parseListenAddress(good).ok()) << good;
  }
  for (const char* bad : {"9743", ":9743", "127.0.0.1:", "127.0.0.1:65536", "127.0.0.1:http",
                          "localhost:9743", "127.0.0.1:9743,0.0.0.0:80", "::1:9743", "127.0.0.1:9743s",
                          // each part 0..255, four parts, no leading sign or space (these once bound elsewhere)
                          "256.0.0.0:18090", "383.0.0.1:9743", "999.999.999.999:1", "1.2.3:9743", "1.2.3.4.5:9743",
                          " 127.0.0.1:9743", "127.0.0.1: 9743", "127.0.0.1:+9743", "[::1]", "[::1]9743", "[:::9743",
                          "[127.0.0.1]:9743", "[localhost]:9743", ""}) {
    EXPECT_FALSE(config::parseListenAddress(bad).ok()) << bad;
  }
}

}  // namespace
}  // namespace oomguard::guardian::exporter
