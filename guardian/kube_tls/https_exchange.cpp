// One HTTPS exchange with the API server (https_exchange.hpp). All members are used on the io_context's
// thread only, cancel() included.
#include "guardian/kube_tls/https_exchange.hpp"

#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>
#include <limits>

namespace oomguard::guardian::kube_tls {

namespace {

bool isIpLiteral(const std::string& host) {
  ErrorCode error;
  (void)asio::ip::make_address(host, error);
  return !error;
}

}  // namespace

HttpsExchange::HttpsExchange(asio::io_context& io, KubeApiEndpoint endpoint, Milliseconds connect_timeout,
                             Milliseconds idle_timeout)
    : io_(io),
      endpoint_(std::move(endpoint)),
      connect_timeout_(connect_timeout),
      idle_timeout_(idle_timeout),
      resolver_(io),
      deadline_timer_(io) {}

void HttpsExchange::start(http::request<http::string_body> request, Callbacks callbacks) {
  request_ = std::move(request);
  callbacks_ = std::move(callbacks);
  std::string error;
  if (!prepareTls(error)) {
    asio::post(io_, [self = shared_from_this(), error] { self->fail(error); });
    return;
  }
  // The callers cap what they keep. Not boost::none: Boost 1.74's parser then refuses any Content-Length.
  parser_.body_limit(std::numeric_limits<std::uint64_t>::max());
  parser_.header_limit(kMaxResponseHeaderBytes);
  phase_ = "resolving " + endpoint_.host;
  armDeadline(connect_timeout_);
  resolver_.async_resolve(
      endpoint_.host, std::to_string(endpoint_.port), tcp::resolver::numeric_service,
      [self = shared_from_this()](const ErrorCode& ec, const tcp::resolver::results_type& results) {
        self->onResolved(ec, results);
      });
}

void HttpsExchange::cancel() {
  if (done_) {
    return;
  }
  done_ = true;
  shutdown();
}

bool HttpsExchange::prepareTls(std::string& error) {
  try {
    tls_.emplace(ssl::context::tls_client);
    SSL_CTX_set_min_proto_version(tls_->native_handle(), TLS1_2_VERSION);
    tls_->set_verify_mode(ssl::verify_peer);
    ErrorCode ec;
    tls_->load_verify_file(endpoint_.ca_file, ec);
    if (ec) {
      error = "TLS: cannot load the CA file " + endpoint_.ca_file + ": " + ec.message();
      return false;
    }
    stream_.emplace(io_, *tls_);
    SSL* ssl = stream_->native_handle();
    if (isIpLiteral(endpoint_.host)) {
      // No SNI for an address (RFC 6066); the certificate must carry it as an IP subjectAltName.
      if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), endpoint_.host.c_str()) != 1) {
        error = "TLS: cannot check the server address " + endpoint_.host;
        return false;
      }
    } else {
      // SSL_set_tlsext_host_name, without its C cast.
      if (SSL_ctrl(ssl, SSL_CTRL_SET_TLSEXT_HOSTNAME, TLSEXT_NAMETYPE_host_name,
                   const_cast<char*>(endpoint_.host.c_str())) != 1 ||
          SSL_set1_host(ssl, endpoint_.host.c_str()) != 1) {
        error = "TLS: cannot set the server name " + endpoint_.host;
        return false;
      }
      SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    }
    return true;
  } catch (const std::exception& e) {
    error = std::string("TLS: ") + e.what();
    return false;
  }
}

void HttpsExchange::armDeadline(Milliseconds timeout) {
  deadline_ = std::chrono::steady_clock::now() + timeout;
  deadline_timeout_ = timeout;
  if (!deadline_waiting_ || deadline_ < timer_expiry_) {
    waitDeadline();
  }
}

// One wait at a time: a deadline moved later is found when the wait ends, one moved earlier replaces it.
void HttpsExchange::waitDeadline() {
  deadline_waiting_ = true;
  timer_expiry_ = deadline_;
  const uint64_t wait = ++deadline_wait_;
  deadline_timer_.expires_at(deadline_);
  deadline_timer_.async_wait([self = shared_from_this(), wait](const ErrorCode&) {
    if (self->done_ || wait != self->deadline_wait_) {
      return;
    }
    self->deadline_waiting_ = false;
    if (std::chrono::steady_clock::now() < self->deadline_) {
      self->waitDeadline();
      return;
    }
    self->timed_out_ = true;
    self->closeSocket();  // the pending operation fails and reports the timeout
  });
}

void HttpsExchange::closeSocket() {
  ErrorCode ignored;
  resolver_.cancel();
  if (stream_) {
    stream_->lowest_layer().shutdown(tcp::socket::shutdown_both, ignored);
    stream_->lowest_layer().close(ignored);
  }
}

void HttpsExchange::shutdown() {
  closeSocket();
  try {
    deadline_timer_.cancel();
  } catch (const std::exception&) {  // NOLINT(bugprone-empty-catch): nothing is waiting on it then
  }
}

