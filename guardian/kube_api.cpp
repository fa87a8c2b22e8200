// The Kubernetes API client (kube_api.hpp). Each request has a TLS connection of its own (HttpsExchange),
// closed when its response ends: a watch is one long response, a list one per page, an Event one POST.
// All members are used on the io_context's thread only, stop() included.
#include "guardian/kube_api.hpp"

#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <boost/asio/connect.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/buffer_body.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <charconv>
#include <ctime>
#include <deque>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string_view>
#include <system_error>
#include <utility>

namespace oomguard::guardian {

namespace {

namespace asio = boost::asio;
namespace ssl = boost::asio::ssl;
namespace http = boost::beast::http;
using tcp = boost::asio::ip::tcp;
using Json = nlohmann::json;
using ErrorCode = boost::system::error_code;
using Milliseconds = std::chrono::milliseconds;

// Caps on what a misbehaving server can make the daemon hold in memory.
constexpr size_t kMaxListResponseBytes = 64UL << 20U;  // one page of a PodList
constexpr size_t kMaxWatchLineBytes = 16UL << 20U;     // one watch event
constexpr size_t kMaxErrorBodyBytes = 64UL << 10U;     // the Status of a refused request, as kept
constexpr uint32_t kMaxResponseHeaderBytes = 64U << 10U;
constexpr size_t kReadChunkBytes = 16UL << 10U;
constexpr size_t kMaxEventMessageBytes = 1024;
// A Kubernetes object name is a DNS subdomain: at most 253 characters.
constexpr size_t kMaxObjectNameBytes = 253;
constexpr Milliseconds kEventConnectTimeout{10000};
constexpr Milliseconds kEventIdleTimeout{30000};
constexpr Milliseconds kEventRetryInitial{200};

// --- small helpers -------------------------------------------------------------------------------------

// Percent-encodes everything but RFC 3986's unreserved characters, for a query value or a path segment.
std::string percentEncode(std::string_view value) {
  static constexpr std::string_view kHex = "0123456789ABCDEF";
  std::string out;
  out.reserve(value.size());
  for (const char c : value) {
    const auto byte = static_cast<unsigned char>(c);
    if ((byte >= 'A' && byte <= 'Z') || (byte >= 'a' && byte <= 'z') || (byte >= '0' && byte <= '9') ||
        c == '-' || c == '.' || c == '_' || c == '~') {
      out.push_back(c);
    } else {
      out.push_back('%');
      out.push_back(kHex[byte >> 4U]);
      out.push_back(kHex[byte & 0x0FU]);
    }
  }
  return out;
}

bool isIpLiteral(const std::string& host) {
  ErrorCode error;
  (void)asio::ip::make_address(host, error);
  return !error;
}

std::string hostPort(const KubeApiEndpoint& endpoint) {
  const bool ipv6 = endpoint.host.find(':') != std::string::npos;
  return (ipv6 ? "[" + endpoint.host + "]" : endpoint.host) + ":" + std::to_string(endpoint.port);
}

// The Host header: the port is left out when it is the scheme's default.
std::string hostHeader(const KubeApiEndpoint& endpoint) {
  if (endpoint.port == 443) {
    return endpoint.host.find(':') != std::string::npos ? "[" + endpoint.host + "]" : endpoint.host;
  }
  return hostPort(endpoint);
}

std::string trimmed(std::string_view text) {
  const auto is_space = [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; };
  while (!text.empty() && is_space(text.front())) {
    text.remove_prefix(1);
  }
  while (!text.empty() && is_space(text.back())) {
    text.remove_suffix(1);
  }
  return std::string(text);
}

// The bearer token, or "" when no token file is configured. False with `error` when it cannot be read.
bool readToken(const std::string& token_file, std::string& token, std::string& error) {
  token.clear();
  if (token_file.empty()) {
    return true;
  }
  std::ifstream in(token_file, std::ios::binary);
  if (!in) {
    error = "cannot read token file " + token_file + ": " + std::generic_category().message(errno);
    return false;
  }
  std::ostringstream text;
  text << in.rdbuf();
  token = trimmed(text.str());
  if (token.empty()) {
    error = "token file " + token_file + " is empty";
    return false;
  }
  return true;
}

const Json* member(const Json& object, const char* key) {
  if (!object.is_object()) {
    return nullptr;
  }
  const auto it = object.find(key);
  return it == object.end() ? nullptr : &*it;
}

std::string stringMember(const Json& object, const char* key) {
  const Json* value = member(object, key);
  return value != nullptr && value->is_string() ? value->get<std::string>() : std::string();
}

const Json& emptyObject() {
  static const Json kEmpty = Json::object();
  return kEmpty;
}

const Json& objectMember(const Json& object, const char* key) {
  const Json* value = member(object, key);
  return value != nullptr && value->is_object() ? *value : emptyObject();
}

// Cuts `text` to at most `max_bytes` without splitting a UTF-8 sequence.
std::string truncateUtf8(const std::string& text, size_t max_bytes) {
  if (text.size() <= max_bytes) {
    return text;
  }
  size_t cut = max_bytes;
  while (cut > 0 && (static_cast<unsigned char>(text[cut]) & 0xC0U) == 0x80U) {
    --cut;
  }
  return text.substr(0, cut);
}

// The message of a Kubernetes Status body, else the start of the body as text; one line, at most 300 bytes.
std::string describeBody(const std::string& body) {
  constexpr size_t kMaxShown = 300;
  const Json status = Json::parse(body, nullptr, false);
  std::string shown = status.is_discarded() ? std::string() : stringMember(status, "message");
  if (shown.empty()) {
    shown = body;
  }
  shown = trimmed(truncateUtf8(shown, kMaxShown));
  for (char& c : shown) {
    if (static_cast<unsigned char>(c) < 0x20) {
      c = ' ';
    }
  }
  return shown;
}

std::string describeHttpFailure(const std::string& what, unsigned status, const std::string& body) {
  std::string text = what + ": HTTP " + std::to_string(status);
  const std::string detail = describeBody(body);
  if (!detail.empty()) {
    text += " (" + detail + ")";
  }
  return text;
}

std::string milliseconds(Milliseconds duration) {
  return std::to_string(duration.count()) + " ms";
}

std::string rfc3339Utc(std::chrono::system_clock::time_point when) {
  const std::time_t seconds = std::chrono::system_clock::to_time_t(when);
  std::tm utc{};
  gmtime_r(&seconds, &utc);
  std::array<char, 32> text{};
  const size_t length = std::strftime(text.data(), text.size(), "%Y-%m-%dT%H:%M:%SZ", &utc);
  return std::string(text.data(), length);
}

std::string hex16(uint64_t value) {
  static constexpr std::string_view kHex = "0123456789abcdef";
  std::string out(16, '0');
  for (size_t i = 16; i-- > 0;) {
    out[i] = kHex[value & 0x0FU];
    value >>= 4U;
  }
  return out;
}

// --- quantities ----------------------------------------------------------------------------------------

__extension__ using Uint128 = unsigned __int128;

// value * 10^exponent10 * 1024^binary_power, rounded up to an integer; nullopt past INT64_MAX.
std::optional<int64_t> scaleQuantity(Uint128 digits, int exponent10, unsigned binary_power) {
  constexpr auto kMax = static_cast<Uint128>(std::numeric_limits<int64_t>::max());
  if (digits == 0) {
    return 0;
  }
  Uint128 value = digits;  // < 10^19 < 2^64 (the caller's limit), so value * 2^60 < 2^124 fits
  for (unsigned i = 0; i < binary_power; ++i) {
    value *= 1024;
  }
  if (exponent10 >= 0) {
    for (int i = 0; i < exponent10; ++i) {
      if (value > kMax / 10) {
        return std::nullopt;
      }
      value *= 10;
    }
    return value > kMax ? std::nullopt : std::optional<int64_t>(static_cast<int64_t>(value));
  }
  // value < 2^124 < 10^38: dividing by 10^38 or more leaves a fraction, which rounds up to 1.
  if (-exponent10 >= 38) {
    return 1;
  }
  Uint128 divisor = 1;
  for (int i = 0; i < -exponent10; ++i) {
    divisor *= 10;
  }
  const Uint128 quotient = value / divisor + (value % divisor != 0 ? 1 : 0);
  return quotient > kMax ? std::nullopt : std::optional<int64_t>(static_cast<int64_t>(quotient));
}

// --- pods ----------------------------------------------------------------------------------------------

std::optional<KubePod> parsePodObject(const Json& object, std::string& why) {
  if (!object.is_object()) {
    why = "pod is not a JSON object";
    return std::nullopt;
  }
  const Json& metadata = objectMember(object, "metadata");
  KubePod pod;
  pod.uid = stringMember(metadata, "uid");
  pod.name = stringMember(metadata, "name");
  pod.namespace_name = stringMember(metadata, "namespace");
  if (pod.uid.empty() || pod.name.empty() || pod.namespace_name.empty()) {
    why = "pod without metadata.uid, metadata.name or metadata.namespace";
    if (!pod.name.empty()) {
      why += " (name \"" + pod.name + "\")";
    }
    return std::nullopt;
  }
  pod.resource_version = stringMember(metadata, "resourceVersion");
  for (const auto& [key, value] : objectMember(metadata, "annotations").items()) {
    if (value.is_string()) {
      pod.annotations.emplace(key, value.get<std::string>());
    }
  }

  const Json& spec = objectMember(object, "spec");
  if (const Json* priority = member(spec, "priority"); priority != nullptr && priority->is_number_integer()) {
    const auto value = priority->get<int64_t>();
    if (value >= std::numeric_limits<int32_t>::min() && value <= std::numeric_limits<int32_t>::max()) {
      pod.priority = static_cast<int32_t>(value);
    }
  }
  pod.priority_class_name = stringMember(spec, "priorityClassName");
  if (const Json* containers = member(spec, "containers"); containers != nullptr && containers->is_array()) {
    for (const Json& container : *containers) {
      const std::string name = stringMember(container, "name");
      const std::string memory =
          stringMember(objectMember(objectMember(container, "resources"), "requests"), "memory");
      if (name.empty() || memory.empty()) {
        continue;
      }
      if (const std::optional<int64_t> bytes = parseMemoryQuantity(memory)) {
        pod.memory_request_bytes[name] = *bytes;
      }
    }
  }

  const Json& status = objectMember(object, "status");
  pod.qos_class = stringMember(status, "qosClass");
  pod.phase = stringMember(status, "phase");
  for (const char* key : {"containerStatuses", "initContainerStatuses", "ephemeralContainerStatuses"}) {
    const Json* statuses = member(status, key);
    if (statuses == nullptr || !statuses->is_array()) {
      continue;
    }
    for (const Json& container : *statuses) {
      PodContainerRef ref{stringMember(container, "name"), stringMember(container, "containerID")};
      if (!ref.name.empty()) {
        pod.containers.push_back(std::move(ref));
      }
    }
  }
  return pod;
}

// --- one HTTPS exchange --------------------------------------------------------------------------------

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
                Milliseconds idle_timeout)
      : io_(io),
        endpoint_(std::move(endpoint)),
        connect_timeout_(connect_timeout),
        idle_timeout_(idle_timeout),
        resolver_(io),
        deadline_timer_(io) {}

