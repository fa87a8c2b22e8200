// The Kubernetes API client against a real TLS server on loopback (fake_api_server.hpp: a test CA made
// in-process, the API server's JSON): paginated PodLists, chunked watch streams with
// ADDED/MODIFIED/DELETED/BOOKMARK/ERROR events, Status bodies for refusals, every request recorded. The
// client runs on this thread's io_context, driven until a condition holds or a deadline passes; the server
// answers on threads of its own.
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <string>
#include <vector>

#include "fake_api_server.hpp"
#include "guardian/kube/pod.hpp"
#include "guardian/kube_tls/event_recorder.hpp"
#include "guardian/kube_tls/pod_watch.hpp"

namespace oomguard::guardian {
namespace {

namespace asio = boost::asio;
namespace fs = std::filesystem;
using tcp = boost::asio::ip::tcp;
using Json = nlohmann::json;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;
using kube::KubePod;
using kube::PodChange;
using kube_tls::EventRecorder;
using kube_client::KubeApiEndpoint;
using kube_client::PodEventReport;
using kube_tls::PodWatch;
using kube_client::PodWatchOptions;
using kube_client::PodWatchStatus;
using oomguard::testing::ApiServer;
using oomguard::testing::bookmark;
using oomguard::testing::kAbsent;
using oomguard::testing::makePki;
using oomguard::testing::Pki;
using oomguard::testing::podList;
using oomguard::testing::Request;
using oomguard::testing::Responder;
using oomguard::testing::runFor;
using oomguard::testing::runUntil;
using oomguard::testing::status;
using oomguard::testing::watchEvent;

constexpr const char* kNode = "node-1";

// --- API objects ---------------------------------------------------------------------------------------

// A pod as the API server returns it (trimmed: managedFields, conditions, volumes).
Json pod(const std::string& name, const std::string& uid, const std::string& resource_version,
         const std::string& protection = "normal") {
  Json container_status = {
      {"name", "web"},
      {"containerID", "containerd://9bca8d63d5fa610783847915bcff0ecac1273e5b4bed3f6fa1b07350e0135961"},
      {"image", "docker.io/library/nginx:1.25"},
      {"ready", true},
      {"restartCount", 0},
      {"started", true},
      {"state", {{"running", {{"startedAt", "2024-05-02T09:12:50Z"}}}}}};
  Json container = {
      {"name", "web"},
      {"image", "nginx:1.25"},
      {"imagePullPolicy", "IfNotPresent"},
      {"resources",
       {{"limits", {{"memory", "256Mi"}}}, {"requests", {{"cpu", "100m"}, {"memory", "128Mi"}}}}}};
  Json owner = {{"apiVersion", "apps/v1"}, {"kind", "ReplicaSet"},
                {"name", "web-6c9f7d8b5"}, {"uid", "0d6e3c47-5a52-4d3e-9d53-8f7a1c2b9e10"},
                {"controller", true},      {"blockOwnerDeletion", true}};
  return {{"apiVersion", "v1"},
          {"kind", "Pod"},
          {"metadata",
           {{"name", name},
            {"namespace", "shop"},
            {"uid", uid},
            {"resourceVersion", resource_version},
            {"generateName", "web-6c9f7d8b5-"},
            {"creationTimestamp", "2024-05-02T09:12:47Z"},
            {"labels", {{"app", "web"}, {"pod-template-hash", "6c9f7d8b5"}}},
            {"annotations",
             {{"oomguard.io/v1.protection", protection},
              {"kubectl.kubernetes.io/restartedAt", "2024-05-02T09:12:44Z"}}},
            {"ownerReferences", Json::array({owner})}}},
          {"spec",
           {{"nodeName", kNode},
            {"priority", 1000},
            {"priorityClassName", "shop-high"},
            {"restartPolicy", "Always"},
            {"schedulerName", "default-scheduler"},
            {"containers", Json::array({container})}}},
          {"status",
           {{"phase", "Running"},
            {"qosClass", "Burstable"},
            {"hostIP", "10.0.3.17"},
            {"podIP", "10.244.3.41"},
            {"startTime", "2024-05-02T09:12:47Z"},
            {"containerStatuses", Json::array({container_status})}}}};
}

// Real-shaped UIDs that sort a < b < c < d < e, so the order of a relist's announcements is known.
const std::string kUidA = "a1f3c2d4-0b5e-4c6a-8d7e-1f2a3b4c5d6e";
const std::string kUidB = "b2e4d3c5-1c6f-4d7b-9e8f-2a3b4c5d6e7f";
const std::string kUidC = "c3d5e4f6-2d7a-4e8c-8f9a-3b4c5d6e7f8a";
const std::string kUidD = "d4c6f5a7-3e8b-4f9d-9a0b-4c5d6e7f8a9b";
const std::string kUidE = "e5b7a6b8-4f9c-4a0e-8b1c-5d6e7f8a9b0c";

// --- the client side -----------------------------------------------------------------------------------

struct Change {
  PodChange::Kind kind;
  std::string uid;
  bool operator==(const Change&) const = default;
};

void PrintTo(const Change& change, std::ostream* out) {
  *out << (change.kind == PodChange::Kind::kUpserted ? "upsert " : "delete ") << change.uid;
}

Change upserted(const std::string& uid) {
  return Change{PodChange::Kind::kUpserted, uid};
}
Change deleted(const std::string& uid) {
  return Change{PodChange::Kind::kDeleted, uid};
}

class KubeApiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("oomguard-kube-" + std::to_string(::getpid()) + "-" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    pki_ = makePki(dir_);
    writeToken("token-1");
  }

