// `oomguard health`: GET /healthz of a running daemon, for an exec probe (the chart's liveness and
// readiness checks reach a loopback-only listener this way, so other pods cannot reach it at all).
#include <boost/asio/ip/address.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <ostream>
#include <string>

#include "guardian/cli/commands.hpp"
#include "guardian/config/address.hpp"
#include "guardian/text/format.hpp"

namespace oomguard::guardian::cli {

namespace beast = boost::beast;
namespace http = beast::http;

int runHealth(const HealthOptions& options, std::ostream& out, std::ostream& err) {
  const auto address = config::parseListenAddress(options.address);
  if (!address) {
    err << "oomguard: health address " << text::printable(address.error().message) << "\n";
    return kExitUsage;
  }
  try {
    boost::asio::io_context io;
    beast::tcp_stream stream(io);
    const boost::asio::ip::tcp::endpoint endpoint(boost::asio::ip::make_address(address.value().host),
                                                  address.value().port);
    http::request<http::empty_body> request{http::verb::get, "/healthz", 11};
    request.set(http::field::host, options.address);
    request.set(http::field::user_agent, "oomguard-health");
    beast::flat_buffer buffer;
    http::response_parser<http::string_body> parser;
    parser.body_limit(4096);
    // The stream's expiry bounds its asynchronous operations only (the synchronous ones ignore it: a
    // listener that accepted and never answered held the probe forever): connect, write and read are
    // asynchronous, under one expiry for the whole exchange.
    stream.expires_after(std::chrono::milliseconds(options.timeout_ms));
    beast::error_code failure;
    bool answered = false;
    stream.async_connect(endpoint, [&](beast::error_code connected) {
      if (connected) {
        failure = connected;
        return;
      }
      http::async_write(stream, request, [&](beast::error_code written, std::size_t) {
        if (written) {
          failure = written;
          return;
        }
        http::async_read(stream, buffer, parser, [&](beast::error_code read, std::size_t) {
          failure = read;
          answered = !read;
        });
      });
    });
    io.run();
    if (!answered) {
      const std::string why = failure == beast::error::timeout
                                  ? "no answer within " + std::to_string(options.timeout_ms) + " ms"
                                  : failure.message();
      err << "oomguard: " << options.address << "/healthz: " << text::printable(why) << "\n";
      return kExitFailure;
    }
    const auto& response = parser.get();
    const std::string body = text::printable(response.body().substr(0, 200));
    if (response.result_int() != 200) {
      err << "oomguard: " << options.address << "/healthz: HTTP " << response.result_int() << " " << body << "\n";
      return kExitFailure;
    }
    out << body << "\n";
    return kExitOk;
  } catch (const std::exception& error) {
    err << "oomguard: " << options.address << "/healthz: " << text::printable(error.what()) << "\n";
    return kExitFailure;
  }
}

}  // namespace oomguard::guardian::cli
