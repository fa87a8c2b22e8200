// Probes of the running kernel's OOM-relevant features. These look at the kernel this process runs on,
// whatever roots the command was given.
#pragma once

#include <string>

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

}  // namespace oomguard::guardian::io