  void TearDown() override {
    watch_.reset();
    recorder_.reset();
    if (server_) {
      server_->stop();
    }
    fs::remove_all(dir_);
  }

  // As kubelet rotates a projected token: a new file renamed over the old one.
  void writeToken(const std::string& token) const {
    const fs::path temporary = dir_ / "token.tmp";
    std::ofstream(temporary) << token << "\n";
    fs::rename(temporary, dir_ / "token");
  }

  void serve(ApiServer::Handler handler) { server_ = std::make_unique<ApiServer>(pki_, std::move(handler)); }

  [[nodiscard]] KubeApiEndpoint endpoint() const {
    KubeApiEndpoint endpoint;
    endpoint.host = "127.0.0.1";
    endpoint.port = server_->port();
    endpoint.ca_file = pki_.ca_file.string();
    endpoint.token_file = (dir_ / "token").string();
    endpoint.node_name = kNode;
    endpoint.user_agent = "oomguard-test/0.1";
    return endpoint;
  }

  static PodWatchOptions fastOptions() {
    PodWatchOptions options;
    options.backoff_initial = 20ms;
    options.backoff_max = 80ms;
    options.watch_timeout = 7s;
    options.idle_timeout = 30s;
    options.connect_timeout = 5s;
    return options;
  }

  void startWatch(const KubeApiEndpoint& endpoint, const PodWatchOptions& options) {
    watch_ = std::make_unique<PodWatch>(
        io_, endpoint, options,
        [this](const PodChange& change) {
          changes_.push_back(Change{change.kind, change.uid});
          // The cache holds the new state when a change is announced.
          const bool present = watch_->find(change.uid) != nullptr;
          if (present != (change.kind == PodChange::Kind::kUpserted)) {
            cache_ahead_of_announcements_ = false;
          }
        },
        [this](const std::string& event, const std::string& detail) { logs_.emplace_back(event, detail); });
    watch_->start();
  }

  [[nodiscard]] size_t logCount(const std::string& event) const {
    return static_cast<size_t>(
        std::count_if(logs_.begin(), logs_.end(), [&](const auto& entry) { return entry.first == event; }));
  }

  [[nodiscard]] std::vector<Request> watches() const {
    std::vector<Request> out;
    for (const Request& request : server_->requests()) {
      if (request.isWatch()) {
        out.push_back(request);
      }
    }
    return out;
  }

