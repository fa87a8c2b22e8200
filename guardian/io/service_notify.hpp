// The service manager's notify protocol (systemd's sd_notify(3), `Type=notify`): state lines sent as
// one datagram each to the AF_UNIX socket named by $NOTIFY_SOCKET ("@name" is the abstract namespace),
// and the watchdog interval systemd asks for in $WATCHDOG_USEC (for the pid in $WATCHDOG_PID, when
// set). Written here rather than linked from libsystemd: the protocol is one sendto() of a few bytes,
// and libsystemd would bring five more libraries into the scratch image for it.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace oomguard::guardian::io {

struct NotifySettings {
  std::string socket_path;                // empty: no service manager listens; every send is a no-op
  std::optional<uint64_t> watchdog_us;    // the watchdog timeout systemd set (WatchdogSec=), if any
};

// Reads NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID (a watchdog meant for another pid is not
// ours: a child started by the service inherits the variables). Malformed values count as unset.
NotifySettings notifySettingsFromEnvironment(int self_pid);

class ServiceNotifier {
 public:
  explicit ServiceNotifier(NotifySettings settings) : settings_(std::move(settings)) {}
  [[nodiscard]] bool enabled() const { return !settings_.socket_path.empty(); }
  [[nodiscard]] std::optional<uint64_t> watchdogUs() const { return settings_.watchdog_us; }
  // Sends `state` (newline-separated KEY=VALUE lines, e.g. "READY=1\nSTATUS=..."). Returns "" when sent
  // or when no manager listens, else why not (the daemon logs it once; it never stops for it).
  [[nodiscard]] std::string send(std::string_view state) const;

 private:
  NotifySettings settings_;
};

}  // namespace oomguard::guardian::io
