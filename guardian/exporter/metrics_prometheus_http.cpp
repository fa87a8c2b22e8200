// The HTTP endpoint of PrometheusMetrics: GET /metrics and GET|HEAD /healthz on HttpServer's thread
// (metrics_prometheus.hpp), started by serve().
#include <chrono>
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
    return health(method);
  }
  return {404, kPlain, {}, "not found\n"};
}

namespace {
int64_t steadyMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}
}  // namespace

void PrometheusMetrics::loopTurned() { loop_turned_ms_ = steadyMs(); }

HttpServer::Response PrometheusMetrics::health(std::string_view method) const {
  constexpr const char* kPlain = "text/plain; charset=utf-8";
  if (method != "GET" && method != "HEAD") {
    return {405, kPlain, "GET, HEAD", "method not allowed\n"};
  }
  const int64_t stalled_ms = steadyMs() - loop_turned_ms_.load();
  if (stalled_ms > stall_limit_ms_.load()) {
    return {503, kPlain, {}, "decision loop stalled: last turn " + std::to_string(stalled_ms / 1000) + " s ago\n"};
  }
  return {200, kPlain, {}, "ok"};
}

void PrometheusMetrics::serveHealth(const std::string& listen, HttpServer::Limits limits) {
  const auto address = config::parseListenAddress(listen);
  if (!address) {
    throw std::runtime_error("health listen address " + address.error().message);
  }
  if (health_server_) {
    throw std::logic_error("PrometheusMetrics::serveHealth called twice");
  }
  loopTurned();
  health_server_ = std::make_unique<HttpServer>(
      address.value(),
      [this](std::string_view method, std::string_view path) {
        return path == "/healthz" ? health(method)
                                  : HttpServer::Response{404, "text/plain; charset=utf-8", {}, "not found\n"};
      },
      limits);
}

void PrometheusMetrics::serve(const std::string& listen, HttpServer::Limits limits) {
  const auto address = config::parseListenAddress(listen);
  if (!address) {
    throw std::runtime_error("metrics listen address " + address.error().message);
  }
  if (server_) {
    throw std::logic_error("PrometheusMetrics::serve called twice");
  }
  loopTurned();
  server_ = std::make_unique<HttpServer>(
      address.value(), [this](std::string_view method, std::string_view path) { return answer(method, path); }, limits);
}

std::vector<int> PrometheusMetrics::listeningPorts() const {
  std::vector<int> ports;
  for (const auto* server : {server_.get(), health_server_.get()}) {
    if (server != nullptr) {
      ports.push_back(server->port());
    }
  }
  return ports;
}

}  // namespace oomguard::guardian::exporter
