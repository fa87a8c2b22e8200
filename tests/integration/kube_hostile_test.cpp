// The Kubernetes client against a hostile tenant and a broken API server (issue 16), over the real TLS
// test server (fake_api_server.hpp): a pod with 10,000 annotations updated 50 times, 110 pods at every
// annotation bound, a 16 MB watch line of '[', an endless list, and an annotation flood in front of a kill
// Event. Each must leave the daemon's memory bounded and its loop turning. Figures are printed; the
// bounds asserted are generous multiples of what was measured (stated beside each).
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "daemon_process.hpp"
#include "fake_api_server.hpp"
#include "guardian/config/tenant.hpp"
#include "guardian/kube/workloads.hpp"
#include "guardian/kube_tls/event_recorder.hpp"
#include "guardian/kube_tls/pod_watch.hpp"

namespace oomguard::guardian {
namespace {

namespace asio = boost::asio;
namespace fs = std::filesystem;
using Json = nlohmann::json;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;
using oomguard::testing::ApiServer;
using oomguard::testing::makePki;
using oomguard::testing::Pki;
using oomguard::testing::podList;
using oomguard::testing::Request;
using oomguard::testing::Responder;
using oomguard::testing::runFor;
using oomguard::testing::runUntil;
using oomguard::testing::watchEvent;

constexpr const char* kNode = "node-1";

// Under AddressSanitizer, resident memory is its shadow and quarantine: the RSS bounds are checked only
// in the plain build (the same tests run there in the test command); the sanitizer run says it skipped them.
#if defined(__SANITIZE_ADDRESS__)
constexpr bool kRssMeaningful = false;
#else
constexpr bool kRssMeaningful = true;
#endif
void expectRssBelow(uint64_t kb, uint64_t bound_kb, const char* what) {
  if (!kRssMeaningful) {
    std::printf("SKIPPED (under AddressSanitizer): the RSS bound of %s\n", what);
    return;
  }
  EXPECT_LT(kb, bound_kb) << what << ": " << kb << " KiB";
}

// Resident memory of this process in KiB; `peak` for the high-water mark (reset by resetPeak).
uint64_t rssKb(bool peak = false) {
  std::ifstream status("/proc/self/status");
  const std::string key = peak ? "VmHWM:" : "VmRSS:";
  for (std::string line; std::getline(status, line);) {
    if (line.rfind(key, 0) == 0) {
      return std::stoull(line.substr(key.size()));
    }
  }
  return 0;
}
void resetPeak() { std::ofstream("/proc/self/clear_refs") << "5"; }

// A field of /proc/<pid>/status in KiB (VmRSS, VmHWM), 0 when unreadable.
uint64_t statusKb(pid_t pid, const std::string& key) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(status, line);) {
    if (line.rfind(key + ":", 0) == 0) {
      return std::stoull(line.substr(key.size() + 1));
    }
  }
  return 0;
}

// The chart's container memory limit (values.yaml resources.limits.memory, "<n>Mi") in KiB.
uint64_t chartMemoryLimitKb() {
  std::ifstream in(OOMGUARD_SOURCE_DIR "/helm/oomguard/values.yaml");
  std::stringstream text;
  text << in.rdbuf();
  std::smatch match;
  const std::string values = text.str();
  if (!std::regex_search(values, match, std::regex("\nresources:\n(?:  .*\n)*?  limits:\n    memory: (\\d+)Mi"))) {
    return 0;
  }
  return std::stoull(match[1]) * 1024;
}

Json podWith(const std::string& name, const std::string& uid, const std::string& rv, const Json& annotations) {
  return {{"metadata", {{"name", name}, {"namespace", "team-a"}, {"uid", uid}, {"resourceVersion", rv},
                        {"annotations", annotations}}},
          {"spec", {{"nodeName", kNode}, {"containers", Json::array({{{"name", "app"}}})}}},
          {"status", {{"phase", "Running"}, {"qosClass", "BestEffort"}}}};
}

