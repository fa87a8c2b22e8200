// The fake API server of fake_api_server.hpp.
#include "fake_api_server.hpp"

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sys/socket.h>

#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <memory>
#include <stdexcept>
#include <string_view>

namespace oomguard::testing {
namespace {

namespace asio = boost::asio;
namespace ssl = boost::asio::ssl;
namespace http = boost::beast::http;
namespace fs = std::filesystem;
using tcp = boost::asio::ip::tcp;
using Json = nlohmann::json;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

// --- the test PKI, made in-process ---------------------------------------------------------------------

struct KeyFree {
  void operator()(EVP_PKEY* key) const { EVP_PKEY_free(key); }
};
struct CertFree {
  void operator()(X509* cert) const { X509_free(cert); }
};
struct BioFree {
  void operator()(BIO* bio) const { BIO_free(bio); }
};
using KeyPtr = std::unique_ptr<EVP_PKEY, KeyFree>;
using CertPtr = std::unique_ptr<X509, CertFree>;
using BioPtr = std::unique_ptr<BIO, BioFree>;

void check(bool ok, const char* what) {
  if (!ok) {
    throw std::runtime_error(std::string("OpenSSL: ") + what);
  }
}

KeyPtr makeKey() {
  KeyPtr key(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"));
  check(key != nullptr, "EC key generation");
  return key;
}

void addExtension(X509* cert, X509* issuer, int nid, const char* value) {
  X509V3_CTX context{};
  X509V3_set_ctx(&context, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* extension = X509V3_EXT_conf_nid(nullptr, &context, nid, value);
  check(extension != nullptr, value);
  check(X509_add_ext(cert, extension, -1) == 1, "X509_add_ext");
  X509_EXTENSION_free(extension);
}

// A CA certificate when `issuer` is null (self-signed), else a server certificate for `san`.
CertPtr makeCert(EVP_PKEY* key, const std::string& common_name, X509* issuer, EVP_PKEY* issuer_key,
                 long serial, const char* san = nullptr) {
  CertPtr cert(X509_new());
  check(cert != nullptr, "X509_new");
  X509_set_version(cert.get(), 2);
  ASN1_INTEGER_set(X509_get_serialNumber(cert.get()), serial);
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), -3600);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), 24L * 3600);
  X509_set_pubkey(cert.get(), key);
  X509_NAME* name = X509_get_subject_name(cert.get());
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>(common_name.c_str()), -1, -1, 0);
  X509* signer = issuer != nullptr ? issuer : cert.get();
  X509_set_issuer_name(cert.get(), X509_get_subject_name(signer));
  if (issuer == nullptr) {
    addExtension(cert.get(), signer, NID_basic_constraints, "critical,CA:TRUE");
    addExtension(cert.get(), signer, NID_key_usage, "critical,keyCertSign,cRLSign");
    addExtension(cert.get(), signer, NID_subject_key_identifier, "hash");
  } else {
    addExtension(cert.get(), signer, NID_basic_constraints, "critical,CA:FALSE");
    addExtension(cert.get(), signer, NID_key_usage, "critical,digitalSignature,keyEncipherment");
    addExtension(cert.get(), signer, NID_ext_key_usage, "serverAuth");
    addExtension(cert.get(), signer, NID_subject_alt_name, san);
    addExtension(cert.get(), signer, NID_subject_key_identifier, "hash");
    addExtension(cert.get(), signer, NID_authority_key_identifier, "keyid:always");
  }
  check(X509_sign(cert.get(), issuer_key != nullptr ? issuer_key : key, EVP_sha256()) > 0, "X509_sign");
  return cert;
}

void writeCert(const fs::path& path, X509* cert) {
  const BioPtr bio(BIO_new_file(path.c_str(), "w"));
  check(bio != nullptr && PEM_write_bio_X509(bio.get(), cert) == 1, "writing a certificate");
}

void writeKey(const fs::path& path, EVP_PKEY* key) {
  const BioPtr bio(BIO_new_file(path.c_str(), "w"));
  check(
      bio != nullptr && PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr) == 1,
      "writing a key");
}

// --- requests ------------------------------------------------------------------------------------------