  asio::io_context io_;
  fs::path dir_;
  Pki pki_;
  std::unique_ptr<ApiServer> server_;
  std::unique_ptr<PodWatch> watch_;
  std::unique_ptr<EventRecorder> recorder_;
  std::vector<Change> changes_;
  std::vector<std::pair<std::string, std::string>> logs_;
  bool cache_ahead_of_announcements_ = true;
};

// --- PodWatch ------------------------------------------------------------------------------------------

TEST_F(KubeApiTest, PagedListThenWatchResumesAfterDropAndRelistsOnGoneEvent) {
  std::atomic<bool> gone_sent{false};
  serve([&](const Request& request, Responder& out) {
    if (request.path != "/api/v1/pods") {
      out.send(404, status(404, "NotFound", "the server could not find the requested resource"));
      return;
    }
    if (!request.isWatch()) {
      const bool first_page = request.param("continue") == kAbsent;
      if (!gone_sent) {
        out.send(200, first_page ? podList("100", {pod("web-a", kUidA, "90")},
                                           "eyJ2IjoibWV0YS5rOHMuaW8vdjEiLCJydiI6MTAwfQ")
                                 : podList("100", {pod("web-b", kUidB, "95")}));
      } else {
        out.send(200, first_page ? podList("110", {pod("web-a", kUidA, "108", "high")}, "cmVsaXN0LXBhZ2UtMg")
                                 : podList("110", {pod("web-d", kUidD, "109")}));
      }
      return;
    }
    const std::string resource_version = request.param("resourceVersion");
    if (resource_version == "100") {
      out.beginStream();
      out.event(watchEvent("ADDED", pod("web-c", kUidC, "101")));
      out.event(watchEvent("MODIFIED", pod("web-a", kUidA, "102", "low")));
      out.event(bookmark("105"));
      out.event(watchEvent("DELETED", pod("web-b", kUidB, "106")));
      return;  // dropped: no terminating chunk
    }
    if (resource_version == "106") {
      gone_sent = true;
      out.beginStream();
      out.event(watchEvent("ERROR", status(410, "Expired", "too old resource version: 106 (108)")));
      out.endStream();
      return;
    }
    if (resource_version == "110") {
      out.beginStream();
      out.hold();
      return;
    }
    out.send(500, status(500, "InternalError", "unexpected resourceVersion " + resource_version));
  });
  PodWatchOptions options = fastOptions();
  options.list_page_limit = 1;
  startWatch(endpoint(), options);

  ASSERT_TRUE(
      runUntil(io_, [&] { return watch_->status().watch_starts == 3 && watch_->find(kUidD) != nullptr; }))
      << "last error: " << watch_->status().last_error;
  ASSERT_TRUE(runUntil(io_, [&] { return watches().size() == 3; }));

  const PodWatchStatus& status = watch_->status();
  EXPECT_TRUE(status.synced);
  EXPECT_EQ(status.resource_version, "110");
  EXPECT_EQ(status.lists, 2U);
  EXPECT_EQ(status.relists_gone, 1U);
  EXPECT_EQ(status.watch_starts, 3U);
  EXPECT_EQ(status.events, 3U);  // ADDED, MODIFIED, DELETED
  EXPECT_EQ(status.bookmarks, 1U);
  EXPECT_EQ(status.reconnects, 1U);  // the dropped stream
  EXPECT_EQ(status.auth_failures, 0U);
  EXPECT_NE(status.last_error, "");

  // The cache is exactly the relist: web-c, added by the watch but absent from the relist, is gone.
  ASSERT_EQ(watch_->pods().size(), 2U);
  const KubePod* a = watch_->find(kUidA);
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->resource_version, "108");
  EXPECT_EQ(a->annotations.at("oomguard.io/v1.protection"), "high");
  EXPECT_EQ(a->qos_class, "Burstable");
  EXPECT_EQ(a->priority, 1000);
  EXPECT_EQ(a->memory_request_bytes.at("web"), 128LL << 20);
  ASSERT_EQ(a->containers.size(), 1U);
  EXPECT_EQ(a->containers[0].container_id,
            "containerd://9bca8d63d5fa610783847915bcff0ecac1273e5b4bed3f6fa1b07350e0135961");
  EXPECT_EQ(watch_->find(kUidC), nullptr);
  EXPECT_NE(watch_->find(kUidD), nullptr);

  EXPECT_EQ(changes_, (std::vector<Change>{upserted(kUidA), upserted(kUidB),  // the first list
                                           upserted(kUidC), upserted(kUidA), deleted(kUidB),     // the watch
                                           deleted(kUidC), upserted(kUidA), upserted(kUidD)}));  // the relist
  EXPECT_TRUE(cache_ahead_of_announcements_);
  EXPECT_EQ(logCount("synced"), 2U);
  EXPECT_EQ(logCount("relist"), 1U);
  EXPECT_EQ(logCount("reconnect"), 1U);