// The hostile pod of issue 16: 10,000 oomguard.io/ keys (about 190 KB), each value changed per update.
Json hostileAnnotations(int update) {
  Json annotations = Json::object();
  for (int i = 0; i < 10000; ++i) {
    annotations["oomguard.io/v1.k" + std::to_string(i)] = "v" + std::to_string(update);
  }
  return annotations;
}

// 110 pods (kubelet's default max-pods) at every bound and past it: 250 KB of other annotations each,
// an over-long known value, 100 oom-group.<container> keys and 100 unknown keys of 300 bytes.
std::vector<Json> maximalPods() {
  std::vector<Json> pods;
  for (int i = 0; i < 110; ++i) {
    Json annotations = Json::object();
    for (int k = 0; k < 250; ++k) {
      annotations["example.com/note-" + std::to_string(k)] = std::string(1000, 'n');
    }
    annotations["oomguard.io/v1.protection"] = std::string(300, 'x');
    for (int k = 0; k < 100; ++k) {
      annotations["oomguard.io/v1.oom-group.c" + std::to_string(k)] = std::string(300, 't');
      annotations["oomguard.io/v1.z" + std::to_string(k)] = std::string(300, 'z');
    }
    pods.push_back(podWith("p" + std::to_string(i), "u-" + std::to_string(i), "1", annotations));
  }
  return pods;
}

class KubeHostileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("oomguard-hostile-" + std::to_string(::getpid()) + "-" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    pki_ = makePki(dir_);
    std::ofstream(dir_ / "token") << "token\n";
  }
  void TearDown() override {
    watch_.reset();
    recorder_.reset();
    if (server_) {
      server_->stop();
    }
    fs::remove_all(dir_);
  }
  void serve(ApiServer::Handler handler) { server_ = std::make_unique<ApiServer>(pki_, std::move(handler)); }
  [[nodiscard]] kube_client::KubeApiEndpoint endpoint() const {
    kube_client::KubeApiEndpoint endpoint;
    endpoint.host = "127.0.0.1";
    endpoint.port = server_->port();
    endpoint.ca_file = pki_.ca_file.string();
    endpoint.token_file = (dir_ / "token").string();
    endpoint.node_name = kNode;
    endpoint.user_agent = "oomguard-test/0.1";
    return endpoint;
  }
  static kube_client::PodWatchOptions options() {
    kube_client::PodWatchOptions options;
    options.backoff_initial = 20ms;
    options.backoff_max = 80ms;
    options.watch_timeout = 30s;
    options.idle_timeout = 30s;
    options.connect_timeout = 5s;
    return options;
  }
  // The watch feeding a Workloads as the daemon's Pods does; the longest upsert is kept.
  void startWatch() {
    watch_ = std::make_unique<kube_tls::PodWatch>(
        io_, endpoint(), options(),
        [this](const kube::PodChange& change) {
          ++changes_;
          if (change.kind == kube::PodChange::Kind::kDeleted) {
            workloads_.erase(change.uid);
            return;
          }
          const auto started = Clock::now();
          const auto update = workloads_.upsert(*watch_->find(change.uid));
          issues_ += update.new_invalid.size() + update.new_refused.size();
          longest_upsert_ = std::max(longest_upsert_, Clock::now() - started);
        },
        [this](const std::string& event, const std::string& detail) { logs_.emplace_back(event, detail); });
    watch_->start();
  }
  [[nodiscard]] bool logged(const std::string& event, const std::string& part) const {
    return std::any_of(logs_.begin(), logs_.end(),
                       [&](const auto& e) { return e.first == event && e.second.find(part) != std::string::npos; });
  }

  asio::io_context io_;
  fs::path dir_;
  Pki pki_;
  std::unique_ptr<ApiServer> server_;
  std::unique_ptr<kube_tls::PodWatch> watch_;
  std::unique_ptr<kube_tls::EventRecorder> recorder_;
  kube::Workloads workloads_{config::TenantPolicy{{"kube-system"}, 10}, 8LL << 30};
  size_t changes_ = 0;
  size_t issues_ = 0;
  Clock::duration longest_upsert_{};
  std::vector<std::pair<std::string, std::string>> logs_;
};

