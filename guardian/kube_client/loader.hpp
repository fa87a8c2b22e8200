// Loads the Kubernetes TLS client module (guardian/kube_tls, liboomguard_kube_tls.so) from
// <directory of the running executable>/../lib/oomguard/: /usr/lib/oomguard/ beside /usr/bin/oomguard,
// build/lib/oomguard/ beside build/bin/ in a build tree. Called only when kubernetes.enabled; a node
// without Kubernetes never maps OpenSSL.
#pragma once

#include <string>

#include "guardian/kube_client/client.hpp"

namespace oomguard::guardian::kube_client {

struct LoadedTlsClient {
  const TlsClient* client = nullptr;  // null when it could not be loaded (then `error` says why)
  std::string path;                   // the module's file
  std::string error;
};

// dlopen()s the module (once per process in effect: the loader counts references and the module is
// never closed) and returns its client.
LoadedTlsClient loadTlsClient();

}  // namespace oomguard::guardian::kube_client
