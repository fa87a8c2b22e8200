// Where the Kubernetes API server is and how to authenticate to it: the endpoint PodWatch and
// EventRecorder talk to, found in-cluster from the service environment and the service account's files.
#pragma once

#include "cgroupfs/result.hpp"

#include <cstdint>
#include <functional>
#include <optional>
#include <string>

namespace oomguard::guardian::kube_client {

// Where the API server is and how to authenticate to it.
struct KubeApiEndpoint {
  std::string host;  // an IP or a name; also the TLS server name checked (SNI + verification)
  uint16_t port = 443;
  std::string ca_file;     // PEM bundle the server certificate must chain to
  std::string token_file;  // bearer token, re-read for every request; empty = no Authorization
  std::string node_name;   // spec.nodeName of the pods to watch
  std::string user_agent = "oomguard";
};

// The in-cluster endpoint: KUBERNETES_SERVICE_HOST / KUBERNETES_SERVICE_PORT from `env` (a lookup, so
// tests inject it), the service account's ca.crt and token under `service_account_dir`
// (/var/run/secrets/kubernetes.io/serviceaccount). an error saying what is missing.
cgroupfs::Result<KubeApiEndpoint> inClusterEndpoint(
    const std::function<std::optional<std::string>(const char*)>& env, const std::string& service_account_dir,
    const std::string& node_name);

// "host:port", an IPv6 host in brackets.
std::string hostPort(const KubeApiEndpoint& endpoint);
// The Host header: the port is left out when it is the scheme's default.
std::string hostHeader(const KubeApiEndpoint& endpoint);
// The bearer token, or "" when no token file is configured. False with `error` when it cannot be read.
bool readToken(const std::string& token_file, std::string& token, std::string& error);

}  // namespace oomguard::guardian::kube_client
