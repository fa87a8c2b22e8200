#include "guardian/exporter/http_server.hpp"

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ip/v6_only.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <list>
#include <stdexcept>
#include <thread>

namespace oomguard::guardian::exporter {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

namespace {

struct Session;
using Sessions = std::list<std::shared_ptr<Session>>;

// One connection: read one request (bounded in time and size), answer it, close.
struct Session : std::enable_shared_from_this<Session> {
  Session(tcp::socket socket, const HttpServer::Handler& on_request, const HttpServer::Limits& bounds, Sessions& list,
          std::atomic<size_t>& open_count)
      : stream(std::move(socket)), handler(on_request), limits(bounds), sessions(list), open(open_count) {}

  void start(Sessions::iterator self) {
    position = self;
    parser.header_limit(static_cast<uint32_t>(limits.max_request_bytes));
    parser.body_limit(limits.max_request_bytes);
    stream.expires_after(limits.request_timeout);
    http::async_read(stream, buffer, parser, [self = shared_from_this()](beast::error_code error, size_t) {
      self->onRead(error);
    });
  }

  void onRead(beast::error_code error) {
    if (error) {
      finish();
      return;
    }
    reading = false;
    const auto& request = parser.get();
    std::string_view target(request.target().data(), request.target().size());
    target = target.substr(0, target.find('?'));
    const std::string_view method(request.method_string().data(), request.method_string().size());
    HttpServer::Response reply;
    try {
      reply = handler(method, target);
    } catch (const std::exception& failure) {
      reply = HttpServer::Response{500, "text/plain; charset=utf-8", {}, std::string("internal error: ") + failure.what() + "\n"};
    }
    response.version(11);
    response.result(static_cast<unsigned>(reply.status));
    response.set(http::field::content_type, reply.content_type);
    response.set(http::field::connection, "close");
    if (!reply.allow.empty()) {
      response.set(http::field::allow, reply.allow);
    }
    response.content_length(reply.body.size());
    if (request.method() != http::verb::head) {
      response.body() = std::move(reply.body);
    }
    stream.expires_after(limits.write_timeout);
    http::async_write(stream, response, [self = shared_from_this()](beast::error_code, size_t) {
      beast::error_code ignored;
      self->stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
      self->finish();
    });
  }

  // Closes the socket (cancelling what is pending) and leaves the server's list; idempotent.
  void finish() {
    if (done) {
      return;
    }
    done = true;
    beast::error_code ignored;
    stream.socket().close(ignored);
    auto& count = open;
    auto& list = sessions;
    list.erase(position);  // may drop the last owner: no member is used after this line
    count.store(list.size(), std::memory_order_relaxed);
  }

  beast::tcp_stream stream;
  const HttpServer::Handler& handler;
  const HttpServer::Limits& limits;
  Sessions& sessions;
  std::atomic<size_t>& open;
  Sessions::iterator position;
  beast::flat_buffer buffer;
  http::request_parser<http::string_body> parser;
  http::response<http::string_body> response;
  bool reading = true;
  bool done = false;
};

}  // namespace

struct HttpServer::State {
  State(Handler h, Limits l) : handler(std::move(h)), limits(l), io(1), acceptor(io), retry(io) {}

  void accept() {
    acceptor.async_accept([this](beast::error_code error, tcp::socket socket) {
      if (error == asio::error::operation_aborted || !acceptor.is_open()) {
        return;
      }
      if (error) {
        // Out of descriptors or memory: try again shortly instead of spinning.
        retry.expires_after(std::chrono::milliseconds(50));
        retry.async_wait([this](beast::error_code waited) {
          if (!waited) {
            accept();
          }
        });
        return;
      }
      admit(std::move(socket));
      accept();
    });
  }

  void admit(tcp::socket socket) {
    if (sessions.size() >= limits.max_connections) {
      // The oldest connection still waiting for its request makes room; the list is in accept order.
      Sessions::iterator victim = sessions.end();
      for (auto it = sessions.begin(); it != sessions.end(); ++it) {
        if ((*it)->reading) {
          victim = it;
          break;
        }
      }
      evicted.fetch_add(1, std::memory_order_relaxed);
      if (victim == sessions.end()) {
        beast::error_code ignored;
        socket.close(ignored);
        return;
      }
      const auto holder = *victim;  // keeps it alive through finish()
      holder->finish();
    }
    auto session = std::make_shared<Session>(std::move(socket), handler, limits, sessions, open);
    sessions.push_back(session);
    session->start(std::prev(sessions.end()));
    open.store(sessions.size(), std::memory_order_relaxed);
  }

  Handler handler;
  Limits limits;
  asio::io_context io;
  tcp::acceptor acceptor;
  asio::steady_timer retry;
  Sessions sessions;  // the server thread's only
  std::atomic<size_t> open{0};
  std::atomic<uint64_t> evicted{0};
  std::thread thread;
};

HttpServer::HttpServer(const config::HostPort& address, Handler handler, Limits limits)
    : state_(std::make_unique<State>(std::move(handler), limits)) {
  beast::error_code error;
  const auto ip = asio::ip::make_address(address.host, error);
  if (error) {
    throw std::runtime_error("cannot serve on " + address.text() + ": " + error.message());
  }
  const tcp::endpoint endpoint(ip, address.port);
  auto fail = [&](const char* step) {
    throw std::runtime_error("cannot serve on " + address.text() + ": " + step + ": " + error.message() + " (errno " +
                             std::to_string(error.value()) + ")");
  };
  auto& acceptor = state_->acceptor;
  if (acceptor.open(endpoint.protocol(), error)) {
    fail("socket");
  }
  if (ip.is_v6()) {
    acceptor.set_option(asio::ip::v6_only(true), error);  // "[::]" is IPv6 only, like the address says
  }
  acceptor.set_option(tcp::acceptor::reuse_address(true), error);
  if (acceptor.bind(endpoint, error)) {
    fail("bind");
  }
  if (acceptor.listen(asio::socket_base::max_listen_connections, error)) {
    fail("listen");
  }
  port_ = acceptor.local_endpoint(error).port();
  state_->accept();
  state_->thread = std::thread([state = state_.get()] { state->io.run(); });
}

HttpServer::~HttpServer() {
  // Close everything on the server's thread; the aborted operations complete, and run() returns when
  // no work is left.
  asio::post(state_->io, [state = state_.get()] {
    beast::error_code ignored;
    state->acceptor.close(ignored);
    state->retry.cancel();
    while (!state->sessions.empty()) {
      const auto holder = state->sessions.front();
      holder->finish();
    }
  });
  if (state_->thread.joinable()) {
    state_->thread.join();
  }
}

size_t HttpServer::openConnections() const { return state_->open.load(std::memory_order_relaxed); }

uint64_t HttpServer::evictedConnections() const { return state_->evicted.load(std::memory_order_relaxed); }

}  // namespace oomguard::guardian::exporter
