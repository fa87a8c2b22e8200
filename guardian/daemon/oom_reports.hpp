// The kernel's OOM reports on /dev/kmsg, checked against the predictions: each kill assembled from its
// report's records, its domain named, and the victim oomguard predicted for that domain before the OOM
// began compared with the kernel's. kmsg stamps records with the kernel's printk clock, not
// CLOCK_MONOTONIC; the offset between them is learned here (from a mark of our own and from every record).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <deque>
#include <optional>
#include <set>
#include <string>
#include <variant>
#include <vector>

#include "cgroupfs/kmsg.hpp"
#include "guardian/daemon/context.hpp"
#include "guardian/daemon/rankings.hpp"
#include "guardian/exporter/metrics.hpp"
#include "guardian/io/actuator.hpp"
#include "guardian/io/event_log.hpp"

namespace oomguard::guardian::daemon {

// How a kernel kill compares with the prediction in force when its OOM began.
enum class PredictionCheck {
  kMatch,       // the predicted victim is the kernel's
  kMismatch,
  kStale,       // the prediction still named an earlier victim: a second OOM came before a fresh ranking
  kUnmodelled,  // a cpuset or mempolicy OOM: it scans only the tasks allowed on those nodes
  kNone,        // no prediction for the domain, or the report naming the memcg was rate-limited away
};
const char* toString(PredictionCheck check);  // match | mismatch | stale | unmodelled | none

struct KernelKillCheck {
  cgroupfs::KernelOomKill kill;
  std::string domain;  // the OOM's memcg, or "/" for the host
  // The domain's limit when the report arrived: the memcg's memory.max (none when "max" or gone), the
  // host's MemTotal. Set by the daemon, which reads the node.
  std::optional<uint64_t> domain_limit_bytes;
  bool modelled = true;
  std::optional<policies::VictimCandidate> predicted;
  PredictionCheck result = PredictionCheck::kNone;
};
using OomReport = std::variant<KernelKillCheck, cgroupfs::KernelOomGroupKill, cgroupfs::KernelGroupMemberKilled>;

class OomReports {
 public:
  OomReports(io::Actuator& actuator, const Clock& clock, io::EventLog& log, exporter::Metrics& metrics,
             DaemonStats& stats, const Rankings& rankings);

  // Writes a record of our own into `kmsg_path` between two clock readings: read back, it pins the
  // offset to the write's duration. Only into a real /dev/kmsg (a character device, never a fixture
  // file), and best effort: without it the offset is learned from the kernel's own records.
  void markClock(const std::string& kmsg_path);
  // One kmsg record (the raw "<prefix>;<message>" text); returns the reports it completes, checked.
  std::vector<OomReport> feed(const std::string& record_text);
  // The kmsg sequence number of the record last fed, when it had one.
  [[nodiscard]] std::optional<uint64_t> lastSequence() const { return last_sequence_; }

 private:
  KernelKillCheck check(const cgroupfs::KernelOomKill& kill);
  // Notes a victim of a kernel OOM kill (its own, or a member of a group kill); keeps the newest
  // kKernelKilledKept, in the order they were reported (pids wrap: the smallest is not the oldest).
  void noteKernelKilled(pid_t pid);

  io::Actuator& actuator_;
  const Clock& clock_;
  io::EventLog& log_;
  exporter::Metrics& metrics_;
  DaemonStats& stats_;
  const Rankings& rankings_;
  cgroupfs::OomReportAssembler assembler_;
  std::set<pid_t> kernel_killed_;          // victims of kernel OOM kills seen (bounded: noteKernelKilled)
  std::deque<pid_t> kernel_killed_order_;  // the same pids, oldest first
  std::optional<int64_t> offset_us_;       // CLOCK_MONOTONIC minus the kmsg clock, bounded from above
  std::optional<uint64_t> last_sequence_;  // of the record last fed, when it parsed
  std::string mark_;                       // the text of our clock mark until it is read back
  uint64_t mark_before_us_ = 0;
  uint64_t mark_after_us_ = 0;
};

}  // namespace oomguard::guardian::daemon
