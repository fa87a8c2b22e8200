// A fake Kubernetes API server for tests: a real TLS HTTP/1.1 server on 127.0.0.1 (a test CA and a server
// certificate with subjectAltName IP:127.0.0.1 made in-process with OpenSSL's C API) whose handler speaks
// the API server's JSON: PodLists, chunked watch streams, Status bodies. Every request is recorded. The
// server answers on threads of its own; the client under test runs on the test thread's io_context,
// driven by runUntil / runFor.
#pragma once

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace oomguard::testing {

// What Request::param answers for a query parameter the request did not have.
inline constexpr const char* kAbsent = "<absent>";

// --- a test PKI ------------------------------------------------------------------------------------------

struct Pki {
  std::filesystem::path ca_file;        // the CA that signed the server's certificate
  std::filesystem::path other_ca_file;  // a CA unrelated to the server
  std::filesystem::path server_cert_file;
  std::filesystem::path server_key_file;
};

// Writes ca.crt, other-ca.crt, server.crt and server.key into `dir`.
Pki makePki(const std::filesystem::path& dir);

// --- the server ----------------------------------------------------------------------------------------

struct Request {
  std::string method;
  std::string target;
  std::string path;
  std::map<std::string, std::string> query;  // percent-decoded
  std::string authorization;
  std::string user_agent;
  std::string host;
  std::string content_type;
  std::string body;

  [[nodiscard]] std::string param(const std::string& key) const {
    const auto it = query.find(key);
    return it == query.end() ? kAbsent : it->second;
  }
  [[nodiscard]] bool isWatch() const { return query.count("watch") > 0; }
};

// What a handler answers with, on the connection's TLS stream. Write errors (the client went away) are
// ignored: the assertions are on what the client saw.
class Responder {
 public:
  Responder(boost::asio::ssl::stream<boost::asio::ip::tcp::socket>& stream, const std::atomic<bool>& stopping)
      : stream_(stream), stopping_(stopping) {}

  void send(unsigned status, const nlohmann::json& body);
  void beginStream();
  // One watch event: a JSON object and a newline, in a chunk of its own.
  void event(const nlohmann::json& event);
  // Raw bytes in a chunk of their own (a hostile or broken server's); false once the client is gone.
  bool chunk(std::string_view bytes);
  // The terminating chunk: the stream ends cleanly (as at the server's timeoutSeconds). Returning from
  // the handler without it drops the connection mid-stream.
  void endStream();
  // Keeps the connection open, silent, until `until` holds or the server stops (at most 20 s).
  void hold(const std::function<bool()>& until = [] { return false; }) const;

 private:
  boost::asio::ssl::stream<boost::asio::ip::tcp::socket>& stream_;
  const std::atomic<bool>& stopping_;
};

// A TLS HTTP/1.1 server on 127.0.0.1 and an ephemeral port: one request per connection, each connection on
// a thread of its own, answered by the handler after the request is recorded.
class ApiServer {
 public:
  using Handler = std::function<void(const Request&, Responder&)>;

  ApiServer(const Pki& pki, Handler handler);
  ~ApiServer() { stop(); }
  ApiServer(const ApiServer&) = delete;
  ApiServer& operator=(const ApiServer&) = delete;

  [[nodiscard]] uint16_t port() const { return port_; }
  [[nodiscard]] std::vector<Request> requests() const;
  // Ends every connection (a held one too) and joins the server's threads.
  void stop();

 private:
  void acceptLoop();
  void serve(boost::asio::ip::tcp::socket socket);

  Handler handler_;
  boost::asio::io_context io_;  // only for the blocking sockets
  boost::asio::ssl::context tls_{boost::asio::ssl::context::tls_server};
  boost::asio::ip::tcp::acceptor acceptor_{io_};
  uint16_t port_ = 0;
  std::atomic<bool> stopping_{false};
  std::thread accept_thread_;
  mutable std::mutex mutex_;
  std::vector<Request> requests_;
  std::set<int> open_fds_;
  std::vector<std::thread> connection_threads_;
};

// --- API objects ---------------------------------------------------------------------------------------

nlohmann::json podList(const std::string& resource_version, const std::vector<nlohmann::json>& items,
                       const std::string& next = "");
nlohmann::json watchEvent(const std::string& type, const nlohmann::json& object);
nlohmann::json bookmark(const std::string& resource_version);
// A metav1.Status with status Failure.
nlohmann::json status(int code, const std::string& reason, const std::string& message);

// --- driving the client's io_context -------------------------------------------------------------------

// Runs `io` until `done` holds; false when `limit` passed first.
bool runUntil(boost::asio::io_context& io, const std::function<bool()>& done,
              std::chrono::milliseconds limit = std::chrono::seconds(10));
void runFor(boost::asio::io_context& io, std::chrono::milliseconds duration);

}  // namespace oomguard::testing
