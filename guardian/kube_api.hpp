// The Kubernetes API client of the daemon: a watch of the pods bound to this node and best-effort Events,
// both over TLS (Boost.Beast + OpenSSL) on the daemon's own io_context. Nothing here blocks the loop, and
// nothing the daemon does waits on the API server: until a pod's object is known, the cgroup-derived
// identity (kubernetes_identity.hpp) is all there is.
//
// Contract of PodWatch:
// - list: GET /api/v1/pods?fieldSelector=spec.nodeName=<node>&limit=500 (following metadata.continue),
//   then watch: GET /api/v1/pods?fieldSelector=...&watch=1&allowWatchBookmarks=true&resourceVersion=<rv>
//   &timeoutSeconds=<n>, a chunked stream of one JSON object per line.
// - ADDED/MODIFIED replace the pod in the cache, DELETED removes it, BOOKMARK only advances the
//   resourceVersion. An ERROR object with code 410 (Gone), or an HTTP 410, means the resourceVersion is
//   too old: relist. After a relist the cache is exactly the list (pods missing from it are removed).
// - A dropped connection, a server-side timeout or a failed connect resumes the watch from the last
//   resourceVersion after a backoff (doubling from backoff_initial_ms to backoff_max_ms, reset once a
//   watch has delivered something); a 401/403 also re-reads the token first.
// - The bearer token is read from token_file for every request (the kubelet rotates projected tokens).
// - Every change to the cache is announced through on_change, on the loop's thread, after the cache
//   holds the new state.
#pragma once

#include <boost/asio/io_context.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "guardian/kubernetes_identity.hpp"

namespace oomguard::guardian {

// Where the API server is and how to authenticate to it.
struct KubeApiEndpoint {
  std::string host;  // an IP or a name; also the TLS server name checked (SNI + verification)
  uint16_t port = 443;
  std::string ca_file;     // PEM bundle the server certificate must chain to
  std::string token_file;  // bearer token, re-read for every request; empty = no Authorization
  std::string node_name;   // spec.nodeName of the pods to watch
  std::string user_agent = "oomguard";
};

// The in-cluster endpoint: KUBERNETES_SERVICE_HOST / KUBERNETES_SERVICE_PORT from `env` (a lookup, so
// tests inject it), the service account's ca.crt and token under `service_account_dir`
// (/var/run/secrets/kubernetes.io/serviceaccount). nullopt with `why` filled when something is missing.
std::optional<KubeApiEndpoint> inClusterEndpoint(
    const std::function<std::optional<std::string>(const char*)>& env, const std::string& service_account_dir,
    const std::string& node_name, std::string& why);

// What the daemon uses of a pod object.
struct KubePod {
  std::string uid;
  std::string namespace_name;
  std::string name;
  std::string resource_version;
  std::map<std::string, std::string> annotations;  // metadata.annotations
  std::string qos_class;            // status.qosClass: Guaranteed | Burstable | BestEffort | ""
  std::optional<int32_t> priority;  // spec.priority
  std::string priority_class_name;  // spec.priorityClassName
  std::string phase;                // status.phase
  // status.containerStatuses, initContainerStatuses and ephemeralContainerStatuses: name and containerID
  // ("containerd://<id>"; empty until the container has started).
  std::vector<PodContainerRef> containers;
  // spec.containers[].resources.requests.memory, by container name, in bytes (quantities such as "128Mi",
  // "1G", "500M", "1e9" parsed); containers without a request are absent.
  std::map<std::string, int64_t> memory_request_bytes;

  [[nodiscard]] PodRef ref() const { return PodRef{namespace_name, name, uid, containers}; }
  bool operator==(const KubePod&) const = default;
};

// Parses one pod object (the JSON of a list item or of a watch event's "object"). nullopt with `why` for
// an object without metadata.uid/name/namespace; unknown and missing optional fields are tolerated.
std::optional<KubePod> parsePod(const std::string& json_text, std::string& why);
// A Kubernetes memory quantity ("128Mi", "1Gi", "500M", "1e9", "12345", "0.5Gi") in bytes; nullopt if
// malformed.
std::optional<int64_t> parseMemoryQuantity(const std::string& text);

struct PodChange {
  enum class Kind { kUpserted, kDeleted };
  Kind kind = Kind::kUpserted;
  std::string uid;
};

// Counters and state for logs and tests.
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
  std::string last_error;      // the latest failure, human-readable; empty when none
};

struct PodWatchOptions {
  std::chrono::milliseconds backoff_initial{500};
  std::chrono::milliseconds backoff_max{30000};
  std::chrono::seconds watch_timeout{300};  // timeoutSeconds asked of the server
  std::chrono::seconds idle_timeout{330};   // no bytes for this long: the connection is dead, reconnect
  std::chrono::seconds connect_timeout{10};
  uint32_t list_page_limit = 500;
};

class PodWatch {
 public:
  // `on_change` runs on the io_context's thread for every cache change; `on_log(event, detail)` for
  // state changes worth a log line (synced, relist, reconnect with the error, auth failure).
  PodWatch(boost::asio::io_context& io, KubeApiEndpoint endpoint, PodWatchOptions options,
           std::function<void(const PodChange&)> on_change,
           std::function<void(const std::string& event, const std::string& detail)> on_log);
  ~PodWatch();
  PodWatch(const PodWatch&) = delete;
  PodWatch& operator=(const PodWatch&) = delete;

  void start();
  // Cancels everything in flight; no callback runs after stop() returns.
  void stop();

  [[nodiscard]] const std::map<std::string, KubePod>& pods() const;  // by uid
  [[nodiscard]] const KubePod* find(const std::string& uid) const;
  [[nodiscard]] const PodWatchStatus& status() const;

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

// One Kubernetes Event about a pod (core/v1 Event, POSTed to /api/v1/namespaces/<ns>/events).
struct PodEventReport {
  std::string namespace_name;
  std::string pod_name;
  std::string pod_uid;
  std::string type = "Warning";  // Normal | Warning
  std::string reason;            // e.g. OomguardKilled, OomguardAnnotationRefused
  std::string message;           // at most 1024 bytes are sent
};

struct EventRecorderStatus {
  uint64_t queued = 0;
  uint64_t sent = 0;
  uint64_t failed = 0;   // the server refused it or the connection failed (after the retries)
  uint64_t dropped = 0;  // the queue was full
  std::string last_error;
};

// Best effort: report() queues and returns at once; a bounded queue (max_queued) is sent one at a time on
// the io_context, each retried up to `attempts` times with a short backoff, then counted as failed.
class EventRecorder {
 public:
  EventRecorder(boost::asio::io_context& io, KubeApiEndpoint endpoint, std::string component = "oomguard",
                size_t max_queued = 256, unsigned attempts = 3);
  ~EventRecorder();
  EventRecorder(const EventRecorder&) = delete;
  EventRecorder& operator=(const EventRecorder&) = delete;

  void report(PodEventReport event);
  void stop();
  [[nodiscard]] const EventRecorderStatus& status() const;

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace oomguard::guardian
