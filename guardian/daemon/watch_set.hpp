// The cgroups the daemon watches and what it watches in each: the directory (inotify: children come and
// go), memory.events and memory.events.local (inotify IN_MODIFY), the PSI trigger of the cgroup's rule,
// and its limit (memory.max: a finite one makes the cgroup an OOM domain). Also the host's PSI trigger.
// Events are passed on to the Listener; nothing here decides.
#pragma once

#include <boost/asio/io_context.hpp>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "cgroupfs/types.hpp"
#include "guardian/config/config.hpp"
#include "guardian/daemon/context.hpp"
#include "guardian/io/event_log.hpp"
#include "guardian/io/node.hpp"
#include "guardian/io/watchers.hpp"

namespace oomguard::guardian::daemon {

struct WatchedCgroup {
  int directory_wd = -1;
  int events_wd = -1;
  int events_local_wd = -1;
  cgroupfs::MemoryEvents events;
  cgroupfs::MemoryEvents events_local;
  uint64_t added_us = 0;
  bool limited = false;  // memory.max is finite: an OOM domain
  std::optional<uint64_t> memory_max_bytes;
  cgroupfs::LimitBytes swap_max_bytes;
  std::shared_ptr<io::PressureWatch> pressure;
  bool pressure_pending = false;  // a trigger is wanted but not safe to write yet (see armablePressure)
  bool pressure_waits_for_fd = false;  // ... or armable, but no descriptor is left for it (FdBudget)
  bool preexisting = false;       // found by the start-up walk: its age is unknown, not young
  uint8_t young_probes = 0;       // limit probes done since it appeared (probeYoungLimits)
};

// What rose in a memory.events file since it was last read.
struct EventsRise {
  cgroupfs::MemoryEvents now;
  std::vector<std::pair<std::string, uint64_t>> rose;  // key -> increment, in the file's order
};

class WatchSet {
 public:
  class Listener {
   public:
    virtual ~Listener() = default;
    virtual void onMemoryEvents(const std::string& cgroup, bool local) = 0;
    // `cgroup` "/" is the host. `gone`: the trigger's file went away (the cgroup was removed).
    virtual void onPressure(const std::string& cgroup, bool gone, const std::string& text) = 0;
    // The cgroup is not an OOM domain (any more): removed, or its limit lifted.
    virtual void onDomainGone(const std::string& cgroup) = 0;
    // The cgroup left the watch set (after onDomainGone).
    virtual void onCgroupRemoved(const std::string& cgroup) = 0;
    // An inotify event reached the loop (the reaction clock starts here).
    virtual void onEventArrived() = 0;
    // A cgroup appeared while running, without a limit yet: its limit probes are due (probeYoungLimits).
    virtual void onYoungCgroup() = 0;
    // A cgroup became an OOM domain between refreshes: it appeared with a limit, a young probe or an
    // event found one. The refresh would make it a domain only up to refresh_interval_s later.
    virtual void onDomainFound(const std::string& cgroup) = 0;
  };

  WatchSet(boost::asio::io_context& io, io::Node& node, const config::Config& config, io::EventLog& log,
           DaemonStats& stats, const Clock& clock, Listener& listener);

  // Opens inotify (a failure is logged; the daemon then runs on its refresh alone).
  void open();
  // Re-arms the host's PSI trigger from the config in force.
  void armHost();
  // Adds `path` and every cgroup below it; applies the rule of each.
  void add(const std::string& path);
  // Removes `path` and everything below it.
  void remove(const std::string& path);
  // After an inotify overflow: drops what is gone, adds what is new.
  void resync();
  // After a reload: every cgroup's rule (watches, trigger) re-applied, the host trigger re-armed.
  void reapply();
  // At each refresh: re-reads limits (young cgroups every time, the rest on `full_scan`, and all of them
  // when the host's swap has just appeared) and retries pending triggers. `swap_total_kb`: SwapTotal
  // from /proc/meminfo read just before. Returns the limited cgroups, in path order.
  std::vector<std::string> refreshLimits(uint64_t now_us, bool full_scan, uint64_t swap_total_kb);
  // Re-reads one cgroup's limit on an event there, re-applying its rule when it changed.
  void limitChanged(const std::string& path);
  // Limits are written just after mkdir (runc, systemd), and a container can fill its limit within
  // seconds, long before the next refresh: a cgroup that appeared while running and has no limit yet
  // is probed at the ages in kYoungProbeAgesUs (50 ms to 3 s). Each found limited has its rule
  // re-applied and is passed to Listener::onDomainFound; returns them.
  std::vector<std::string> probeYoungLimits(uint64_t now_us);
  // When the next young probe is due, or nullopt when none is waiting.
  [[nodiscard]] std::optional<uint64_t> nextYoungProbeUs() const;
  // Reads memory.events (or .local) of a watched cgroup and what rose since the last read; nullopt
  // when the cgroup is not watched or the file is unreadable (counted unless it vanished).
  std::optional<EventsRise> readEvents(const std::string& path, bool local);
  // Disarms everything.
  void close();

