// The kill history (see io::KillJournal): every OOM kill the daemon sees, the kernel's (from its kmsg
// reports) and its own, journaled on disk as it happens, so that `oomguard history` shows them while the
// daemon is down and after it restarts.
//
// Exactly once across restarts: a kernel kill is keyed by (boot_id, kmsg sequence number of its "Killed
// process" record). At start the daemon replays the records the kernel's ring buffer still holds: kills
// newer than the newest one journaled in this boot are journaled (marked "replayed": they happened while
// the daemon was down), older ones are already there. Records the ring buffer dropped after the last one
// read (kmsg.position) are journaled as a "gap": kills in them cannot be known.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "cgroupfs/kmsg.hpp"
#include "guardian/config/config.hpp"
#include "guardian/daemon/context.hpp"
#include "guardian/daemon/executor.hpp"
#include "guardian/daemon/oom_reports.hpp"
#include "guardian/io/event_log.hpp"
#include "guardian/io/kill_journal.hpp"
#include "guardian/kube/kubernetes_identity.hpp"

namespace oomguard::guardian::daemon {

class KillHistory {
 public:
  using LabelsOf = std::function<kube::WorkloadLabels(const std::string& cgroup)>;
  KillHistory(const Clock& clock, io::EventLog& log, LabelsOf labels_of);

  // Opens the journal under settings.dir (nothing is journaled when that fails: logged, not fatal) and
  // reads where the last run stopped. `boot_id` tells this boot's kmsg sequence numbers from another's.
  void open(const config::History& settings, std::string boot_id);
  [[nodiscard]] bool enabled() const { return journal_ != nullptr; }
  // For the start-up summary: "DIR/kills.jsonl", "off (history: null)" or "unavailable: <why>".
  [[nodiscard]] const std::string& status() const { return status_; }

  // A kmsg record from before start-up (KmsgWatch's replay): its kills are journaled once.
  void replay(const std::string& record_text);
  // After the replay: logs what it found ("history_resumed").
  void replayed();
  // A live record's sequence number (before its reports are journaled): tells a gap the kernel's ring
  // buffer made (overwritten before it was read).
  void sawRecord(uint64_t sequence);
  // A kernel report completed by the live record with `sequence`.
  void kernelReport(const OomReport& report, std::optional<uint64_t> sequence);
  // oomguard's own kill, after the signal was sent.
  void oomguardKill(const OomguardKill& kill);
  // Writes kmsg.position when it moved (at most every 60 s unless `force`: on stop, which also makes
  // every journaled record durable).
  void savePosition(bool force);
  // At the refresh, off the kill path: the records appended since are made durable (fdatasync), and the
  // position saved if due. The daemon's own death loses no record (the page cache outlives it); a node
  // crash, those of the last refresh interval.
  void sync();

 private:
  void append(const nlohmann::ordered_json& record);
  void noteSequence(uint64_t sequence, bool replaying);
  nlohmann::ordered_json workload(const std::string& cgroup) const;
  // The records of one event, the same whether it was replayed (kmsg_us: its time) or read live (0: now).
  nlohmann::ordered_json kernelKill(const cgroupfs::KernelOomKill& kill, const std::string& domain) const;
  nlohmann::ordered_json groupKill(const cgroupfs::KernelOomGroupKill& group, std::optional<uint64_t> sequence,
                                   uint64_t kmsg_us) const;
  nlohmann::ordered_json groupMember(const cgroupfs::KernelGroupMemberKilled& member,
                                     std::optional<uint64_t> sequence, uint64_t kmsg_us) const;
  nlohmann::ordered_json base(const char* killer, const char* kind, std::optional<uint64_t> sequence,
                              uint64_t kmsg_us) const;

  const Clock& clock_;
  io::EventLog& log_;
  LabelsOf labels_of_;
  std::unique_ptr<io::KillJournal> journal_;
  std::string boot_id_;
  std::optional<uint64_t> journaled_seq_;  // the newest kernel kill journaled in this boot
  std::optional<uint64_t> resume_seq_;     // the last record the previous run read (kmsg.position)
  std::optional<uint64_t> last_seq_;       // the last record this run read
  uint64_t saved_seq_ = 0;
  uint64_t saved_at_us_ = 0;
  bool first_in_boot_ = false;  // no position for this boot: its history begins with this run
  cgroupfs::OomReportAssembler replay_assembler_;
  struct Replay {
    uint64_t records = 0;
    uint64_t kills = 0;
    std::optional<uint64_t> first_seq;
  } replay_;
  uint64_t append_failures_ = 0;
  std::string status_ = "off (history: null)";
};

// This boot's id (/proc/sys/kernel/random/boot_id), empty when unreadable.
std::string readBootId(const std::string& proc_root);

}  // namespace oomguard::guardian::daemon