  const std::vector<Request> requests = server_->requests();
  ASSERT_EQ(requests.size(), 7U);
  // list, next page, watch, watch resumed after the drop, relist, its next page, watch.
  const std::vector<std::pair<std::string, std::string>> expected = {
      {"list", kAbsent}, {"list", "eyJ2IjoibWV0YS5rOHMuaW8vdjEiLCJydiI6MTAwfQ"},
      {"watch", "100"},  {"watch", "106"},
      {"list", kAbsent}, {"list", "cmVsaXN0LXBhZ2UtMg"},
      {"watch", "110"}};
  for (size_t i = 0; i < requests.size(); ++i) {
    const Request& request = requests[i];
    SCOPED_TRACE("request " + std::to_string(i) + ": " + request.target);
    EXPECT_EQ(request.method, "GET");
    EXPECT_EQ(request.path, "/api/v1/pods");
    EXPECT_EQ(request.param("fieldSelector"), "spec.nodeName=node-1");
    EXPECT_EQ(request.authorization, "Bearer token-1");
    EXPECT_EQ(request.user_agent, "oomguard-test/0.1");
    EXPECT_EQ(request.host, "127.0.0.1:" + std::to_string(server_->port()));
    EXPECT_EQ(request.isWatch() ? "watch" : "list", expected[i].first);
    if (request.isWatch()) {
      EXPECT_EQ(request.param("watch"), "1");
      EXPECT_EQ(request.param("allowWatchBookmarks"), "true");
      EXPECT_EQ(request.param("timeoutSeconds"), "7");
      EXPECT_EQ(request.param("resourceVersion"), expected[i].second);
    } else {
      EXPECT_EQ(request.param("limit"), "1");
      EXPECT_EQ(request.param("continue"), expected[i].second);
      EXPECT_EQ(request.param("resourceVersion"), kAbsent);  // a consistent read
    }
  }
}

TEST_F(KubeApiTest, HttpGoneRelistsAndAServerTimeoutResumesQuietly) {
  std::atomic<bool> timed_out{false};
  std::atomic<bool> gone_sent{false};
  serve([&](const Request& request, Responder& out) {
    if (!request.isWatch()) {
      out.send(200, gone_sent ? podList("300", {pod("web-a", kUidA, "250")})
                              : podList("200", {pod("web-a", kUidA, "150")}));
      return;
    }
    const std::string resource_version = request.param("resourceVersion");
    if (resource_version == "200" && !timed_out) {
      timed_out = true;
      out.beginStream();
      out.event(watchEvent("ADDED", pod("web-e", kUidE, "201")));
      out.endStream();  // the server's timeoutSeconds ran out
      return;
    }
    if (resource_version == "201") {
      gone_sent = true;
      out.send(410, status(410, "Gone", "too old resource version: 201 (260)"));
      return;
    }
    out.beginStream();
    out.hold();
  });
  startWatch(endpoint(), fastOptions());

  ASSERT_TRUE(
      runUntil(io_, [&] { return watch_->status().lists == 2 && watch_->status().watch_starts == 3; }))
      << "last error: " << watch_->status().last_error;
  ASSERT_TRUE(runUntil(io_, [&] { return watches().size() == 3; }));
  const PodWatchStatus& status = watch_->status();
  EXPECT_EQ(status.relists_gone, 1U);
  EXPECT_EQ(status.reconnects, 0U);  // neither the end of a stream nor a 410 is a failure
  EXPECT_EQ(status.events, 1U);
  EXPECT_EQ(status.resource_version, "300");
  EXPECT_EQ(status.last_error, "");
  EXPECT_EQ(changes_,
            (std::vector<Change>{upserted(kUidA), upserted(kUidE), deleted(kUidE), upserted(kUidA)}));
  EXPECT_TRUE(cache_ahead_of_announcements_);
  const std::vector<Request> resumed = watches();
  EXPECT_EQ(resumed[0].param("resourceVersion"), "200");
  EXPECT_EQ(resumed[1].param("resourceVersion"), "201");  // resumed after the event the stream delivered
  EXPECT_EQ(resumed[2].param("resourceVersion"), "300");
  ASSERT_EQ(watch_->pods().size(), 1U);
  EXPECT_EQ(watch_->pods().begin()->second.resource_version, "250");
}