TEST_F(KubeHostileTest, TenThousandAnnotationsUpdatedFiftyTimes) {
  // Before: the 11th update blocked the loop 7.4 s, the 15th 20.8 s; RSS 16 -> 56 MiB.
  constexpr int kUpdates = 50;
  serve([&](const Request& request, Responder& out) {
    if (!request.isWatch()) {
      out.send(200, podList("1", {podWith("hostile", "u-1", "1", hostileAnnotations(0))}));
      return;
    }
    if (request.param("resourceVersion") != "1") {
      out.hold();
      return;
    }
    out.beginStream();
    for (int update = 1; update <= kUpdates; ++update) {
      out.event(watchEvent("MODIFIED", podWith("hostile", "u-1", std::to_string(1 + update), hostileAnnotations(update))));
    }
    out.hold();
  });
  startWatch();
  ASSERT_TRUE(runUntil(io_, [&] { return watch_->status().synced; }));
  const uint64_t synced_kb = rssKb();
  const auto started = Clock::now();
  ASSERT_TRUE(runUntil(io_, [&] { return changes_ >= kUpdates + 1; }, 60s)) << changes_;
  const auto seconds = std::chrono::duration<double>(Clock::now() - started).count();
  const uint64_t grown_kb = rssKb() > synced_kb ? rssKb() - synced_kb : 0;
  const auto longest_ms = std::chrono::duration<double, std::milli>(longest_upsert_).count();
  std::printf("hostile pod: %d updates of 10,000 annotations in %.2f s; longest upsert %.3f ms; RSS +%llu KiB; "
              "%zu issues reported\n",
              kUpdates, seconds, longest_ms, static_cast<unsigned long long>(grown_kb), issues_);
  const kube::KubePod* held = watch_->find("u-1");
  ASSERT_NE(held, nullptr);
  EXPECT_EQ(held->annotations.size(), kube::kMaxUnknownAnnotationKeys);
  // The figure is printed above (0.35 ms here); the bound only has to catch the old behaviour (7.4 s at
  // the 11th update, 20.8 s at the 15th) on a loaded machine or under AddressSanitizer (12.6 ms seen with
  // a VM beside it): a timing is a figure, not a test of speed. O(bounded keys) is asserted below.
  EXPECT_LT(longest_ms, 500.0) << "a pod update costs O(its own bounded keys)";
  expectRssBelow(grown_kb, 8U * 1024, "RSS growth over 50 updates");
  // One issue per kept key plus one for the keys over the bound, each reported again when its value changed.
  EXPECT_LE(issues_, static_cast<size_t>(kUpdates + 1) * (kube::kMaxUnknownAnnotationKeys + 1));
}

TEST_F(KubeHostileTest, HundredTenPodsAtEveryBound) {
  // Before: 110 pods with 250 KB of ordinary annotations each cost +62 MiB of RSS (the chart allows 64Mi).
  const std::vector<Json> pods = maximalPods();
  const size_t page_pods = 10;
  serve([&](const Request& request, Responder& out) {
    if (request.isWatch()) {
      out.hold();
      return;
    }
    const size_t first = request.param("continue") == oomguard::testing::kAbsent ? 0 : std::stoul(request.param("continue"));
    const size_t limit = std::min<size_t>(page_pods, std::stoul(request.param("limit")));
    const size_t end = std::min(pods.size(), first + limit);
    out.send(200, podList("1", std::vector<Json>(pods.begin() + static_cast<long>(first), pods.begin() + static_cast<long>(end)),
                          end < pods.size() ? std::to_string(end) : ""));
  });
  const uint64_t before_kb = rssKb();
  resetPeak();
  startWatch();
  ASSERT_TRUE(runUntil(io_, [&] { return watch_->status().synced && changes_ >= 110; }, 60s));
  const uint64_t grown_kb = rssKb() > before_kb ? rssKb() - before_kb : 0;
  std::printf("110 pods at every bound (30 MB of annotations listed): RSS +%llu KiB, peak %llu KiB\n",
              static_cast<unsigned long long>(grown_kb), static_cast<unsigned long long>(rssKb(true)));
  EXPECT_EQ(watch_->pods().size(), 110U);
  EXPECT_EQ(watch_->find("u-7")->annotations.size(),
            1U + kube::kMaxContainerOomGroupKeys + kube::kMaxUnknownAnnotationKeys);
  size_t held_bytes = 0;
  for (const auto& [uid, pod] : watch_->pods()) {
    for (const auto& [key, value] : pod.annotations) {
      held_bytes += key.size() + value.size();
    }
  }
  std::printf("110 pods: the cache holds %zu bytes of annotations\n", held_bytes);
  // 110 pods x 69 keys x (at most ~40 + 256 bytes): about 2.2 MB, whatever the pods carry.
  EXPECT_LT(held_bytes, 110U * 69U * 300U);
  // RSS here includes the test server's threads, which render and send 3 MB pages in this process
  // (measured: +23 MiB in all): a bound on the client and the server together.
  expectRssBelow(grown_kb, 40U * 1024, "RSS growth with 110 maximal pods");
}

