// The Kubernetes API client of the daemon: a watch of the pods bound to this node and best-effort Events
// (event_recorder.hpp), both over TLS (Boost.Beast + OpenSSL) on the daemon's own io_context. Nothing here
// blocks the loop, and nothing the daemon does waits on the API server: until a pod's object is known, the
// cgroup-derived identity (kubernetes_identity.hpp) is all there is.
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
#include <string>

#include "guardian/kube/pod.hpp"
#include "guardian/kube_client/client.hpp"

namespace oomguard::guardian::kube_tls {

using kube_client::KubeApiEndpoint;
using kube_client::PodWatchOptions;
using kube_client::PodWatchStatus;

class PodWatch final : public kube_client::PodSource {
 public:
  // `on_change` runs on the io_context's thread for every cache change; `on_log(event, detail)` for
  // state changes worth a log line (synced, relist, reconnect with the error, auth failure).
  PodWatch(boost::asio::io_context& io, KubeApiEndpoint endpoint, PodWatchOptions options,
           std::function<void(const kube::PodChange&)> on_change,
           std::function<void(const std::string& event, const std::string& detail)> on_log);
  ~PodWatch() override;
  PodWatch(const PodWatch&) = delete;
  PodWatch& operator=(const PodWatch&) = delete;

  void start() override;
  // Cancels everything in flight; no callback runs after stop() returns.
  void stop() override;

  [[nodiscard]] const std::map<std::string, kube::KubePod>& pods() const override;  // by uid
  [[nodiscard]] const kube::KubePod* find(const std::string& uid) const override;
  [[nodiscard]] const PodWatchStatus& status() const override;

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace oomguard::guardian::kube_tls
