#include "guardian/config/tenant.hpp"

#include <algorithm>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "guardian/config/glob.hpp"

namespace oomguard::guardian::config {

bool namespaceGlobMatches(std::string_view glob, std::string_view name) { return globMatch(glob, name); }

bool mayEscalate(const TenantPolicy& tenant, std::string_view namespace_name) {
  return std::any_of(tenant.protected_namespaces.begin(), tenant.protected_namespaces.end(),
                     [&](const std::string& glob) { return namespaceGlobMatches(glob, namespace_name); });
}

TenantPolicy parseTenantPolicy(const nlohmann::json& value) {
  if (!value.is_object()) {
    throw std::invalid_argument("must be an object");
  }
  TenantPolicy tenant;
  for (const auto& [key, item] : value.items()) {
    if (key == "protected_namespaces") {
      if (!item.is_array()) {
        throw std::invalid_argument("/protected_namespaces: must be an array of namespace globs");
      }
      for (size_t i = 0; i < item.size(); ++i) {
        const std::string glob = item[i].is_string() ? item[i].get<std::string>() : std::string();
        const bool valid =
            !glob.empty() && glob.size() <= 63 && std::all_of(glob.begin(), glob.end(), [](char c) {
              return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '*' || c == '?';
            });
        if (!valid) {
          throw std::invalid_argument("/protected_namespaces/" + std::to_string(i) +
                                      ": must be a namespace name or glob (a-z, 0-9, '-', '*', '?')");
        }
        tenant.protected_namespaces.push_back(glob);
      }
    } else if (key == "tenant_max_sigterm_grace_seconds") {
      if (!item.is_number_unsigned() || item.get<uint64_t>() > kMaxSigtermGraceSeconds) {
        throw std::invalid_argument("/tenant_max_sigterm_grace_seconds: must be a whole number from 0 to " +
                                    std::to_string(kMaxSigtermGraceSeconds));
      }
      tenant.tenant_max_sigterm_grace_seconds = item.get<uint32_t>();
    } else {
      throw std::invalid_argument("/" + key + ": unknown key");
    }
  }
  return tenant;
}

}  // namespace oomguard::guardian::config