TEST_F(KubeHostileTest, SixteenMegabyteLineOfBracketsIsRefusedWithoutBuildingIt) {
  // Before: parsing it peaked at 1.18 GiB and took 2.9 s (and it was parsed twice).
  const std::string brackets(16UL << 20U, '[');
  std::atomic<int> watches{0};
  serve([&](const Request& request, Responder& out) {
    if (!request.isWatch()) {
      out.send(200, podList("1", {}));
      return;
    }
    if (watches++ == 0) {
      out.beginStream();
      for (size_t at = 0; at < brackets.size() && out.chunk(std::string_view(brackets).substr(at, 1 << 16)); at += 1 << 16) {
      }
      out.chunk("\n");
      return;
    }
    out.hold();
  });
  const uint64_t before_kb = rssKb();
  resetPeak();
  startWatch();
  ASSERT_TRUE(runUntil(io_, [&] { return watches >= 2; }, 30s)) << "the watch was not resumed";
  const uint64_t peak_kb = rssKb(true);
  std::printf("16 MB of '[': peak RSS %llu KiB (before %llu KiB)\n", static_cast<unsigned long long>(peak_kb),
              static_cast<unsigned long long>(before_kb));
  EXPECT_TRUE(logged("reconnect", "an event larger than")) << "the connection was not dropped";
  // The server thread's own 16 MiB string is in the same process: the bound allows for it.
  expectRssBelow(peak_kb, before_kb + 48U * 1024, "peak RSS while refusing 16 MB of '['");
  // The loop is alive: a timer still fires.
  bool fired = false;
  asio::steady_timer timer(io_, 10ms);
  timer.async_wait([&](const boost::system::error_code&) { fired = true; });
  EXPECT_TRUE(runUntil(io_, [&] { return fired; }, 2s));
}

TEST_F(KubeHostileTest, DeeplyNestedEventIsRefusedOnce) {
  std::atomic<int> watches{0};
  serve([&](const Request& request, Responder& out) {
    if (!request.isWatch()) {
      out.send(200, podList("1", {}));
      return;
    }
    if (watches++ == 0) {
      out.beginStream();
      out.chunk(std::string(100000, '[') + std::string(100000, ']') + "\n");
      return;
    }
    out.hold();
  });
  startWatch();
  ASSERT_TRUE(runUntil(io_, [&] { return watches >= 2; }, 30s));
  EXPECT_TRUE(logged("reconnect", "malformed event (200000 bytes)")) << (logs_.empty() ? "" : logs_.back().second);
}

