// What every part of the daemon shares: its options, its counters and the injected clocks. Each part
// (watch_set, rankings, decider, executor, oom_reports, pods, decision_log) is built by Daemon with
// references to these and to the config in force (replaced in place on reload).
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "guardian/io/service_notify.hpp"

namespace oomguard::guardian::daemon {

struct DaemonOptions {
  std::string proc_root = "/proc";
  std::string cgroup_root = "/sys/fs/cgroup";
  std::string kmsg_path = "/dev/kmsg";
  std::optional<std::string> config_path;  // for SIGHUP reloads
  // --metrics-listen: overrides metrics.listen at start and in every reloaded config.
  std::optional<std::string> metrics_listen;
  bool dry_run = false;
  bool handle_signals = true;
  bool protect_self = true;  // apply config.self (mlockall, oom_score_adj)
  // systemd Type=notify: READY=1 once every domain is ranked, RELOADING=1 / STOPPING=1, and the
  // watchdog pinged from the event loop itself (a stuck loop stops the pings and is restarted).
  io::NotifySettings notify;
};

// What the daemon has done so far; read by tests and logged with the watch set.
struct DaemonStats {
  uint64_t pressure_events = 0;
  uint64_t memory_events = 0;
  uint64_t decisions = 0;
  uint64_t level_reads = 0;  // readings of a level threshold (the adaptive watch)
  uint64_t allocation_reads = 0;  // readings of the host's allocations (/proc/vmstat), for the same watch
  uint64_t refreshes = 0;
  uint64_t kernel_oom_kills = 0;
  uint64_t predictions_match = 0;
  uint64_t predictions_mismatch = 0;
  uint64_t predictions_missing = 0;
  uint64_t cgroups_added = 0;
  uint64_t cgroups_removed = 0;
  uint64_t read_errors = 0;
  uint64_t kills = 0;
  uint64_t kills_held = 0;       // a threshold was crossed but the kill gate refused
  uint64_t kills_no_data = 0;    // a decision that could not read what it needed: no kill
  uint64_t warnings = 0;         // an act rule's warn level crossed (Daemon::warn)
  uint64_t protections_applied = 0;
};

// Microseconds on CLOCK_MONOTONIC: the clock the kernel stamps kmsg records with, and every time the
// daemon keeps (event arrival, victim waits, level schedules).
using MonotonicClock = std::function<uint64_t()>;
uint64_t monotonicNowUs();
// Clock ticks since boot on CLOCK_BOOTTIME, the clock of /proc/<pid>/stat's starttime: a kernel
// timestamp to compare a process's start with, not the daemon's scheduling clock.
using BootTicksClock = std::function<uint64_t()>;
uint64_t bootTicksNow();

struct Clock {
  MonotonicClock monotonic_us = monotonicNowUs;
  BootTicksClock boot_ticks = bootTicksNow;
};

}  // namespace oomguard::guardian::daemon
