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

#include "guardian/kube_client/client.hpp"

namespace oomguard::guardian::kube_tls {

using kube_client::EventRecorderStatus;
using kube_client::KubeApiEndpoint;
using kube_client::PodEventReport;

// Best effort: report() queues and returns at once; a bounded queue (max_queued) is sent one at a time on
// the io_context, each retried up to `attempts` times with a short backoff, then counted as failed.
class EventRecorder final : public kube_client::EventSink {
 public:
  // The wall clock an Event's firstTimestamp/lastTimestamp and its name are made from (injected in tests).
  using WallClock = std::function<std::chrono::system_clock::time_point()>;
  EventRecorder(boost::asio::io_context& io, KubeApiEndpoint endpoint, std::string component = "oomguard",
                size_t max_queued = 256, unsigned attempts = 3,
                WallClock wall_clock = [] { return std::chrono::system_clock::now(); });
  ~EventRecorder() override;
  EventRecorder(const EventRecorder&) = delete;
  EventRecorder& operator=(const EventRecorder&) = delete;

  void report(PodEventReport event) override;
  void stop() override;
  [[nodiscard]] const EventRecorderStatus& status() const override;

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace oomguard::guardian::kube_tls
