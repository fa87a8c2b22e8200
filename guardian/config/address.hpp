// The one parser of host:port text: the metrics listen address and the Kubernetes API server URL.
// Errors as values (cgroupfs::Result; the message says what is wrong and quotes the input).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "cgroupfs/result.hpp"

namespace oomguard::guardian::config {

struct HostPort {
  std::string host;  // without brackets: "127.0.0.1", "::1", "kubernetes.default.svc"
  uint16_t port = 0;
  bool ipv6 = false;
  // "127.0.0.1:9743" or "[::1]:9743": the form it was given in.
  [[nodiscard]] std::string text() const;
};

// A listen address: a numeric IPv4 address in dotted-quad form (each part 0..255, as inet_pton(3)
// takes it) or a bracketed numeric IPv6 address, a colon, and a port 0..65535 (0: any free port).
// Host names are refused: a listen address must say exactly which interface it exposes.
cgroupfs::Result<HostPort> parseListenAddress(std::string_view text);

// "https://HOST[:PORT][/]": HOST a DNS name (letters, digits, '-', '.'), a dotted-quad IPv4 address or
// a bracketed IPv6 address; PORT 1..65535, default 443.
cgroupfs::Result<HostPort> parseHttpsUrl(std::string_view url);

}  // namespace oomguard::guardian::config