TEST_F(KubeHostileTest, EndlessListIsCutAndAskedAgainSmaller) {
  std::vector<std::string> limits;
  std::mutex mutex;
  serve([&](const Request& request, Responder& out) {
    {
      std::lock_guard lock(mutex);
      limits.push_back(request.param("limit"));
    }
    out.beginStream();
    out.chunk(R"({"kind":"PodList","items":[)");
    const std::string filler = R"({"metadata":{"name":"x"}},)";
    std::string block;
    while (block.size() < (1U << 16)) {
      block += filler;
    }
    while (out.chunk(block)) {
    }
  });
  const uint64_t before_kb = rssKb();
  resetPeak();
  startWatch();
  ASSERT_TRUE(runUntil(io_, [&] { return logged("reconnect", "one pod larger than"); }, 60s));
  const uint64_t peak_kb = rssKb(true);
  std::lock_guard lock(mutex);
  std::printf("endless list: pages asked %zu (limit %s down to %s), peak RSS %llu KiB (before %llu KiB)\n",
              limits.size(), limits.front().c_str(), limits.back().c_str(), static_cast<unsigned long long>(peak_kb),
              static_cast<unsigned long long>(before_kb));
  EXPECT_EQ(limits.front(), "100");
  EXPECT_EQ(limits.back(), "1");
  EXPECT_FALSE(watch_->status().synced);
  expectRssBelow(peak_kb, before_kb + 40U * 1024, "peak RSS of an endless list (one page is at most 8 MiB)");
}

TEST_F(KubeHostileTest, AnAnnotationFloodNeverDropsAKillEvent) {
  std::atomic<bool> release{false};
  serve([&](const Request& request, Responder& out) {
    out.hold([&] { return release.load(); });
    out.send(201, Json::parse(request.body, nullptr, false));
  });
  recorder_ = std::make_unique<kube_tls::EventRecorder>(io_, endpoint(), "oomguard", 16, 1);
  for (int pod = 0; pod < 50; ++pod) {
    for (int issue = 0; issue < 10; ++issue) {
      recorder_->report(kube_client::PodEventReport{"team-a", "p" + std::to_string(pod), "u-" + std::to_string(pod),
                                                    "Warning", "OomguardAnnotationInvalid", "m", false});
    }
  }
  EXPECT_LE(recorder_->status().queued, 8U) << "annotation Events take at most half the queue";
  for (int kill = 0; kill < 12; ++kill) {
    recorder_->report(kube_client::PodEventReport{"shop", "victim-" + std::to_string(kill), "k-" + std::to_string(kill),
                                                  "Warning", "OomguardKilled", "killed", true});
  }
  release = true;
  const auto kills_sent = [&] {
    size_t sent = 0;
    for (const Request& request : server_->requests()) {
      const Json body = Json::parse(request.body, nullptr, false);
      sent += body.is_object() && body.value("reason", "") == "OomguardKilled" ? 1 : 0;
    }
    return sent;
  };
  EXPECT_TRUE(runUntil(io_, [&] { return kills_sent() == 12; }, 20s)) << kills_sent() << " kill Events sent of 12";
}

