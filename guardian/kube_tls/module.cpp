// The module's entry point: the daemon dlopen()s this library only when kubernetes.enabled
// (kube_client/loader.hpp) and asks it for its client.
#include <memory>

#include "guardian/kube_client/client.hpp"
#include "guardian/kube_tls/event_recorder.hpp"
#include "guardian/kube_tls/pod_watch.hpp"

namespace oomguard::guardian::kube_tls {
namespace {

class Client final : public kube_client::TlsClient {
 public:
  [[nodiscard]] std::unique_ptr<kube_client::PodSource> podWatch(
      boost::asio::io_context& io, KubeApiEndpoint endpoint, PodWatchOptions options,
      std::function<void(const kube::PodChange&)> on_change,
      std::function<void(const std::string& event, const std::string& detail)> on_log) const override {
    return std::make_unique<PodWatch>(io, std::move(endpoint), options, std::move(on_change), std::move(on_log));
  }
  [[nodiscard]] std::unique_ptr<kube_client::EventSink> eventRecorder(boost::asio::io_context& io,
                                                                      KubeApiEndpoint endpoint) const override {
    return std::make_unique<EventRecorder>(io, std::move(endpoint));
  }
};

}  // namespace
}  // namespace oomguard::guardian::kube_tls

// Stateless, and alive as long as the process: the module is never unloaded.
extern "C" __attribute__((visibility("default"))) const oomguard::guardian::kube_client::TlsClient*
oomguard_kube_tls_client_v1() {
  static const oomguard::guardian::kube_tls::Client client;
  return &client;
}
