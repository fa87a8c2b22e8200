// The pidfd family of system calls, by number: glibc 2.36 (Debian 12) wraps pidfd_open and
// pidfd_send_signal but not process_mrelease, and older headers lack the numbers.
#pragma once

#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_pidfd_send_signal
#define SYS_pidfd_send_signal 424
#endif
#ifndef SYS_process_mrelease
#define SYS_process_mrelease 448
#endif

namespace oomguard::guardian::io {

// Each returns what the system call returns (-1 with errno on failure).
inline int pidfdOpen(pid_t pid) { return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)); }
inline int pidfdSendSignal(int pidfd, int signal) {
  return static_cast<int>(::syscall(SYS_pidfd_send_signal, pidfd, signal, nullptr, 0));
}
inline int processMrelease(int pidfd) { return static_cast<int>(::syscall(SYS_process_mrelease, pidfd, 0)); }

}  // namespace oomguard::guardian::io
