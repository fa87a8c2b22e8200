// Internal to guardian_kube_client: one HTTPS request and its response (HttpsExchange), and the helpers
// PodWatch and EventRecorder build their requests with. Each request has a TLS connection of its own,
// closed when its response ends: a watch is one long response, a list one per page, an Event one POST.
#pragma once

#include <array>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/buffer_body.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "guardian/kube_client/api_text.hpp"
#include "guardian/kube_client/endpoint.hpp"

namespace oomguard::guardian::kube_tls {

// What the TLS side uses of the client's plain parts (guardian/kube_client).
using kube_client::describeBody;
using kube_client::describeHttpFailure;
using kube_client::hostHeader;
using kube_client::hostPort;
using kube_client::Json;
using kube_client::KubeApiEndpoint;
using kube_client::member;
using kube_client::milliseconds;
using kube_client::Milliseconds;
using kube_client::objectMember;
using kube_client::percentEncode;
using kube_client::readToken;
using kube_client::stringMember;
using kube_client::trimmed;
using kube_client::truncateUtf8;

namespace asio = boost::asio;
namespace ssl = boost::asio::ssl;
namespace http = boost::beast::http;
using tcp = boost::asio::ip::tcp;
using ErrorCode = boost::system::error_code;

// Caps on what a misbehaving server can make the daemon hold in memory.
constexpr size_t kMaxErrorBodyBytes = 64UL << 10U;  // the Status of a refused request, as kept
constexpr uint32_t kMaxResponseHeaderBytes = 64U << 10U;
constexpr size_t kReadChunkBytes = 16UL << 10U;

// One request on a TLS connection of its own: resolve, connect, handshake (the server certificate must
// chain to the CA file and name the endpoint's host), write, then the response, whose body is handed over
// as it arrives. Callbacks run on the io_context; none runs from start() itself, and none after cancel()
// or after on_end. The pending operations own the exchange, so dropping the last other reference is safe.
class HttpsExchange : public std::enable_shared_from_this<HttpsExchange> {
 public:
  struct Callbacks {
    std::function<void(unsigned status)> on_header;
    std::function<void(std::string_view body_bytes)> on_body;
    std::function<void(const std::string& error)> on_end;  // "" once the whole response has arrived
  };

  // `connect_timeout` bounds everything up to the response header; `idle_timeout` the silence between
  // two reads of the body.
  HttpsExchange(asio::io_context& io, KubeApiEndpoint endpoint, Milliseconds connect_timeout,
                Milliseconds idle_timeout);

  void start(http::request<http::string_body> request, Callbacks callbacks);
  void cancel();

 private:
  bool prepareTls(std::string& error);
  void armDeadline(Milliseconds timeout);
  void waitDeadline();
  void closeSocket();
  void shutdown();
  void fail(const std::string& error);
  void failOperation(const std::string& what, const ErrorCode& ec);
  void onResolved(const ErrorCode& ec, const tcp::resolver::results_type& results);
  void onConnected(const ErrorCode& ec);
  void onHandshake(const ErrorCode& ec);
  void onWritten(const ErrorCode& ec);
  void onHeader(const ErrorCode& ec);
  void continueBody();
  void onBody(ErrorCode ec, size_t transferred);

  asio::io_context& io_;
  KubeApiEndpoint endpoint_;
  Milliseconds connect_timeout_;
  Milliseconds idle_timeout_;
  std::optional<ssl::context> tls_;
  std::optional<ssl::stream<tcp::socket>> stream_;
  tcp::resolver resolver_;
  asio::steady_timer deadline_timer_;
  std::chrono::steady_clock::time_point deadline_;
  std::chrono::steady_clock::time_point timer_expiry_;
  uint64_t deadline_wait_ = 0;
  Milliseconds deadline_timeout_{0};
  bool deadline_waiting_ = false;
  bool timed_out_ = false;
  bool done_ = false;
  std::string phase_;
  http::request<http::string_body> request_;
  boost::beast::flat_buffer buffer_;
  http::response_parser<http::buffer_body> parser_;
  std::array<char, kReadChunkBytes> chunk_{};
  Callbacks callbacks_;
};

// A request to the API server: Host, User-Agent, Accept: application/json, and the bearer `token` unless
// it is empty.
http::request<http::string_body> makeRequest(http::verb verb, const std::string& target,
                                             const KubeApiEndpoint& endpoint, const std::string& token);

// A client's stop(): cancels the exchange in flight (and drops it) and a pending retry. The client has
// set its own "stopped" first, so nothing fires after it.
void cancelExchangeAndRetry(std::shared_ptr<HttpsExchange>& exchange, boost::asio::steady_timer& retry_timer);

// Runs `action`, turning an exception into `on_error(what)`: nothing escapes to the io_context.
template <typename Action, typename OnError>
void guarded(Action&& action, OnError&& on_error) {
  try {
    std::forward<Action>(action)();
  } catch (const std::exception& e) {
    std::forward<OnError>(on_error)(std::string("internal error: ") + e.what());
  } catch (...) {
    std::forward<OnError>(on_error)("internal error");
  }
}

}  // namespace oomguard::guardian::kube_tls