  // The OOM domain an event in `cgroup` concerns: the nearest limited cgroup at or above it, else "/".
  [[nodiscard]] std::string domainFor(const std::string& cgroup) const;
  // The watched cgroup and all watched cgroups below it, in path order: pointers to their keys, valid
  // until that cgroup is removed.
  [[nodiscard]] std::vector<const std::string*> subtreeOf(const std::string& path) const;
  [[nodiscard]] const WatchedCgroup* find(const std::string& path) const;
  [[nodiscard]] const std::map<std::string, WatchedCgroup>& cgroups() const { return cgroups_; }
  // The PSI trigger watching `cgroup` ("/" = the host), or nullptr.
  [[nodiscard]] const io::PressureWatch* pressureWatch(const std::string& cgroup) const;
  // The memory pressure of `domain` ("/" = the host) now: through its armed memory trigger (a pread, no
  // open), else from its memory.pressure (/proc/pressure/memory for the host).
  [[nodiscard]] cgroupfs::Result<cgroupfs::Pressure> readMemoryPressure(const std::string& domain) const;
  [[nodiscard]] std::vector<std::string> paths() const;
  [[nodiscard]] size_t armedPressureTriggers() const;
  [[nodiscard]] size_t eventsWatches() const;
  [[nodiscard]] size_t inotifyWatches() const { return watches_.size(); }
  [[nodiscard]] const std::string& hostPressureStatus() const { return host_pressure_status_; }

 private:
  enum class WatchKind { kDirectory, kEvents, kEventsLocal };
  void onInotify(int wd, uint32_t mask, const std::string& name);
  // Re-reads memory.max (and memory.swap.max while the host has swap); returns whether the cgroup's
  // "limited" changed.
  bool readLimit(const std::string& path, WatchedCgroup& watched);
  // Whether a PSI trigger may be written into `path` now: the cgroup is populated (then no rmdir can
  // run: the kernel refuses to remove a cgroup with tasks or children) and has been seen for at least
  // kPressureArmAgeUs (or existed at start). A trigger write racing the cgroup's removal leaks the
  // trigger and corrupts memory on kernels without upstream a5b98009f16d (6.12.117 and bookworm's 6.1
  // included: see tests/e2e/README.md, "Kernel bugs"). A wanted trigger that may not be written yet
  // stays pending and is retried at every refresh.
  bool armablePressure(const std::string& path, const WatchedCgroup& watched);
  // Arms or disarms the rule's watches and trigger for the cgroup as it is now.
  void applyRule(const std::string& path, WatchedCgroup& watched);
  // The age at which `watched`'s next young probe is due, or nullopt when it has none left.
  static std::optional<uint64_t> youngProbeAgeUs(const WatchedCgroup& watched);

  boost::asio::io_context& io_;
  io::Node& node_;
  const config::Config& config_;
  io::EventLog& log_;
  DaemonStats& stats_;
  const Clock& clock_;
  Listener& listener_;
  std::unique_ptr<io::InotifyWatch> inotify_;
  std::shared_ptr<io::PressureWatch> host_pressure_;
  std::string host_pressure_status_;
  // Whether the host had swap at the last refresh (true until the first: unknown). Without swap a
  // cgroup's memory.swap.max is not part of its OOM domain's size (mem_cgroup_get_max adds
  // min(swap.max, total swap) = 0), so it is not read: 500 reads fewer every full scan at 500 domains.
  bool swap_in_use_ = true;
  std::vector<std::string> young_;  // cgroups with limit probes left (probeYoungLimits)
  std::map<std::string, WatchedCgroup> cgroups_;
  std::unordered_map<int, std::pair<std::string, WatchKind>> watches_;
  bool closed_ = false;
  bool trigger_budget_spent_logged_ = false;  // pressure_triggers_capped said; reset by a refresh with none waiting
  bool capped_in_pass_ = false;  // a trigger waited for a descriptor in this refreshLimits pass
  // A trigger of `path` waits for a descriptor: pressure_triggers_capped, once while that lasts.
  void noteCapped(const std::string& path);
};

}  // namespace oomguard::guardian::daemon
