#include "guardian/features.hpp"

#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstring>

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_pidfd_send_signal
#define SYS_pidfd_send_signal 424
#endif
#ifndef SYS_process_mrelease
#define SYS_process_mrelease 448
#endif

namespace oomguard::guardian {
namespace {

std::string reasonFor(int error) {
  return error == ENOSYS ? std::string("not in this kernel (ENOSYS)")
                         : std::string("probe failed: ") + std::strerror(error);  // NOLINT(concurrency-mt-unsafe)
}

}  // namespace

KernelFeatures probeKernelFeatures() {
  KernelFeatures features;
  const long pidfd = ::syscall(SYS_pidfd_open, ::getpid(), 0);
  if (pidfd >= 0) {
    features.pidfd_open = true;
    // Signal 0 to ourselves through the pidfd: checks the call exists without side effects.
    if (::syscall(SYS_pidfd_send_signal, static_cast<int>(pidfd), 0, nullptr, 0) == 0) {
      features.pidfd_send_signal = true;
    } else {
      features.pidfd_send_signal_reason = reasonFor(errno);
    }
    // On ourselves (not dying), process_mrelease answers EINVAL when it exists.
    if (::syscall(SYS_process_mrelease, static_cast<int>(pidfd), 0) == 0 || errno == EINVAL) {
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

}  // namespace oomguard::guardian
