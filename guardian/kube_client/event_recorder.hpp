// Best-effort Kubernetes Events about pods (core/v1 Event), POSTed over TLS on the daemon's io_context:
// nothing the daemon does waits on them.
#pragma once

#include <chrono>
#include <functional>

#include <boost/asio/io_context.hpp>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "guardian/kube_client/endpoint.hpp"

namespace oomguard::guardian::kube_client {

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
  // The wall clock an Event's firstTimestamp/lastTimestamp and its name are made from (injected in tests).
  using WallClock = std::function<std::chrono::system_clock::time_point()>;
  EventRecorder(boost::asio::io_context& io, KubeApiEndpoint endpoint, std::string component = "oomguard",
                size_t max_queued = 256, unsigned attempts = 3,
                WallClock wall_clock = [] { return std::chrono::system_clock::now(); });
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

}  // namespace oomguard::guardian::kube_client
