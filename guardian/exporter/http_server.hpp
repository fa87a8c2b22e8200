// The metrics endpoint's HTTP server: Boost.Beast on one thread and io_context of its own, so that no
// client and no scrape ever runs on the daemon's event loop, and no client can hold it for others.
//
// Bounded by design (loopback load test: tests/unit/http_server_test.cpp):
// - every connection must deliver its whole request within `request_timeout` of being accepted, and a
//   response must be taken within `write_timeout`; requests are capped at `max_request_bytes`;
// - at most `max_connections` are open at once. A new connection beyond that evicts the oldest one
//   still waiting for its request (idle and slow-header clients go first), so `/healthz` answers while
//   hundreds of idle connections are held open; when every slot is writing a response, the new one is
//   closed at once.
// - one request per connection (Connection: close), like the exporter always did.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "guardian/config/address.hpp"

namespace oomguard::guardian::exporter {

class HttpServer {
 public:
  struct Response {
    int status = 200;
    std::string content_type = "text/plain; charset=utf-8";
    std::string allow;  // the Allow header of a 405, if not empty
    std::string body;
  };
  // Called on the server's thread for each request (method as sent, path without the query string).
  using Handler = std::function<Response(std::string_view method, std::string_view path)>;
  struct Limits {
    size_t max_connections = 256;
    std::chrono::milliseconds request_timeout{5000};
    std::chrono::milliseconds write_timeout{10000};
    size_t max_request_bytes = 8192;
  };

  // Binds and listens on `address` at once and serves from then on. Throws std::runtime_error naming
  // the address and the errno (e.g. "bind: Address already in use") when it cannot.
  HttpServer(const config::HostPort& address, Handler handler, Limits limits);
  ~HttpServer();  // stops accepting, closes every connection and joins the thread
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // The port bound (the real one when the address said port 0).
  [[nodiscard]] uint16_t port() const { return port_; }
  // Connections open now, and those evicted or refused for want of a slot so far (thread-safe).
  [[nodiscard]] size_t openConnections() const;
  [[nodiscard]] uint64_t evictedConnections() const;

 private:
  struct State;
  std::unique_ptr<State> state_;
  uint16_t port_ = 0;
};

}  // namespace oomguard::guardian::exporter
