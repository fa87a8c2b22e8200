// The operator's side of tenant safety (config kubernetes.tenant): which namespaces' pods may ask, through
// their oomguard.io annotations, for more protection than kubelet gives them.
#pragma once

#include <cstdint>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <string_view>
#include <vector>

namespace oomguard::guardian::config {

// The longest SIGTERM grace a pod may ask for (oomguard.io/v1.sigterm-grace-seconds), and the bound of
// tenant_max_sigterm_grace_seconds.
inline constexpr uint32_t kMaxSigtermGraceSeconds = 120;

struct TenantPolicy {
  // Namespaces (globs: '*' any run of characters, '?' one) whose pods may ask for more protection:
  // protection critical or high, an oom-score-adj below kubelet's, preference avoid or omit, or a
  // SIGTERM grace longer than tenant_max_sigterm_grace_seconds.
  std::vector<std::string> protected_namespaces;
  uint32_t tenant_max_sigterm_grace_seconds = 10;
};

bool namespaceGlobMatches(std::string_view glob, std::string_view namespace_name);
bool mayEscalate(const TenantPolicy& tenant, std::string_view namespace_name);

// Reads {"protected_namespaces": [...], "tenant_max_sigterm_grace_seconds": N}; throws
// std::invalid_argument naming the key for anything else.
TenantPolicy parseTenantPolicy(const nlohmann::json& value);

}  // namespace oomguard::guardian::config