std::string percentDecode(std::string_view text) {
  std::string out;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '%' && i + 2 < text.size()) {
      out.push_back(static_cast<char>(std::stoi(std::string(text.substr(i + 1, 2)), nullptr, 16)));
      i += 2;
    } else {
      out.push_back(text[i]);
    }
  }
  return out;
}

Request toRequest(const http::request<http::string_body>& message) {
  Request request;
  request.method = std::string(message.method_string());
  request.target = std::string(message.target());
  const size_t question = request.target.find('?');
  request.path = request.target.substr(0, question);
  if (question != std::string::npos) {
    std::string_view rest = std::string_view(request.target).substr(question + 1);
    while (!rest.empty()) {
      const size_t amp = rest.find('&');
      const std::string_view pair = rest.substr(0, amp);
      const size_t equals = pair.find('=');
      request.query[percentDecode(pair.substr(0, equals))] =
          equals == std::string_view::npos ? "" : percentDecode(pair.substr(equals + 1));
      rest = amp == std::string_view::npos ? std::string_view() : rest.substr(amp + 1);
    }
  }
  request.authorization = std::string(message[http::field::authorization]);
  request.user_agent = std::string(message[http::field::user_agent]);
  request.host = std::string(message[http::field::host]);
  request.content_type = std::string(message[http::field::content_type]);
  request.body = message.body();
  return request;
}

}  // namespace

Pki makePki(const fs::path& dir) {
  const KeyPtr ca_key = makeKey();
  const CertPtr ca = makeCert(ca_key.get(), "oomguard-test-ca", nullptr, nullptr, 1);
  const KeyPtr other_key = makeKey();
  const CertPtr other = makeCert(other_key.get(), "oomguard-test-ca", nullptr, nullptr, 1);
  const KeyPtr server_key = makeKey();
  const CertPtr server = makeCert(server_key.get(), "kube-apiserver", ca.get(), ca_key.get(), 2,
                                  "IP:127.0.0.1,DNS:kubernetes.default.svc");
  Pki pki{dir / "ca.crt", dir / "other-ca.crt", dir / "server.crt", dir / "server.key"};
  writeCert(pki.ca_file, ca.get());
  writeCert(pki.other_ca_file, other.get());
  writeCert(pki.server_cert_file, server.get());
  writeKey(pki.server_key_file, server_key.get());
  return pki;
}

// --- Responder -----------------------------------------------------------------------------------------

void Responder::send(unsigned status, const Json& body) {
  http::response<http::string_body> response{static_cast<http::status>(status), 11};
  response.set(http::field::content_type, "application/json");
  response.set("Audit-Id", "5ae2c5d4-3c35-4f4e-9c47-1d0f4a3e7b21");
  response.body() = body.dump();
  response.prepare_payload();
  boost::system::error_code ignored;
  http::write(stream_, response, ignored);
}

void Responder::beginStream() {
  http::response<http::empty_body> response{http::status::ok, 11};
  response.set(http::field::content_type, "application/json");
  response.chunked(true);
  http::response_serializer<http::empty_body> serializer{response};
  boost::system::error_code ignored;
  http::write_header(stream_, serializer, ignored);
}

void Responder::event(const Json& event) {
  const std::string line = event.dump() + "\n";
  boost::system::error_code ignored;
  asio::write(stream_, http::make_chunk(asio::buffer(line)), ignored);
}

bool Responder::chunk(std::string_view bytes) {
  boost::system::error_code error;
  asio::write(stream_, http::make_chunk(asio::buffer(bytes.data(), bytes.size())), error);
  return !error && !stopping_;
}

void Responder::endStream() {
  boost::system::error_code ignored;
  asio::write(stream_, http::make_chunk_last(), ignored);
}

void Responder::hold(const std::function<bool()>& until) const {
  const auto deadline = Clock::now() + 20s;
  while (!stopping_ && !until() && Clock::now() < deadline) {
    std::this_thread::sleep_for(2ms);
  }
}

// --- ApiServer -----------------------------------------------------------------------------------------

