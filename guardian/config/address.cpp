#include "guardian/config/address.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <charconv>

namespace oomguard::guardian::config {
namespace {

std::string quoted(std::string_view text) { return "\"" + std::string(text) + "\""; }

// Digits only, no sign or space, within [min, 65535].
bool parsePort(std::string_view digits, uint16_t min, uint16_t& port) {
  if (digits.empty() || digits.size() > 5 || !std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return false;
  }
  unsigned value = 0;
  std::from_chars(digits.data(), digits.data() + digits.size(), value);
  if (value < min || value > 65535) {
    return false;
  }
  port = static_cast<uint16_t>(value);
  return true;
}

bool isIpv4(const std::string& host) {
  in_addr address{};
  return ::inet_pton(AF_INET, host.c_str(), &address) == 1;
}

bool isIpv6(const std::string& host) {
  in6_addr address{};
  return ::inet_pton(AF_INET6, host.c_str(), &address) == 1;
}

bool isDnsName(std::string_view host) {
  if (host.empty() || host.size() > 253 || host.front() == '.' || host.front() == '-') {
    return false;
  }
  return std::all_of(host.begin(), host.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '.';
  });
}

// "HOST:PORT" or "[V6]:PORT" split; the host without brackets. `port_optional`: "HOST" alone is fine.
bool split(std::string_view text, bool port_optional, std::string& host, std::string_view& port, bool& bracketed) {
  bracketed = !text.empty() && text.front() == '[';
  if (bracketed) {
    const auto close = text.find(']');
    if (close == std::string_view::npos) {
      return false;
    }
    host = std::string(text.substr(1, close - 1));
    const auto rest = text.substr(close + 1);
    if (rest.empty()) {
      port = {};
      return port_optional;
    }
    if (rest.front() != ':') {
      return false;
    }
    port = rest.substr(1);
    return true;
  }
  const auto colon = text.find(':');
  if (colon == std::string_view::npos) {
    host = std::string(text);
    port = {};
    return port_optional;
  }
  host = std::string(text.substr(0, colon));
  port = text.substr(colon + 1);
  return true;
}

}  // namespace

std::string HostPort::text() const {
  return (ipv6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

cgroupfs::Result<HostPort> parseListenAddress(std::string_view text) {
  std::string host;
  std::string_view port;
  bool bracketed = false;
  if (!split(text, false, host, port, bracketed)) {
    return cgroupfs::parseError("must be ADDRESS:PORT (an IPv4 address or a bracketed IPv6 address), got " + quoted(text));
  }
  HostPort out;
  if (!parsePort(port, 0, out.port)) {
    return cgroupfs::parseError("port must be 0..65535, got " + quoted(port));
  }
  if (bracketed ? !isIpv6(host) : !isIpv4(host)) {
    return cgroupfs::parseError("address must be a numeric IPv4 address (four parts 0..255) or a bracketed numeric IPv6 "
                                "address, got " + quoted(bracketed ? "[" + host + "]" : host));
  }
  out.host = std::move(host);
  out.ipv6 = bracketed;
  return out;
}

cgroupfs::Result<HostPort> parseHttpsUrl(std::string_view url) {
  constexpr std::string_view kScheme = "https://";
  if (!url.starts_with(kScheme)) {
    return cgroupfs::parseError("must be https://HOST[:PORT], got " + quoted(url));
  }
  std::string_view rest = url.substr(kScheme.size());
  if (rest.ends_with('/')) {
    rest.remove_suffix(1);
  }
  std::string host;
  std::string_view port;
  bool bracketed = false;
  if (rest.empty() || rest.find('/') != std::string_view::npos || !split(rest, true, host, port, bracketed)) {
    return cgroupfs::parseError("must be https://HOST[:PORT] with no path, got " + quoted(url));
  }
  HostPort out;
  out.port = 443;
  if (!port.empty() || rest.ends_with(':')) {
    if (!parsePort(port, 1, out.port)) {
      return cgroupfs::parseError("port must be 1..65535, got " + quoted(port));
    }
  }
  const bool valid = bracketed ? isIpv6(host) : (isIpv4(host) || (isDnsName(host) && !std::all_of(host.begin(), host.end(), [](char c) {
                                                                   return (c >= '0' && c <= '9') || c == '.';
                                                                 })));
  if (!valid) {
    return cgroupfs::parseError("host must be a DNS name, an IPv4 address or a bracketed IPv6 address, got " +
                                quoted(bracketed ? "[" + host + "]" : host));
  }
  out.host = std::move(host);
  out.ipv6 = bracketed;
  return out;
}

}  // namespace oomguard::guardian::config
