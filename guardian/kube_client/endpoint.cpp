// The API server's endpoint (endpoint.hpp).
#include "guardian/kube_client/endpoint.hpp"

#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <fstream>
#include <sstream>
#include <system_error>

#include "guardian/kube_client/api_text.hpp"

namespace oomguard::guardian::kube_client {

cgroupfs::Result<KubeApiEndpoint> inClusterEndpoint(
    const std::function<std::optional<std::string>(const char*)>& env, const std::string& service_account_dir,
    const std::string& node_name) {
  KubeApiEndpoint endpoint;
  const std::optional<std::string> host = env("KUBERNETES_SERVICE_HOST");
  if (!host || host->empty()) {
    return cgroupfs::parseError("KUBERNETES_SERVICE_HOST is not set: not running in a Kubernetes pod");
  }
  endpoint.host = *host;
  if (const std::optional<std::string> port = env("KUBERNETES_SERVICE_PORT"); port && !port->empty()) {
    unsigned value = 0;
    const char* end = port->data() + port->size();
    const auto [parsed_end, error] = std::from_chars(port->data(), end, value);
    if (error != std::errc() || parsed_end != end || value == 0 || value > 65535) {
      return cgroupfs::parseError("KUBERNETES_SERVICE_PORT is not a port: \"" + *port + "\"");
    }
    endpoint.port = static_cast<uint16_t>(value);
  }
  if (node_name.empty()) {
    return cgroupfs::parseError("the node name is unknown (set it from the downward API: spec.nodeName)");
  }
  endpoint.node_name = node_name;
  endpoint.ca_file = service_account_dir + "/ca.crt";
  endpoint.token_file = service_account_dir + "/token";
  for (const std::string* file : {&endpoint.ca_file, &endpoint.token_file}) {
    if (::access(file->c_str(), R_OK) != 0) {
      return cgroupfs::parseError("cannot read " + *file + ": " + std::generic_category().message(errno) +
                                  " (is automountServiceAccountToken off?)");
    }
  }
  return endpoint;
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

}  // namespace oomguard::guardian::kube_client