ApiServer::ApiServer(const Pki& pki, Handler handler) : handler_(std::move(handler)) {
  tls_.use_certificate_chain_file(pki.server_cert_file.string());
  tls_.use_private_key_file(pki.server_key_file.string(), ssl::context::pem);
  acceptor_.open(tcp::v4());
  acceptor_.set_option(tcp::acceptor::reuse_address(true));
  acceptor_.bind(tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  acceptor_.listen();
  port_ = acceptor_.local_endpoint().port();
  accept_thread_ = std::thread([this] { acceptLoop(); });
}

std::vector<Request> ApiServer::requests() const {
  const std::lock_guard lock(mutex_);
  return requests_;
}

void ApiServer::stop() {
  if (stopping_.exchange(true)) {
    return;
  }
  {
    // Wakes the blocking accept.
    boost::system::error_code ignored;
    tcp::socket wake(io_);
    wake.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port_), ignored);
    accept_thread_.join();
  }
  {
    const std::lock_guard lock(mutex_);
    for (const int fd : open_fds_) {
      ::shutdown(fd, SHUT_RDWR);
    }
  }
  for (std::thread& thread : connection_threads_) {
    thread.join();
  }
}

void ApiServer::acceptLoop() {
  while (!stopping_) {
    boost::system::error_code error;
    tcp::socket socket(io_);
    acceptor_.accept(socket, error);
    if (error || stopping_) {
      break;
    }
    const std::lock_guard lock(mutex_);
    open_fds_.insert(socket.native_handle());
    connection_threads_.emplace_back(
        [this, connection = std::move(socket)]() mutable { serve(std::move(connection)); });
  }
}

void ApiServer::serve(tcp::socket socket) {
  const int fd = socket.native_handle();
  ssl::stream<tcp::socket> stream(std::move(socket), tls_);
  boost::system::error_code error;
  stream.handshake(ssl::stream_base::server, error);
  if (!error) {
    boost::beast::flat_buffer buffer;
    http::request<http::string_body> message;
    http::read(stream, buffer, message, error);
    if (!error) {
      const Request request = toRequest(message);
      {
        const std::lock_guard lock(mutex_);
        requests_.push_back(request);
      }
      Responder responder(stream, stopping_);
      handler_(request, responder);
    }
  }
  // Closed under the lock, so that stop() never shuts down a reused descriptor.
  const std::lock_guard lock(mutex_);
  open_fds_.erase(fd);
  boost::system::error_code ignored;
  stream.next_layer().shutdown(tcp::socket::shutdown_both, ignored);
  stream.next_layer().close(ignored);
}

// --- API objects ---------------------------------------------------------------------------------------

Json podList(const std::string& resource_version, const std::vector<Json>& items, const std::string& next) {
  Json metadata = {{"resourceVersion", resource_version}};
  if (!next.empty()) {
    metadata["continue"] = next;
  }
  return {{"kind", "PodList"}, {"apiVersion", "v1"}, {"metadata", metadata}, {"items", items}};
}

Json watchEvent(const std::string& type, const Json& object) {
  return {{"type", type}, {"object", object}};
}

Json bookmark(const std::string& resource_version) {
  return watchEvent(
      "BOOKMARK",
      {{"kind", "Pod"}, {"apiVersion", "v1"}, {"metadata", {{"resourceVersion", resource_version}}}});
}

Json status(int code, const std::string& reason, const std::string& message) {
  return {{"kind", "Status"},    {"apiVersion", "v1"}, {"metadata", Json::object()},
          {"status", "Failure"}, {"message", message}, {"reason", reason},
          {"code", code}};
}

// --- driving the client's io_context -------------------------------------------------------------------

bool runUntil(asio::io_context& io, const std::function<bool()>& done, std::chrono::milliseconds limit) {
  const auto deadline = Clock::now() + limit;
  while (!done()) {
    if (Clock::now() >= deadline) {
      return false;
    }
    io.restart();
    if (io.run_for(5ms) == 0 && io.stopped()) {
      std::this_thread::sleep_for(1ms);
    }
  }
  return true;
}

void runFor(asio::io_context& io, std::chrono::milliseconds duration) {
  runUntil(
      io, [] { return false; }, duration);
}

}  // namespace oomguard::testing