  void start(http::request<http::string_body> request, Callbacks callbacks) {
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

  void cancel() {
    if (done_) {
      return;
    }
    done_ = true;
    shutdown();
  }

 private:
  bool prepareTls(std::string& error) {
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

  void armDeadline(Milliseconds timeout) {
    deadline_ = std::chrono::steady_clock::now() + timeout;
    deadline_timeout_ = timeout;
    if (!deadline_waiting_ || deadline_ < timer_expiry_) {
      waitDeadline();
    }
  }

  // One wait at a time: a deadline moved later is found when the wait ends, one moved earlier replaces it.
  void waitDeadline() {
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

  void closeSocket() {
    ErrorCode ignored;
    resolver_.cancel();
    if (stream_) {
      stream_->lowest_layer().shutdown(tcp::socket::shutdown_both, ignored);
      stream_->lowest_layer().close(ignored);
    }
  }

  void shutdown() {
    closeSocket();
    try {
      deadline_timer_.cancel();
    } catch (const std::exception&) {  // NOLINT(bugprone-empty-catch): nothing is waiting on it then
    }
  }

  void fail(const std::string& error) {
    if (done_) {
      return;
    }
    done_ = true;
    shutdown();
    if (callbacks_.on_end) {
      callbacks_.on_end(error);
    }
  }

  void failOperation(const std::string& what, const ErrorCode& ec) {
    if (timed_out_) {
      fail(what + ": timed out (" + phase_ + ", no progress for " + milliseconds(deadline_timeout_) + ")");
      return;
    }
    fail(what + ": " + ec.message());
  }

  void onResolved(const ErrorCode& ec, const tcp::resolver::results_type& results) {
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

  void onConnected(const ErrorCode& ec) {
    if (done_) {
      return;
    }
    if (ec) {
      failOperation("connecting to " + hostPort(endpoint_), ec);
      return;
    }
    phase_ = "TLS handshake";
    stream_->async_handshake(ssl::stream_base::client, [self = shared_from_this()](const ErrorCode& error) {
      self->onHandshake(error);
    });
  }

  void onHandshake(const ErrorCode& ec) {
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
    http::async_write(*stream_, request_, [self = shared_from_this()](const ErrorCode& error, size_t) {
      self->onWritten(error);
    });
  }

  void onWritten(const ErrorCode& ec) {
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

  void onHeader(const ErrorCode& ec) {
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

  void continueBody() {
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

  void onBody(ErrorCode ec, size_t transferred) {
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

}  // namespace

// --- parsing -------------------------------------------------------------------------------------------

std::optional<int64_t> parseMemoryQuantity(const std::string& text) {
  // <sign>?<digits>[.<digits>]<suffix>, suffix: Ki Mi Gi Ti Pi Ei | n u m "" k M G T P E | e<int> E<int>.
  // Negative quantities are refused (no memory size is negative); values round up to whole bytes.
  std::string_view rest = text;
  if (!rest.empty() && rest.front() == '+') {
    rest.remove_prefix(1);
  }
  std::string digits;  // integer and fraction digits together
  int fraction_digits = 0;
  bool seen_point = false;
  size_t mantissa_length = 0;
  for (; mantissa_length < rest.size(); ++mantissa_length) {
    const char c = rest[mantissa_length];
    if (c >= '0' && c <= '9') {
      digits.push_back(c);
      fraction_digits += seen_point ? 1 : 0;
    } else if (c == '.' && !seen_point) {
      seen_point = true;
    } else {
      break;
    }
  }
  if (digits.empty()) {
    return std::nullopt;
  }
  const std::string_view suffix = rest.substr(mantissa_length);

  int exponent10 = 0;
  unsigned binary_power = 0;
  static constexpr std::array<std::pair<std::string_view, unsigned>, 6> kBinary{
      {{"Ki", 1}, {"Mi", 2}, {"Gi", 3}, {"Ti", 4}, {"Pi", 5}, {"Ei", 6}}};
  static constexpr std::array<std::pair<std::string_view, int>, 10> kDecimal{{{"", 0},
                                                                              {"n", -9},
                                                                              {"u", -6},
                                                                              {"m", -3},
                                                                              {"k", 3},
                                                                              {"M", 6},
                                                                              {"G", 9},
                                                                              {"T", 12},
                                                                              {"P", 15},
                                                                              {"E", 18}}};
  bool known = false;
  for (const auto& [name, power] : kBinary) {
    if (suffix == name) {
      binary_power = power;
      known = true;
    }
  }
  for (const auto& [name, power] : kDecimal) {
    if (suffix == name) {
      exponent10 = power;
      known = true;
    }
  }
  if (!known) {
    // A decimal exponent: e or E, then a signed integer ("E" alone is exa, matched above).
    if (suffix.size() < 2 || (suffix.front() != 'e' && suffix.front() != 'E')) {
      return std::nullopt;
    }
    std::string_view exponent_text = suffix.substr(1);
    const bool negative = exponent_text.front() == '-';
    if (negative || exponent_text.front() == '+') {
      exponent_text.remove_prefix(1);
    }
    constexpr size_t kMaxExponentDigits = 4;  // beyond, the value overflows or rounds up to 1 anyway
    int exponent = 0;
    const char* end = exponent_text.data() + exponent_text.size();
    const auto [parsed_end, error] = std::from_chars(exponent_text.data(), end, exponent);
    if (exponent_text.empty() || exponent_text.size() > kMaxExponentDigits || exponent_text.front() == '-' ||
        error != std::errc() || parsed_end != end) {
      return std::nullopt;
    }
    exponent10 = negative ? -exponent : exponent;
  }

  // Significant digits only: leading zeros dropped, trailing zeros moved into the exponent.
  const size_t first = digits.find_first_not_of('0');
  if (first == std::string::npos) {
    return 0;
  }
  size_t last = digits.size();
  int shift = -fraction_digits;
  while (last > first + 1 && digits[last - 1] == '0') {
    --last;
    ++shift;
  }
  constexpr size_t kMaxSignificantDigits = 19;
  if (last - first > kMaxSignificantDigits) {
    return std::nullopt;
  }
  Uint128 value = 0;
  for (size_t i = first; i < last; ++i) {
    value = value * 10 + static_cast<unsigned>(digits[i] - '0');
  }
  return scaleQuantity(value, exponent10 + shift, binary_power);
}

std::optional<KubePod> parsePod(const std::string& json_text, std::string& why) {
  const Json object = Json::parse(json_text, nullptr, false);
  if (object.is_discarded()) {
    why = "pod is not valid JSON";
    return std::nullopt;
  }
  return parsePodObject(object, why);
}

std::optional<KubeApiEndpoint> inClusterEndpoint(
    const std::function<std::optional<std::string>(const char*)>& env, const std::string& service_account_dir,
    const std::string& node_name, std::string& why) {
  KubeApiEndpoint endpoint;
  const std::optional<std::string> host = env("KUBERNETES_SERVICE_HOST");
  if (!host || host->empty()) {
    why = "KUBERNETES_SERVICE_HOST is not set: not running in a Kubernetes pod";
    return std::nullopt;
  }
  endpoint.host = *host;
  if (const std::optional<std::string> port = env("KUBERNETES_SERVICE_PORT"); port && !port->empty()) {
    unsigned value = 0;
    const char* end = port->data() + port->size();
    const auto [parsed_end, error] = std::from_chars(port->data(), end, value);
    if (error != std::errc() || parsed_end != end || value == 0 || value > 65535) {
      why = "KUBERNETES_SERVICE_PORT is not a port: \"" + *port + "\"";
      return std::nullopt;
    }
    endpoint.port = static_cast<uint16_t>(value);
  }
  if (node_name.empty()) {
    why = "the node name is unknown (set it from the downward API: spec.nodeName)";
    return std::nullopt;
  }
  endpoint.node_name = node_name;
  endpoint.ca_file = service_account_dir + "/ca.crt";
  endpoint.token_file = service_account_dir + "/token";
  for (const std::string* file : {&endpoint.ca_file, &endpoint.token_file}) {
    if (::access(file->c_str(), R_OK) != 0) {
      why = "cannot read " + *file + ": " + std::generic_category().message(errno) +
            " (is automountServiceAccountToken off?)";
      return std::nullopt;
    }
  }
  return endpoint;
}

// --- PodWatch ------------------------------------------------------------------------------------------

// on_log events: "synced" (a list completed), "relist" (410 Gone), "reconnect" (a failure, retried after
// the backoff given in the detail), "auth_failure" (401/403), "pod_skipped" (an object without identity).
struct PodWatch::Impl : std::enable_shared_from_this<PodWatch::Impl> {
  Impl(asio::io_context& io, KubeApiEndpoint endpoint, PodWatchOptions options,
       std::function<void(const PodChange&)> on_change,
       std::function<void(const std::string&, const std::string&)> on_log)
      : io_(io),
        endpoint_(std::move(endpoint)),
        options_(options),
        on_change_(std::move(on_change)),
        on_log_(std::move(on_log)),
        retry_timer_(io),
        backoff_(options.backoff_initial) {}

  void start() {
    if (started_ || stopped_) {
      return;
    }
    started_ = true;
    asio::post(io_, [weak = weak_from_this()] {
      if (const auto self = weak.lock(); self && !self->stopped_) {
        self->run([&] { self->beginList(""); });
      }
    });
  }

  void stop() {
    stopped_ = true;
    ++generation_;
    if (exchange_) {
      exchange_->cancel();
      exchange_.reset();
    }
    try {
      retry_timer_.cancel();
    } catch (const std::exception&) {  // NOLINT(bugprone-empty-catch): nothing can fire after stopped_
    }
  }

  // Runs a step of the state machine; an exception becomes a failure retried like any other.
  template <typename Action>
  void run(Action&& action) {
    guarded(std::forward<Action>(action), [this](const std::string& error) {
      if (!stopped_) {
        abandonExchange();
        retryAfterFailure(error);
      }
    });
  }

  void log(const std::string& event, const std::string& detail) {
    if (!stopped_ && on_log_) {
      on_log_(event, detail);
    }
  }

  // Announces `change`; false when a callback stopped the watch.
  bool announce(const PodChange& change) {
    if (stopped_) {
      return false;
    }
    if (on_change_) {
      on_change_(change);
    }
    return !stopped_;
  }

  void abandonExchange() {
    ++generation_;
    if (exchange_) {
      exchange_->cancel();
      exchange_.reset();
    }
  }

  std::string selectorQuery() const {
    return "fieldSelector=" + percentEncode("spec.nodeName=" + endpoint_.node_name);
  }

  // Sends a GET. A 200 to a streamed request goes line by line to consumeStream, any other body to
  // response_body_; then `on_end` runs with the transport error ("" once the response is complete).
  void send(const std::string& target, bool stream_body, void (Impl::*on_end)(const std::string&)) {
    abandonExchange();
    response_status_ = 0;
    response_body_.clear();
    line_buffer_.clear();
    std::string token;
    std::string error;
    if (!readToken(endpoint_.token_file, token, error)) {
      retryAfterFailure(error);
      return;
    }
    const uint64_t generation = generation_;
    const auto current = [weak = weak_from_this(), generation]() -> std::shared_ptr<Impl> {
      auto self = weak.lock();
      return self && !self->stopped_ && self->generation_ == generation ? self : nullptr;
    };
    HttpsExchange::Callbacks callbacks;
    callbacks.on_header = [current](unsigned status) {
      if (const auto self = current()) {
        self->response_status_ = status;
      }
    };
    callbacks.on_body = [current, stream_body](std::string_view bytes) {
      if (const auto self = current()) {
        self->run([&] { self->onBody(bytes, stream_body); });
      }
    };
    callbacks.on_end = [current, on_end](const std::string& transport_error) {
      if (const auto self = current()) {
        self->exchange_.reset();
        self->run([&] { ((*self).*on_end)(transport_error); });
      }
    };
    exchange_ = std::make_shared<HttpsExchange>(
        io_, endpoint_, std::chrono::duration_cast<Milliseconds>(options_.connect_timeout),
        std::chrono::duration_cast<Milliseconds>(options_.idle_timeout));
    exchange_->start(makeRequest(http::verb::get, target, endpoint_, token), std::move(callbacks));
  }

  void onBody(std::string_view bytes, bool stream_body) {
    if (stream_body && response_status_ == 200) {
      consumeStream(bytes);
      return;
    }
    const size_t cap = response_status_ == 200 ? kMaxListResponseBytes : kMaxErrorBodyBytes;
    if (response_body_.size() + bytes.size() > cap) {
      if (response_status_ == 200) {
        abandonExchange();
        retryAfterFailure("list: response larger than " + std::to_string(cap) + " bytes");
      }
      return;  // an error body: what was kept is enough to describe it
    }
    response_body_.append(bytes);
  }

  // --- list ---

  void beginList(const std::string& continue_token) {
    if (continue_token.empty()) {
      listed_.clear();
      need_list_ = true;
    }
    std::string target = "/api/v1/pods?" + selectorQuery();
    if (options_.list_page_limit > 0) {
      target += "&limit=" + std::to_string(options_.list_page_limit);
    }
    if (!continue_token.empty()) {
      target += "&continue=" + percentEncode(continue_token);
    }
    send(target, false, &Impl::onListEnd);
  }

  void onListEnd(const std::string& error) {
    if (!error.empty()) {
      retryAfterFailure("list: " + error);
      return;
    }
    if (response_status_ != 200) {
      httpFailure("list", response_status_);
      return;
    }
    const Json list = Json::parse(response_body_, nullptr, false);
    response_body_.clear();
    const Json* items = member(list, "items");
    const Json& metadata = objectMember(list, "metadata");
    const std::string resource_version = stringMember(metadata, "resourceVersion");
    if (list.is_discarded() || (items != nullptr && !items->is_array() && !items->is_null()) ||
        resource_version.empty()) {
      retryAfterFailure("list: the response is not a PodList with metadata.resourceVersion");
      return;
    }
    if (items != nullptr && items->is_array()) {
      for (const Json& item : *items) {
        std::string why;
        if (std::optional<KubePod> pod = parsePodObject(item, why)) {
          std::string uid = pod->uid;
          listed_.insert_or_assign(std::move(uid), std::move(*pod));
        } else {
          log("pod_skipped", why);
        }
      }
    }
    if (const std::string next = stringMember(metadata, "continue"); !next.empty()) {
      beginList(next);
      return;
    }
    finishList(resource_version);
  }

  // The cache becomes exactly the list; the differences are announced after.
  void finishList(const std::string& resource_version) {
    std::vector<PodChange> changes;
    for (const auto& [uid, pod] : pods_) {
      if (listed_.find(uid) == listed_.end()) {
        changes.push_back(PodChange{PodChange::Kind::kDeleted, uid});
      }
    }
    for (const auto& [uid, pod] : listed_) {
      const auto it = pods_.find(uid);
      if (it == pods_.end() || !(it->second == pod)) {
        changes.push_back(PodChange{PodChange::Kind::kUpserted, uid});
      }
    }
    pods_ = std::move(listed_);
    listed_.clear();
    need_list_ = false;
    status_.resource_version = resource_version;
    status_.synced = true;
    ++status_.lists;
    log("synced", std::to_string(pods_.size()) + " pods on node " + endpoint_.node_name +
                      " at resourceVersion " + resource_version);
    for (const PodChange& change : changes) {
      if (!announce(change)) {
        return;
      }
    }
    beginWatch();
  }

  // --- watch ---

  void beginWatch() {
    ++status_.watch_starts;
    const std::string target =
        "/api/v1/pods?" + selectorQuery() +
        "&watch=1&allowWatchBookmarks=true&resourceVersion=" + percentEncode(status_.resource_version) +
        "&timeoutSeconds=" + std::to_string(options_.watch_timeout.count());
    send(target, true, &Impl::onWatchEnd);
  }

  void consumeStream(std::string_view bytes) {
    line_buffer_.append(bytes);
    const uint64_t generation = generation_;
    size_t start = 0;
    for (size_t newline = line_buffer_.find('\n'); newline != std::string::npos;
         newline = line_buffer_.find('\n', start)) {
      const std::string line = line_buffer_.substr(start, newline - start);
      start = newline + 1;
      handleWatchLine(line);
      if (stopped_ || generation_ != generation) {
        return;  // the stream was abandoned: line_buffer_ belongs to what came next
      }
    }
    line_buffer_.erase(0, start);
    if (line_buffer_.size() > kMaxWatchLineBytes) {
      abandonExchange();
      retryAfterFailure("watch: an event larger than " + std::to_string(kMaxWatchLineBytes) + " bytes");
    }
  }

  void delivered(const std::string& resource_version) {
    if (!resource_version.empty()) {
      status_.resource_version = resource_version;
    }
    backoff_ = options_.backoff_initial;
    gone_since_delivery_ = false;
  }

  void handleWatchLine(const std::string& line) {
    if (trimmed(line).empty()) {
      return;
    }
    const Json event = Json::parse(line, nullptr, false);
    const Json* object = member(event, "object");
    if (event.is_discarded() || object == nullptr || !object->is_object()) {
      abandonExchange();
      retryAfterFailure("watch: malformed event: " + describeBody(line));
      return;
    }
    const std::string type = stringMember(event, "type");
    const std::string resource_version = stringMember(objectMember(*object, "metadata"), "resourceVersion");
    if (type == "ADDED" || type == "MODIFIED") {
      std::string why;
      std::optional<KubePod> pod = parsePodObject(*object, why);
      delivered(resource_version);
      if (!pod) {
        log("pod_skipped", why);
        return;
      }
      ++status_.events;
      std::string uid = pod->uid;
      pods_.insert_or_assign(uid, std::move(*pod));
      announce(PodChange{PodChange::Kind::kUpserted, std::move(uid)});
    } else if (type == "DELETED") {
      std::string uid = stringMember(objectMember(*object, "metadata"), "uid");
      delivered(resource_version);
      if (uid.empty()) {
        log("pod_skipped", "DELETED event without metadata.uid");
        return;
      }
      ++status_.events;
      if (pods_.erase(uid) > 0) {
        announce(PodChange{PodChange::Kind::kDeleted, std::move(uid)});
      }
    } else if (type == "BOOKMARK") {
      ++status_.bookmarks;
      delivered(resource_version);
    } else if (type == "ERROR") {
      const Json* code = member(*object, "code");
      const std::string message = stringMember(*object, "message");
      abandonExchange();
      if (code != nullptr && code->is_number_integer() && code->get<int64_t>() == 410) {
        relistGone("watch: " + message);
      } else {
        retryAfterFailure("watch: ERROR event" +
                          (code != nullptr && code->is_number_integer()
                               ? " " + std::to_string(code->get<int64_t>())
                               : std::string()) +
                          ": " + message);
      }
    }
    // Other types are from a newer API: ignored.
  }

  void onWatchEnd(const std::string& error) {
    if (response_status_ == 200 || response_status_ == 0) {
      if (!error.empty()) {
        retryAfterFailure("watch: " + error);
        return;
      }
      if (!line_buffer_.empty()) {  // a last event without its newline
        const uint64_t generation = generation_;
        const std::string line = std::move(line_buffer_);
        line_buffer_.clear();
        handleWatchLine(line);
        if (stopped_ || generation_ != generation) {
          return;
        }
      }
      // The server's timeoutSeconds: resume from where the stream stopped (not a failure, not counted).
      scheduleRetry(nextBackoff());
      return;
    }
    httpFailure("watch", response_status_);
  }

  // --- failures ---

  void httpFailure(const std::string& what, unsigned status) {
    const std::string message = describeHttpFailure(what, status, response_body_);
    response_body_.clear();
    if (status == 401 || status == 403) {
      ++status_.auth_failures;
      status_.last_error = message;
      const Milliseconds delay = nextBackoff();
      log("auth_failure", message + "; re-reading the token and retrying in " + milliseconds(delay));
      scheduleRetry(delay);
    } else if (status == 410) {
      relistGone(message);
    } else {
      retryAfterFailure(message);
    }
  }

  // The resourceVersion is too old: list again, at once unless the previous relist got no further.
  void relistGone(const std::string& message) {
    ++status_.relists_gone;
    need_list_ = true;
    if (!gone_since_delivery_) {
      gone_since_delivery_ = true;
      log("relist", message);
      beginList("");
      return;
    }
    const Milliseconds delay = nextBackoff();
    log("relist", message + "; again without progress, relisting in " + milliseconds(delay));
    scheduleRetry(delay);
  }

  void retryAfterFailure(const std::string& error) {
    ++status_.reconnects;
    status_.last_error = error;
    const Milliseconds delay = nextBackoff();
    log("reconnect", error + "; retrying in " + milliseconds(delay));
    scheduleRetry(delay);
  }

  Milliseconds nextBackoff() {
    const Milliseconds delay = backoff_;
    backoff_ = std::min(backoff_ * 2, std::max(options_.backoff_max, options_.backoff_initial));
    return delay;
  }

  void scheduleRetry(Milliseconds delay) {
    abandonExchange();
    const uint64_t generation = generation_;
    retry_timer_.expires_after(delay);
    retry_timer_.async_wait([weak = weak_from_this(), generation](const ErrorCode& ec) {
      const auto self = weak.lock();
      if (ec || !self || self->stopped_ || self->generation_ != generation) {
        return;
      }
      self->run([&] {
        if (self->need_list_ || !self->status_.synced) {
          self->beginList("");
        } else {
          self->beginWatch();
        }
      });
    });
  }

  asio::io_context& io_;
  KubeApiEndpoint endpoint_;
  PodWatchOptions options_;
  std::function<void(const PodChange&)> on_change_;
  std::function<void(const std::string&, const std::string&)> on_log_;
  asio::steady_timer retry_timer_;
  Milliseconds backoff_;
  bool started_ = false;
  bool stopped_ = false;
  bool need_list_ = true;
  bool gone_since_delivery_ = false;
  // Bumped whenever the request in flight is abandoned: callbacks of older requests are ignored.
  uint64_t generation_ = 0;
  std::shared_ptr<HttpsExchange> exchange_;
  unsigned response_status_ = 0;
  std::string response_body_;
  std::string line_buffer_;
  std::map<std::string, KubePod> listed_;  // the pages of the list in progress
  std::map<std::string, KubePod> pods_;
  PodWatchStatus status_;
};

PodWatch::PodWatch(asio::io_context& io, KubeApiEndpoint endpoint, PodWatchOptions options,
                   std::function<void(const PodChange&)> on_change,
                   std::function<void(const std::string& event, const std::string& detail)> on_log)
    : impl_(std::make_shared<Impl>(io, std::move(endpoint), options, std::move(on_change),
                                   std::move(on_log))) {}

PodWatch::~PodWatch() {
  if (impl_) {
    impl_->stop();
  }
}

void PodWatch::start() {
  impl_->start();
}

void PodWatch::stop() {
  impl_->stop();
}

const std::map<std::string, KubePod>& PodWatch::pods() const {
  return impl_->pods_;
}

const KubePod* PodWatch::find(const std::string& uid) const {
  const auto it = impl_->pods_.find(uid);
  return it == impl_->pods_.end() ? nullptr : &it->second;
}

const PodWatchStatus& PodWatch::status() const {
  return impl_->status_;
}

// --- EventRecorder -------------------------------------------------------------------------------------

// status().queued counts the events accepted by report() (sent + failed + still queued); an event being
// sent still takes its place in the queue. A 409 (AlreadyExists: an earlier attempt of the same event got
// through) counts as sent. 401, 403, 408, 429, 5xx and transport failures are retried; other refusals
// fail at once.
struct EventRecorder::Impl : std::enable_shared_from_this<EventRecorder::Impl> {
  struct Pending {
    PodEventReport report;
    std::string name;
    std::string timestamp;
  };

  Impl(asio::io_context& io, KubeApiEndpoint endpoint, std::string component, size_t max_queued,
       unsigned attempts)
      : io_(io),
        endpoint_(std::move(endpoint)),
        component_(std::move(component)),
        max_queued_(max_queued),
        attempts_(std::max(attempts, 1U)),
        retry_timer_(io) {}

  void report(PodEventReport event) {
    if (stopped_ || queue_.size() >= max_queued_) {
      ++status_.dropped;
      status_.last_error =
          stopped_ ? "event recorder stopped" : "event queue full (" + std::to_string(max_queued_) + ")";
      return;
    }
    Pending pending{std::move(event), "", rfc3339Utc(std::chrono::system_clock::now())};
    pending.name = eventName(pending.report.pod_name);
    queue_.push_back(std::move(pending));
    ++status_.queued;
    if (!busy_) {
      sendFront();
    }
  }

  void stop() {
    stopped_ = true;
    ++generation_;
    if (exchange_) {
      exchange_->cancel();
      exchange_.reset();
    }
    try {
      retry_timer_.cancel();
    } catch (const std::exception&) {  // NOLINT(bugprone-empty-catch): nothing can fire after stopped_
    }
  }

  // "<pod>.<16 hex digits>": the wall clock in ns, as kubelet names its events, made unique here.
  std::string eventName(const std::string& pod_name) {
    const auto now_ns = static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                                  std::chrono::system_clock::now().time_since_epoch())
                                                  .count());
    last_name_ns_ = std::max(now_ns, last_name_ns_ + 1);
    constexpr size_t kSuffixBytes = 17;
    return pod_name.substr(0, kMaxObjectNameBytes - kSuffixBytes) + "." + hex16(last_name_ns_);
  }

  std::string eventJson(const Pending& pending) const {
    const PodEventReport& report = pending.report;
    Json involved = {{"apiVersion", "v1"},
                     {"kind", "Pod"},
                     {"namespace", report.namespace_name},
                     {"name", report.pod_name}};
    if (!report.pod_uid.empty()) {
      involved["uid"] = report.pod_uid;
    }
    Json source = {{"component", component_}};
    if (!endpoint_.node_name.empty()) {
      source["host"] = endpoint_.node_name;
    }
    Json event = {{"apiVersion", "v1"},
                  {"kind", "Event"},
                  {"metadata", {{"name", pending.name}, {"namespace", report.namespace_name}}},
                  {"involvedObject", std::move(involved)},
                  {"reason", report.reason},
                  {"message", truncateUtf8(report.message, kMaxEventMessageBytes)},
                  {"type", report.type},
                  {"source", std::move(source)},
                  {"firstTimestamp", pending.timestamp},
                  {"lastTimestamp", pending.timestamp},
                  {"count", 1},
                  {"reportingComponent", component_}};
    if (!endpoint_.node_name.empty()) {
      event["reportingInstance"] = endpoint_.node_name;
    }
    return event.dump(-1, ' ', false, Json::error_handler_t::replace);
  }

  void sendFront() {
    busy_ = true;
    ++attempt_;
    guarded([this] { sendAttempt(); }, [this](const std::string& error) { attemptFailed(error, false); });
  }

  void sendAttempt() {
    std::string token;
    std::string error;
    if (!readToken(endpoint_.token_file, token, error)) {
      attemptFailed(error, true);
      return;
    }
    const Pending& pending = queue_.front();
    auto request = makeRequest(
        http::verb::post, "/api/v1/namespaces/" + percentEncode(pending.report.namespace_name) + "/events",
        endpoint_, token);
    request.set(http::field::content_type, "application/json");
    request.body() = eventJson(pending);
    request.prepare_payload();

    response_status_ = 0;
    response_body_.clear();
    const uint64_t generation = ++generation_;
    const auto current = [weak = weak_from_this(), generation]() -> std::shared_ptr<Impl> {
      auto self = weak.lock();
      return self && !self->stopped_ && self->generation_ == generation ? self : nullptr;
    };
    HttpsExchange::Callbacks callbacks;
    callbacks.on_header = [current](unsigned status) {
      if (const auto self = current()) {
        self->response_status_ = status;
      }
    };
    callbacks.on_body = [current](std::string_view bytes) {
      if (const auto self = current();
          self && self->response_body_.size() + bytes.size() <= kMaxErrorBodyBytes) {
        self->response_body_.append(bytes);
      }
    };
    callbacks.on_end = [current](const std::string& transport_error) {
      if (const auto self = current()) {
        self->exchange_.reset();
        guarded([&] { self->onEnd(transport_error); },
                [&](const std::string& error_text) { self->attemptFailed(error_text, false); });
      }
    };
    exchange_ = std::make_shared<HttpsExchange>(io_, endpoint_, kEventConnectTimeout, kEventIdleTimeout);
    exchange_->start(std::move(request), std::move(callbacks));
  }

  void onEnd(const std::string& error) {
    if (!error.empty()) {
      attemptFailed("event: " + error, true);
      return;
    }
    const unsigned status = response_status_;
    if ((status >= 200 && status < 300) || status == 409) {
      ++status_.sent;
      next();
      return;
    }
    const bool retryable = status == 401 || status == 403 || status == 408 || status == 429 || status >= 500;
    attemptFailed(describeHttpFailure("event", status, response_body_), retryable);
  }

  void attemptFailed(const std::string& error, bool retryable) {
    status_.last_error = error;
    if (stopped_) {
      return;
    }
    if (retryable && attempt_ < attempts_) {
      const Milliseconds delay = kEventRetryInitial * (1U << std::min(attempt_ - 1, 10U));
      const uint64_t generation = ++generation_;
      retry_timer_.expires_after(delay);
      retry_timer_.async_wait([weak = weak_from_this(), generation](const ErrorCode& ec) {
        const auto self = weak.lock();
        if (!ec && self && !self->stopped_ && self->generation_ == generation) {
          self->sendFront();
        }
      });
      return;
    }
    ++status_.failed;
    next();
  }

  void next() {
    queue_.pop_front();
    attempt_ = 0;
    busy_ = false;
    if (!queue_.empty() && !stopped_) {
      sendFront();
    }
  }

  asio::io_context& io_;
  KubeApiEndpoint endpoint_;
  std::string component_;
  size_t max_queued_;
  unsigned attempts_;
  asio::steady_timer retry_timer_;
  std::deque<Pending> queue_;  // the front is the one being sent while busy_
  bool busy_ = false;
  bool stopped_ = false;
  unsigned attempt_ = 0;
  uint64_t generation_ = 0;
  uint64_t last_name_ns_ = 0;
  std::shared_ptr<HttpsExchange> exchange_;
  unsigned response_status_ = 0;
  std::string response_body_;
  EventRecorderStatus status_;
};

EventRecorder::EventRecorder(asio::io_context& io, KubeApiEndpoint endpoint, std::string component,
                             size_t max_queued, unsigned attempts)
    : impl_(std::make_shared<Impl>(io, std::move(endpoint), std::move(component), max_queued, attempts)) {}

EventRecorder::~EventRecorder() {
  if (impl_) {
    impl_->stop();
  }
}

void EventRecorder::report(PodEventReport event) {
  impl_->report(std::move(event));
}

void EventRecorder::stop() {
  impl_->stop();
}

const EventRecorderStatus& EventRecorder::status() const {
  return impl_->status_;
}

}  // namespace oomguard::guardian
