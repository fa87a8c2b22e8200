// `oomguard health` against real loopback listeners: one that answers, one that accepts and never answers
// (the probe must give up at its timeout: the synchronous exchange it replaced waited forever), and an
// address that is not ADDRESS:PORT.
#include "guardian/cli/commands.hpp"

#include <gtest/gtest.h>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/write.hpp>
#include <sstream>
#include <string>
#include <thread>

namespace oomguard::guardian::cli {
namespace {

using boost::asio::ip::tcp;

TEST(HealthTest, AnAnsweringDaemonIsHealthy) {
  boost::asio::io_context io;
  tcp::acceptor acceptor(io, tcp::endpoint(boost::asio::ip::make_address("127.0.0.1"), 0));
  std::thread server([&] {
    tcp::socket socket = acceptor.accept();
    boost::asio::streambuf request;
    boost::asio::read_until(socket, request, "\r\n\r\n");
    const std::string response = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok";
    boost::asio::write(socket, boost::asio::buffer(response));
  });
  HealthOptions options;
  options.address = "127.0.0.1:" + std::to_string(acceptor.local_endpoint().port());
  std::ostringstream out;
  std::ostringstream err;
  EXPECT_EQ(runHealth(options, out, err), kExitOk) << err.str();
  EXPECT_EQ(out.str(), "ok\n");
  server.join();
}

TEST(HealthTest, ASilentListenerFailsAtTheTimeout) {
  // Listening, never accepting: the kernel completes the handshake from the backlog and the request is
  // written, but no answer ever comes.
  boost::asio::io_context io;
  tcp::acceptor acceptor(io, tcp::endpoint(boost::asio::ip::make_address("127.0.0.1"), 0));
  HealthOptions options;
  options.address = "127.0.0.1:" + std::to_string(acceptor.local_endpoint().port());
  options.timeout_ms = 200;
  std::ostringstream out;
  std::ostringstream err;
  EXPECT_EQ(runHealth(options, out, err), kExitFailure);
  EXPECT_NE(err.str().find("no answer within 200 ms"), std::string::npos) << err.str();
  EXPECT_TRUE(out.str().empty());
}

TEST(HealthTest, ARefusedConnectionFails) {
  boost::asio::io_context io;
  uint16_t port = 0;
  {
    tcp::acceptor acceptor(io, tcp::endpoint(boost::asio::ip::make_address("127.0.0.1"), 0));
    port = acceptor.local_endpoint().port();
  }  // closed: nothing listens there now
  HealthOptions options;
  options.address = "127.0.0.1:" + std::to_string(port);
  std::ostringstream out;
  std::ostringstream err;
  EXPECT_EQ(runHealth(options, out, err), kExitFailure);
  EXPECT_NE(err.str().find("/healthz: "), std::string::npos) << err.str();
}

TEST(HealthTest, AnAddressThatIsNotAddressAndPortIsAUsageError) {
  HealthOptions options;
  options.address = "localhost";
  std::ostringstream out;
  std::ostringstream err;
  EXPECT_EQ(runHealth(options, out, err), kExitUsage);
}

}  // namespace
}  // namespace oomguard::guardian::cli
