// `oomguard health`: GET /healthz of a running daemon, for an exec probe (the chart's liveness and
// readiness checks reach a loopback-only listener this way, so other pods cannot reach it at all).
#include <boost/asio/connect.hpp>
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
    stream.expires_after(std::chrono::milliseconds(options.timeout_ms));  // the whole exchange, connect to body
    stream.connect(endpoint);
    http::request<http::empty_body> request{http::verb::get, "/healthz", 11};
    request.set(http::field::host, options.address);
    request.set(http::field::user_agent, "oomguard-health");
    http::write(stream, request);
    beast::flat_buffer buffer;
    http::response_parser<http::string_body> parser;
    parser.body_limit(4096);
    http::read(stream, buffer, parser);
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