TEST_F(KubeApiTest, UnauthorizedUntilTheTokenRotates) {
  serve([&](const Request& request, Responder& out) {
    if (request.authorization != "Bearer token-2") {
      out.send(401, status(401, "Unauthorized", "Unauthorized"));
      return;
    }
    if (!request.isWatch()) {
      out.send(200, podList("7", {pod("web-a", kUidA, "6")}));
      return;
    }
    out.beginStream();
    out.hold();
  });
  startWatch(endpoint(), fastOptions());

  ASSERT_TRUE(runUntil(io_, [&] { return watch_->status().auth_failures >= 2; }));
  EXPECT_FALSE(watch_->status().synced);
  EXPECT_NE(watch_->status().last_error.find("HTTP 401"), std::string::npos) << watch_->status().last_error;
  EXPECT_NE(watch_->status().last_error.find("Unauthorized"), std::string::npos)
      << watch_->status().last_error;
  EXPECT_GE(logCount("auth_failure"), 2U);
  EXPECT_TRUE(watch_->pods().empty());

  writeToken("token-2");
  ASSERT_TRUE(runUntil(io_, [&] { return watch_->status().synced && watches().size() == 1; }))
      << watch_->status().last_error;
  const std::vector<Request> requests = server_->requests();
  ASSERT_GE(requests.size(), 4U);
  EXPECT_EQ(requests.front().authorization, "Bearer token-1");
  // The token file is read again for every request: the list and the watch after the rotation carry it.
  EXPECT_EQ(requests[requests.size() - 2].authorization, "Bearer token-2");
  EXPECT_FALSE(requests[requests.size() - 2].isWatch());
  EXPECT_EQ(requests.back().authorization, "Bearer token-2");
  EXPECT_TRUE(requests.back().isWatch());
  EXPECT_NE(watch_->find(kUidA), nullptr);
}

TEST_F(KubeApiTest, ServerCertificateFromAnotherCaIsRefused) {
  serve([](const Request&, Responder& out) { out.send(200, podList("1", {pod("web-a", kUidA, "1")})); });
  KubeApiEndpoint wrong_ca = endpoint();
  wrong_ca.ca_file = pki_.other_ca_file.string();
  startWatch(wrong_ca, fastOptions());

  ASSERT_TRUE(runUntil(io_, [&] { return watch_->status().reconnects >= 2; }));
  const PodWatchStatus& status = watch_->status();
  EXPECT_NE(status.last_error.find("TLS handshake with 127.0.0.1:"), std::string::npos) << status.last_error;
  EXPECT_NE(status.last_error.find("certificate verify failed"), std::string::npos) << status.last_error;
  EXPECT_FALSE(status.synced);
  EXPECT_EQ(status.lists, 0U);
  EXPECT_TRUE(watch_->pods().empty());
  EXPECT_TRUE(changes_.empty());
  EXPECT_GE(logCount("reconnect"), 2U);
  EXPECT_TRUE(server_->requests().empty());  // no request crossed the failed handshake
}

TEST_F(KubeApiTest, ServerCertificateForAnotherNameIsRefused) {
  serve([](const Request&, Responder& out) { out.send(200, podList("1", {pod("web-a", kUidA, "1")})); });
  // The right CA, but the certificate names IP 127.0.0.1 and kubernetes.default.svc, not "localhost".
  KubeApiEndpoint other_name = endpoint();
  other_name.host = "localhost";
  startWatch(other_name, fastOptions());

  ASSERT_TRUE(runUntil(io_, [&] { return watch_->status().reconnects >= 1; }));
  EXPECT_NE(watch_->status().last_error.find("hostname mismatch"), std::string::npos)
      << watch_->status().last_error;
  EXPECT_TRUE(watch_->pods().empty());
  EXPECT_TRUE(server_->requests().empty());
}

TEST_F(KubeApiTest, MissingCaFileIsReported) {
  serve([](const Request&, Responder& out) { out.send(200, podList("1", {})); });
  KubeApiEndpoint no_ca = endpoint();
  no_ca.ca_file = (dir_ / "absent.crt").string();
  startWatch(no_ca, fastOptions());

  ASSERT_TRUE(runUntil(io_, [&] { return watch_->status().reconnects >= 1; }));
  EXPECT_NE(watch_->status().last_error.find("CA file"), std::string::npos) << watch_->status().last_error;
  EXPECT_FALSE(watch_->status().synced);
}

