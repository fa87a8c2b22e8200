// The HTTP endpoint of PrometheusMetrics: GET /metrics and GET|HEAD /healthz on HttpServer's thread
// (metrics_prometheus.hpp), started by serve().
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "guardian/config/address.hpp"
#include "guardian/exporter/http_server.hpp"
#include "guardian/exporter/metrics_prometheus.hpp"

namespace oomguard::guardian::exporter {

HttpServer::Response PrometheusMetrics::answer(std::string_view method, std::string_view path) const {
  constexpr const char* kPlain = "text/plain; charset=utf-8";
  if (path == "/metrics") {
    if (method != "GET") {
      return {405, kPlain, "GET", "method not allowed\n"};
    }
    return {200, "text/plain; version=0.0.4; charset=utf-8", {}, render()};
  }
  if (path == "/healthz") {
    return method == "GET" || method == "HEAD" ? HttpServer::Response{200, kPlain, {}, "ok"}
                                               : HttpServer::Response{405, kPlain, "GET, HEAD", "method not allowed\n"};
  }
  return {404, kPlain, {}, "not found\n"};
}

void PrometheusMetrics::serve(const std::string& listen, HttpServer::Limits limits) {
  const auto address = config::parseListenAddress(listen);
  if (!address) {
    throw std::runtime_error("metrics listen address " + address.error().message);
  }
  if (server_) {
    throw std::logic_error("PrometheusMetrics::serve called twice");
  }
  server_ = std::make_unique<HttpServer>(
      address.value(), [this](std::string_view method, std::string_view path) { return answer(method, path); }, limits);
}

std::vector<int> PrometheusMetrics::listeningPorts() const {
  return server_ ? std::vector<int>{server_->port()} : std::vector<int>{};
}

}  // namespace oomguard::guardian::exporter