TEST_F(KubeHostileTest, TheDaemonsMemoryNeedUnderTheWorstBoundedInputFitsTheChartsLimit) {
  // The daemon runs as the chart runs it (oom_score_adj -1000, mlockall): at its own memory limit the
  // memcg OOM killer would find nothing it may kill and the guardian would wedge. Its need with 110 pods
  // at every annotation bound, plus the hostile pod's 50 updates, must stay well under the limit.
  if (!kRssMeaningful) {
    GTEST_SKIP() << "SKIPPED (under AddressSanitizer): the daemon's memory need is measured in the plain build";
  }
  const std::vector<Json> pods = maximalPods();
  std::vector<std::string> pages;  // rendered before the daemon starts: the server only sends them
  for (size_t first = 0; first < pods.size(); first += 10) {
    const size_t end = std::min(pods.size(), first + 10);
    pages.push_back(podList("1", std::vector<Json>(pods.begin() + static_cast<long>(first), pods.begin() + static_cast<long>(end)),
                            end < pods.size() ? std::to_string(end) : "")
                        .dump());
  }
  std::atomic<bool> hostile_sent{false};
  serve([&](const Request& request, Responder& out) {
    if (request.path != "/api/v1/pods") {
      out.send(201, Json::object());
      return;
    }
    if (!request.isWatch()) {
      const std::string next = request.param("continue");
      const size_t page = next == oomguard::testing::kAbsent ? 0 : std::stoul(next) / 10;
      out.beginStream();
      out.chunk(pages.at(page));
      out.endStream();
      return;
    }
    out.beginStream();
    for (int update = 1; update <= 50 && !hostile_sent; ++update) {
      out.event(watchEvent("MODIFIED", podWith("hostile", "u-h", std::to_string(1 + update), hostileAnnotations(update))));
    }
    hostile_sent = true;
    out.hold();
  });
  const fs::path account = dir_ / "serviceaccount";
  fs::create_directories(account);
  fs::copy_file(pki_.ca_file, account / "ca.crt");
  fs::copy_file(dir_ / "token", account / "token");
  const std::string config_path = (dir_ / "config.json").string();
  std::ofstream(config_path) << Json{{"version", 1},
                                     {"mode", "observe"},
                                     {"history", {{"dir", (dir_ / "state").string()}}},
                                     {"self", {{"oom_score_adj", -1000}, {"mlock", true}}},
                                     {"kubernetes",
                                      {{"enabled", true},
                                       {"api_server", "https://127.0.0.1:" + std::to_string(server_->port())},
                                       {"node_name", kNode},
                                       {"service_account_dir", account.string()}}}}
                                    .dump();
  oomguard::testing::DaemonProcess daemon({OOMGUARD_BINARY, "run", "--config", config_path, "--metrics-listen", "127.0.0.1:0"});
  ASSERT_TRUE(daemon.waitFor("kubernetes", 60s, [](const Json& line) { return line.value("what", "") == "synced"; }))
      << [&] {
           std::string all;
           for (const auto& line : daemon.lines) {
             all += line + "\n";
           }
           return all;
         }();
  // Under mlockall, as the chart runs it, the libraries' start-up pages were released all the same
  // (MADV_DONTNEED_LOCKED), nothing kept or failed.
  std::string released;
  for (const auto& line : daemon.lines) {
    const Json parsed = Json::parse(line, nullptr, false);
    if (!parsed.is_discarded() && parsed.value("event", "") == "started") {
      released = parsed.value("startup_pages_released", "");
    }
  }
  EXPECT_TRUE(!released.empty() && released[0] >= '1' && released[0] <= '9' &&
              released.ends_with(" mappings") && released.find(';') == std::string::npos)
      << "startup_pages_released: " << released;
  // The daemon's log is read meanwhile: a full pipe would block its writes, and with them its loop.
  const auto deadline = Clock::now() + 60s;
  while (!hostile_sent && Clock::now() < deadline) {
    daemon.waitFor("never", 100ms);
  }
  ASSERT_TRUE(hostile_sent) << "the watch did not take the hostile pod's 50 updates within 60 s";
  daemon.waitFor("never", 2s);  // let it take the 50 updates in
  const uint64_t peak_kb = statusKb(daemon.pid(), "VmHWM");
  const uint64_t rss_kb = statusKb(daemon.pid(), "VmRSS");
  const uint64_t limit_kb = chartMemoryLimitKb();
  std::printf("the daemon (mlockall, oom_score_adj -1000) with 110 maximal pods and the hostile pod's 50 updates: "
              "RSS %llu KiB, peak %llu KiB; the chart's limit %llu KiB\n",
              static_cast<unsigned long long>(rss_kb), static_cast<unsigned long long>(peak_kb),
              static_cast<unsigned long long>(limit_kb));
  ASSERT_GT(limit_kb, 0U) << "resources.limits.memory not found in helm/oomguard/values.yaml";
  ASSERT_GT(peak_kb, 0U);
  EXPECT_LT(peak_kb * 4, limit_kb * 3) << "less than 75% of the chart's limit: a 25% margin";
  daemon.signal(SIGTERM);
  EXPECT_EQ(daemon.waitExit(10s), 0);
}

}  // namespace
}  // namespace oomguard::guardian