TEST_F(KubeApiTest, ServerThatNeverHandshakesTimesOut) {
  // A listening socket nobody accepts from: the kernel completes the TCP connection, TLS never starts.
  asio::io_context listener_io;
  tcp::acceptor listener(listener_io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  serve([](const Request&, Responder& out) { out.send(200, podList("1", {})); });
  KubeApiEndpoint silent = endpoint();
  silent.port = listener.local_endpoint().port();
  PodWatchOptions options = fastOptions();
  options.connect_timeout = 1s;
  startWatch(silent, options);

  ASSERT_TRUE(runUntil(io_, [&] { return watch_->status().reconnects >= 1; }));
  EXPECT_NE(watch_->status().last_error.find("timed out (TLS handshake, no progress for 1000 ms)"),
            std::string::npos)
      << watch_->status().last_error;
  EXPECT_FALSE(watch_->status().synced);
}

TEST_F(KubeApiTest, SilentWatchIsReconnectedAfterTheIdleTimeout) {
  serve([&](const Request& request, Responder& out) {
    if (!request.isWatch()) {
      out.send(200, podList("5", {pod("web-a", kUidA, "5")}));
      return;
    }
    out.beginStream();
    out.hold();  // not a byte more
  });
  PodWatchOptions options = fastOptions();
  options.idle_timeout = 1s;
  options.connect_timeout = 8s;  // the idle timeout replaces it once the response header is in
  startWatch(endpoint(), options);

  const auto started = Clock::now();
  ASSERT_TRUE(
      runUntil(io_, [&] { return watch_->status().reconnects >= 1 && watch_->status().watch_starts >= 2; }));
  EXPECT_LT(Clock::now() - started, 5s);
  EXPECT_NE(watch_->status().last_error.find("no data for 1000 ms"), std::string::npos)
      << watch_->status().last_error;
  ASSERT_TRUE(runUntil(io_, [&] { return watches().size() >= 2; }));
  EXPECT_EQ(watches()[1].param("resourceVersion"), "5");
  EXPECT_EQ(watch_->status().lists, 1U);
}

TEST_F(KubeApiTest, StopInsideOnChangeEndsEverything) {
  serve([](const Request& request, Responder& out) {
    if (!request.isWatch()) {
      out.send(200, podList("9", {pod("web-a", kUidA, "8"), pod("web-b", kUidB, "9")}));
      return;
    }
    out.beginStream();
    out.hold();
  });
  watch_ = std::make_unique<PodWatch>(
      io_, endpoint(), fastOptions(),
      [this](const PodChange& change) {
        changes_.push_back(Change{change.kind, change.uid});
        watch_->stop();
      },
      [this](const std::string& event, const std::string& detail) { logs_.emplace_back(event, detail); });
  watch_->start();

  ASSERT_TRUE(runUntil(io_, [&] { return !changes_.empty(); }));
  runFor(io_, 100ms);
  EXPECT_EQ(changes_.size(), 1U);
  EXPECT_EQ(watch_->status().watch_starts, 0U);
  EXPECT_EQ(server_->requests().size(), 1U);
}

TEST_F(KubeApiTest, NoCallbackAfterStop) {
  std::atomic<bool> release{false};
  serve([&](const Request& request, Responder& out) {
    if (!request.isWatch()) {
      out.send(200, podList("9", {pod("web-a", kUidA, "9")}));
      return;
    }
    out.beginStream();
    out.hold([&] { return release.load(); });
    out.event(watchEvent("ADDED", pod("web-c", kUidC, "10")));
    out.endStream();
  });
  startWatch(endpoint(), fastOptions());
  ASSERT_TRUE(runUntil(io_, [&] { return watches().size() == 1; }));
  const size_t changes = changes_.size();
  const size_t logs = logs_.size();

  watch_->stop();
  release = true;
  runFor(io_, 150ms);
  EXPECT_EQ(changes_.size(), changes);
  EXPECT_EQ(logs_.size(), logs);
  EXPECT_EQ(watch_->find(kUidC), nullptr);

  // Destroyed with nothing in flight, then the loop runs on: nothing is left to call back.
  watch_.reset();
  runFor(io_, 20ms);
  EXPECT_EQ(changes_.size(), changes);
}

TEST_F(KubeApiTest, DestroyedWhileConnectingIsSafe) {
  serve([](const Request& request, Responder& out) {
    if (!request.isWatch()) {
      out.send(200, podList("9", {pod("web-a", kUidA, "9")}));
      return;
    }
    out.beginStream();
    out.hold();
  });
  startWatch(endpoint(), fastOptions());
  // A few turns of the loop: the list request is somewhere between resolving and reading.
  for (int i = 0; i < 3; ++i) {
    io_.restart();
    io_.poll_one();
  }
  watch_.reset();  // the on_change above would dereference it: it must not run any more
  runFor(io_, 50ms);
  EXPECT_TRUE(changes_.empty());
}

// --- EventRecorder -------------------------------------------------------------------------------------

TEST_F(KubeApiTest, EventsArePostedAsCoreV1Events) {
  serve([](const Request& request, Responder& out) {
    out.send(201, Json::parse(request.body, nullptr, false));
  });
  recorder_ = std::make_unique<EventRecorder>(io_, endpoint());
  PodEventReport killed;
  killed.namespace_name = "shop";
  killed.pod_name = "checkout-6c9f7d8b5-q7x2m";
  killed.pod_uid = kUidA;
  killed.type = "Warning";
  killed.reason = "OomguardKilled";
  // 1023 bytes, then a two-byte character across the 1024-byte limit: it is left out whole.
  killed.message = std::string(1023, 'k') + "\xC3\xA9 and more";
  recorder_->report(killed);
  PodEventReport refused = killed;
  refused.type = "Normal";
  refused.reason = "OomguardAnnotationRefused";
  refused.message = std::string(3000, 'r');
  recorder_->report(refused);

  ASSERT_TRUE(runUntil(io_, [&] { return recorder_->status().sent == 2; })) << recorder_->status().last_error;
  EXPECT_EQ(recorder_->status().queued, 2U);
  EXPECT_EQ(recorder_->status().failed, 0U);
  EXPECT_EQ(recorder_->status().dropped, 0U);

  const std::vector<Request> requests = server_->requests();
  ASSERT_EQ(requests.size(), 2U);
  std::set<std::string> names;
  for (const Request& request : requests) {
    EXPECT_EQ(request.method, "POST");
    EXPECT_EQ(request.path, "/api/v1/namespaces/shop/events");
    EXPECT_EQ(request.content_type, "application/json");
    EXPECT_EQ(request.authorization, "Bearer token-1");
    const Json event = Json::parse(request.body, nullptr, false);
    ASSERT_FALSE(event.is_discarded()) << request.body;
    EXPECT_EQ(event["apiVersion"], "v1");
    EXPECT_EQ(event["kind"], "Event");
    const std::string name = event["metadata"]["name"];
    EXPECT_TRUE(std::regex_match(name, std::regex(R"(checkout-6c9f7d8b5-q7x2m\.[0-9a-f]{16})"))) << name;
    names.insert(name);
    EXPECT_EQ(event["metadata"]["namespace"], "shop");
    EXPECT_EQ(event["involvedObject"], (Json{{"apiVersion", "v1"},
                                             {"kind", "Pod"},
                                             {"namespace", "shop"},
                                             {"name", "checkout-6c9f7d8b5-q7x2m"},
                                             {"uid", kUidA}}));
    EXPECT_EQ(event["source"], (Json{{"component", "oomguard"}, {"host", kNode}}));
    EXPECT_EQ(event["reportingComponent"], "oomguard");
    EXPECT_EQ(event["count"], 1);
    const std::string first = event["firstTimestamp"];
    EXPECT_TRUE(std::regex_match(first, std::regex(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ)"))) << first;
    EXPECT_EQ(event["lastTimestamp"], first);
  }
  EXPECT_EQ(names.size(), 2U);  // unique per event

  const Json first = Json::parse(requests[0].body);
  EXPECT_EQ(first["type"], "Warning");
  EXPECT_EQ(first["reason"], "OomguardKilled");
  EXPECT_EQ(first["message"], std::string(1023, 'k'));
  const Json second = Json::parse(requests[1].body);
  EXPECT_EQ(second["type"], "Normal");
  EXPECT_EQ(second["reason"], "OomguardAnnotationRefused");
  EXPECT_EQ(second["message"], std::string(1024, 'r'));
}

TEST_F(KubeApiTest, RefusedEventsAreRetriedThenCountedAsFailed) {
  serve([](const Request& request, Responder& out) {
    const Json event = Json::parse(request.body, nullptr, false);
    const std::string reason = event.value("reason", "");
    if (reason == "ServerBroken") {
      out.send(500, status(500, "InternalError", "etcdserver: request timed out"));
    } else if (reason == "Invalid") {
      out.send(422,
               status(422, "Invalid", "Event \"x\" is invalid: involvedObject.namespace: Invalid value"));
    } else {
      out.send(201, event);
    }
  });
  recorder_ = std::make_unique<EventRecorder>(io_, endpoint(), "oomguard", 16, 3);
  PodEventReport report{"shop", "web-a", kUidA, "Warning", "ServerBroken", "the server fails"};
  recorder_->report(report);
  ASSERT_TRUE(runUntil(io_, [&] { return recorder_->status().failed == 1; }));
  EXPECT_EQ(recorder_->status().sent, 0U);
  EXPECT_NE(recorder_->status().last_error.find("HTTP 500"), std::string::npos)
      << recorder_->status().last_error;
  std::vector<Request> requests = server_->requests();
  ASSERT_EQ(requests.size(), 3U);  // `attempts` times, the same event each time
  EXPECT_EQ(Json::parse(requests[0].body)["metadata"]["name"],
            Json::parse(requests[2].body)["metadata"]["name"]);

  // Not worth retrying: refused once, failed at once.
  report.reason = "Invalid";
  recorder_->report(report);
  ASSERT_TRUE(runUntil(io_, [&] { return recorder_->status().failed == 2; }));
  EXPECT_EQ(server_->requests().size(), 4U);
  EXPECT_NE(recorder_->status().last_error.find("HTTP 422"), std::string::npos)
      << recorder_->status().last_error;

  report.reason = "Fine";
  recorder_->report(report);
  ASSERT_TRUE(runUntil(io_, [&] { return recorder_->status().sent == 1; }));
  EXPECT_EQ(recorder_->status().queued, 3U);
}

TEST_F(KubeApiTest, FullEventQueueDrops) {
  std::atomic<bool> release{false};
  serve([&](const Request& request, Responder& out) {
    out.hold([&] { return release.load(); });
    out.send(201, Json::parse(request.body, nullptr, false));
  });
  recorder_ = std::make_unique<EventRecorder>(io_, endpoint(), "oomguard", 2, 1);
  for (int i = 0; i < 5; ++i) {
    recorder_->report(
        PodEventReport{"shop", "web-" + std::to_string(i), kUidA, "Warning", "OomguardKilled", "m", true});
  }
  // One being sent and one waiting fill the queue of two.
  EXPECT_EQ(recorder_->status().queued, 2U);
  EXPECT_EQ(recorder_->status().dropped, 3U);
  ASSERT_TRUE(runUntil(io_, [&] { return server_->requests().size() == 1; }));
  release = true;
  ASSERT_TRUE(runUntil(io_, [&] { return recorder_->status().sent == 2; })) << recorder_->status().last_error;
  const std::vector<Request> requests = server_->requests();
  ASSERT_EQ(requests.size(), 2U);
  EXPECT_EQ(Json::parse(requests[0].body)["involvedObject"]["name"], "web-0");
  EXPECT_EQ(Json::parse(requests[1].body)["involvedObject"]["name"], "web-1");
  EXPECT_EQ(recorder_->status().failed, 0U);
}

TEST_F(KubeApiTest, EventToAnUnreachableServerFails) {
  serve([](const Request&, Responder& out) { out.send(201, Json::object()); });
  KubeApiEndpoint wrong_ca = endpoint();
  wrong_ca.ca_file = pki_.other_ca_file.string();
  recorder_ = std::make_unique<EventRecorder>(io_, wrong_ca, "oomguard", 4, 2);
  recorder_->report(PodEventReport{"shop", "web-a", kUidA, "Warning", "OomguardKilled", "m"});
  ASSERT_TRUE(runUntil(io_, [&] { return recorder_->status().failed == 1; }));
  EXPECT_NE(recorder_->status().last_error.find("certificate verify failed"), std::string::npos)
      << recorder_->status().last_error;
  EXPECT_TRUE(server_->requests().empty());
}

}  // namespace
}  // namespace oomguard::guardian
