// Probes of the running kernel's OOM-relevant features. These look at the kernel this process runs on,
// whatever roots the command was given.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace oomguard::guardian::io {

struct KernelFeatures {
  bool pidfd_open = false;        // 5.3
  bool pidfd_send_signal = false; // 5.1
  bool process_mrelease = false;  // 5.15
  std::string pidfd_open_reason;  // why not, when false
  std::string pidfd_send_signal_reason;
  std::string process_mrelease_reason;
};

KernelFeatures probeKernelFeatures();

// This process's effective capabilities (capget(2): this process's own, whatever --proc-root says), or
// nullopt when the call fails.
std::optional<uint64_t> ownEffectiveCapabilities();

// What each mode needs beyond observing, measured action by action as uid 0 (docs/config.md, "Running
// as a service"): signalling another user's process needs CAP_KILL; writing its oom_score_adj, or a file
// in a cgroup subtree delegated to a user, CAP_DAC_OVERRIDE; lowering an oom_score_adj (protections, the
// daemon's own -1000) and PSI windows not a multiple of 2 s, CAP_SYS_RESOURCE. Cgroup files, sysctls
// and the panic trigger belong to root and need no capability beyond uid 0.
struct CapabilityCheck {
  std::vector<std::string> refused;  // mode act cannot work without these: it is refused
  std::vector<std::string> degraded;  // what works less without these, one line each
};
CapabilityCheck checkActCapabilities(uint64_t effective);

}  // namespace oomguard::guardian::io
