#include "guardian/io/features.hpp"

#include "guardian/io/syscalls.hpp"

#include <unistd.h>

#include <linux/capability.h>
#include <sys/syscall.h>

#include <array>
#include <cerrno>
#include <csignal>
#include <cstring>

namespace oomguard::guardian::io {
namespace {

std::string reasonFor(int error) {
  return error == ENOSYS ? std::string("not in this kernel (ENOSYS)")
                         : std::string("probe failed: ") + std::strerror(error);  // NOLINT(concurrency-mt-unsafe)
}

}  // namespace

KernelFeatures probeKernelFeatures() {
  KernelFeatures features;
  const long pidfd = pidfdOpen(::getpid());
  if (pidfd >= 0) {
    features.pidfd_open = true;
    // Signal 0 to ourselves through the pidfd: checks the call exists without side effects.
    if (pidfdSendSignal(static_cast<int>(pidfd), 0) == 0) {
      features.pidfd_send_signal = true;
    } else {
      features.pidfd_send_signal_reason = reasonFor(errno);
    }
    // On ourselves (not dying), process_mrelease answers EINVAL when it exists.
    if (processMrelease(static_cast<int>(pidfd)) == 0 || errno == EINVAL) {
      features.process_mrelease = true;
    } else {
      features.process_mrelease_reason = reasonFor(errno);
    }
    ::close(static_cast<int>(pidfd));
  } else {
    features.pidfd_open_reason = reasonFor(errno);
    features.pidfd_send_signal_reason = "needs pidfd_open";
    features.process_mrelease_reason = "needs pidfd_open";
  }
  return features;
}

std::optional<uint64_t> ownEffectiveCapabilities() {
  // capget(2) for this thread, in the 64-bit layout (two 32-bit words).
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  std::array<__user_cap_data_struct, 2> data{};
  if (::syscall(SYS_capget, &header, data.data()) != 0) {
    return std::nullopt;
  }
  return static_cast<uint64_t>(data[0].effective) | static_cast<uint64_t>(data[1].effective) << 32U;
}

CapabilityCheck checkActCapabilities(uint64_t effective) {
  auto has = [effective](int cap) { return (effective >> cap & 1U) != 0; };
  CapabilityCheck check;
  if (!has(CAP_KILL)) {
    check.refused.emplace_back("CAP_KILL (to signal the processes of other users: the kill itself)");
  }
  if (!has(CAP_DAC_OVERRIDE)) {
    check.degraded.emplace_back(
        "no CAP_DAC_OVERRIDE: oom_score_adj of other users' processes and cgroup files of delegated subtrees "
        "cannot be written (their protections fail)");
  }
  if (!has(CAP_SYS_RESOURCE)) {
    check.degraded.emplace_back(
        "no CAP_SYS_RESOURCE: oom_score_adj cannot be lowered (protections, the daemon's own -1000 fail)");
  }
  return check;
}

}  // namespace oomguard::guardian::io
