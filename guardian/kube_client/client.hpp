// The Kubernetes API client as the daemon sees it: a pod watch and an Event recorder behind two small
// interfaces, both made by a TlsClient. Their implementation (Boost.Beast over OpenSSL: guardian/kube_tls)
// is a shared module that the daemon loads (loader.hpp) only when kubernetes.enabled, so that a node
// without Kubernetes never maps the TLS libraries: linked in, libssl and libcrypto were 1.7 MiB of the
// idle daemon's 8.1 MiB resident set.
#pragma once

#include <boost/asio/io_context.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "guardian/kube/pod.hpp"
#include "guardian/kube_client/endpoint.hpp"

namespace oomguard::guardian::kube_client {

// Counters and state of the pod watch, for logs, metrics and tests.
struct PodWatchStatus {
  bool synced = false;           // a list has completed and the cache reflects it
  std::string resource_version;  // the last one seen (list, event or bookmark)
  uint64_t lists = 0;            // completed lists (the first one, and every relist)
  uint64_t relists_gone = 0;     // relists caused by 410 Gone
  uint64_t watch_starts = 0;     // watch requests sent
  uint64_t events = 0;           // ADDED/MODIFIED/DELETED applied
  uint64_t bookmarks = 0;
  uint64_t reconnects = 0;     // connections that failed or dropped and were retried
  uint64_t auth_failures = 0;  // 401/403 responses
  uint64_t pods_over_cap = 0;  // pod objects not cached: the cache held PodWatchOptions::max_pods
  std::string last_error;      // the latest failure, human-readable; empty when none
};

struct PodWatchOptions {
  std::chrono::milliseconds backoff_initial{500};
  std::chrono::milliseconds backoff_max{30000};
  std::chrono::seconds watch_timeout{300};  // timeoutSeconds asked of the server
  std::chrono::seconds idle_timeout{330};   // no bytes for this long: the connection is dead, reconnect
  std::chrono::seconds connect_timeout{10};
  // Pods per list page. A page larger than the response cap (kMaxListResponseBytes in pod_watch.cpp) is
  // asked again at half the size, down to one pod.
  uint32_t list_page_limit = 100;
  // The most pods the cache holds (kubelet's max-pods is 110 by default, rarely above 250): pods past it
  // are not cached (logged and counted), so a server listing too many cannot grow the daemon unbounded.
  size_t max_pods = 1000;
};

// One Kubernetes Event about a pod (core/v1 Event, POSTed to /api/v1/namespaces/<ns>/events).
struct PodEventReport {
  std::string namespace_name;
  std::string pod_name;
  std::string pod_uid;
  std::string type = "Warning";  // Normal | Warning
  std::string reason;            // e.g. OomguardKilled, OomguardAnnotationRefused
  std::string message;           // at most 1024 bytes are sent
  // A kill's Event: never crowded out by the others. An essential Event finds room in a full queue by
  // evicting the newest waiting non-essential one; non-essential Events (annotation issues, which a
  // tenant can provoke) take at most half the queue, and at most kMaxQueuedPerPod of them per pod.
  bool essential = false;
};
inline constexpr size_t kMaxQueuedPerPod = 2;

struct EventRecorderStatus {
  uint64_t queued = 0;
  uint64_t sent = 0;
  uint64_t failed = 0;   // the server refused it or the connection failed (after the retries)
  uint64_t dropped = 0;  // the queue was full
  std::string last_error;
};

// The pods bound to this node, kept by a list-then-watch of the API server (kube_tls/pod_watch.hpp has
// the protocol's contract). Everything runs on the io_context given at construction.
class PodSource {
 public:
  virtual ~PodSource() = default;
  virtual void start() = 0;
  // Cancels everything in flight; no callback runs after stop() returns.
  virtual void stop() = 0;
  [[nodiscard]] virtual const std::map<std::string, kube::KubePod>& pods() const = 0;  // by uid
  [[nodiscard]] virtual const kube::KubePod* find(const std::string& uid) const = 0;
  [[nodiscard]] virtual const PodWatchStatus& status() const = 0;
};

// Best-effort Events: report() queues and returns at once.
class EventSink {
 public:
  virtual ~EventSink() = default;
  virtual void report(PodEventReport event) = 0;
  virtual void stop() = 0;
  [[nodiscard]] virtual const EventRecorderStatus& status() const = 0;
};

// Makes the two. `on_change` runs on the io_context's thread for every change of the pod cache, after
// the cache holds it; `on_log(event, detail)` for state changes worth a log line.
class TlsClient {
 public:
  virtual ~TlsClient() = default;
  [[nodiscard]] virtual std::unique_ptr<PodSource> podWatch(
      boost::asio::io_context& io, KubeApiEndpoint endpoint, PodWatchOptions options,
      std::function<void(const kube::PodChange&)> on_change,
      std::function<void(const std::string& event, const std::string& detail)> on_log) const = 0;
  [[nodiscard]] virtual std::unique_ptr<EventSink> eventRecorder(boost::asio::io_context& io,
                                                                 KubeApiEndpoint endpoint) const = 0;
};

// The module's one exported symbol: extern "C" const TlsClient* oomguard_kube_tls_client_v1(), returning
// a client that lives as long as the process (the module is never unloaded).
inline constexpr const char* kTlsClientSymbol = "oomguard_kube_tls_client_v1";
using TlsClientEntry = const TlsClient* (*)();

}  // namespace oomguard::guardian::kube_client