void HttpsExchange::fail(const std::string& error) {
  if (done_) {
    return;
  }
  done_ = true;
  shutdown();
  if (callbacks_.on_end) {
    callbacks_.on_end(error);
  }
}

void HttpsExchange::failOperation(const std::string& what, const ErrorCode& ec) {
  if (timed_out_) {
    fail(what + ": timed out (" + phase_ + ", no progress for " + milliseconds(deadline_timeout_) + ")");
    return;
  }
  fail(what + ": " + ec.message());
}

void HttpsExchange::onResolved(const ErrorCode& ec, const tcp::resolver::results_type& results) {
  if (done_) {
    return;
  }
  if (ec) {
    failOperation("resolving " + endpoint_.host, ec);
    return;
  }
  phase_ = "connecting";
  asio::async_connect(stream_->lowest_layer(), results,
                      [self = shared_from_this()](const ErrorCode& error, const tcp::endpoint&) {
                        self->onConnected(error);
                      });
}

void HttpsExchange::onConnected(const ErrorCode& ec) {
  if (done_) {
    return;
  }
  if (ec) {
    failOperation("connecting to " + hostPort(endpoint_), ec);
    return;
  }
  phase_ = "TLS handshake";
  stream_->async_handshake(ssl::stream_base::client,
                           [self = shared_from_this()](const ErrorCode& error) { self->onHandshake(error); });
}

void HttpsExchange::onHandshake(const ErrorCode& ec) {
  if (done_) {
    return;
  }
  if (ec) {
    std::string what = "TLS handshake with " + hostPort(endpoint_) + " failed";
    if (!timed_out_) {
      what += ": " + ec.message();
      const long verify = SSL_get_verify_result(stream_->native_handle());
      if (verify != X509_V_OK) {
        what += " (" + std::string(X509_verify_cert_error_string(verify)) + ")";
      }
      fail(what);
      return;
    }
    failOperation(what, ec);
    return;
  }
  phase_ = "sending the request";
  http::async_write(*stream_, request_,
                    [self = shared_from_this()](const ErrorCode& error, size_t) { self->onWritten(error); });
}

void HttpsExchange::onWritten(const ErrorCode& ec) {
  if (done_) {
    return;
  }
  if (ec) {
    failOperation("sending " + std::string(request_.target()), ec);
    return;
  }
  phase_ = "waiting for the response";
  http::async_read_header(
      *stream_, buffer_, parser_,
      [self = shared_from_this()](const ErrorCode& error, size_t) { self->onHeader(error); });
}

void HttpsExchange::onHeader(const ErrorCode& ec) {
  if (done_) {
    return;
  }
  if (ec) {
    failOperation("reading the response header", ec);
    return;
  }
  phase_ = "reading the response";
  armDeadline(idle_timeout_);
  if (callbacks_.on_header) {
    callbacks_.on_header(parser_.get().result_int());
  }
  continueBody();
}

void HttpsExchange::continueBody() {
  if (done_) {
    return;
  }
  if (parser_.is_done()) {
    done_ = true;
    shutdown();
    if (callbacks_.on_end) {
      callbacks_.on_end("");
    }
    return;
  }
  parser_.get().body().data = chunk_.data();
  parser_.get().body().size = chunk_.size();
  http::async_read_some(*stream_, buffer_, parser_,
                        [self = shared_from_this()](const ErrorCode& error, size_t transferred) {
                          self->onBody(error, transferred);
                        });
}

void HttpsExchange::onBody(ErrorCode ec, size_t transferred) {
  if (done_) {
    return;
  }
  if (ec == http::error::need_buffer) {
    ec = {};
  }
  if (transferred > 0) {
    armDeadline(idle_timeout_);
  }
  const size_t received = chunk_.size() - parser_.get().body().size;
  if (received > 0 && callbacks_.on_body) {
    callbacks_.on_body(std::string_view(chunk_.data(), received));
    if (done_) {
      return;
    }
  }
  if (ec) {
    if (timed_out_) {
      fail("no data for " + milliseconds(deadline_timeout_));
      return;
    }
    failOperation("reading the response", ec);
    return;
  }
  continueBody();
}

http::request<http::string_body> makeRequest(http::verb verb, const std::string& target,
                                             const KubeApiEndpoint& endpoint, const std::string& token) {
  constexpr unsigned kHttp11 = 11;
  http::request<http::string_body> request{verb, target, kHttp11};
  request.set(http::field::host, hostHeader(endpoint));
  request.set(http::field::user_agent, endpoint.user_agent);
  request.set(http::field::accept, "application/json");
  if (!token.empty()) {
    request.set(http::field::authorization, "Bearer " + token);
  }
  return request;
}

void cancelExchangeAndRetry(std::shared_ptr<HttpsExchange>& exchange, boost::asio::steady_timer& retry_timer) {
  if (exchange) {
    exchange->cancel();
    exchange.reset();
  }
  try {
    retry_timer.cancel();
  } catch (const std::exception&) {  // NOLINT(bugprone-empty-catch): the caller has stopped; nothing can fire
  }
}

}  // namespace oomguard::guardian::kube_tls
