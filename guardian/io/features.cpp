#include "guardian/io/features.hpp"

#include "guardian/io/syscalls.hpp"

#include <unistd.h>

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

}  // namespace oomguard::guardian::io
