#include "guardian/daemon/kill_history.hpp"

#include <fstream>

namespace oomguard::guardian::daemon {
namespace {

using Json = nlohmann::ordered_json;
// kmsg.position is written at most this often while records arrive (and on stop): a daemon killed with
// SIGKILL re-reads at most this much of the ring buffer, and its kills are not journaled twice (they are
// keyed by sequence number).
constexpr uint64_t kPositionEveryUs = 60'000'000;


Json optionalJson(const auto& value) { return value ? Json(*value) : Json(nullptr); }

// A journal line is input: a member of another type than the daemon writes reads as empty.
std::string stringOf(const Json& record, const char* key) {
  const auto found = record.find(key);
  return found != record.end() && found->is_string() ? found->get<std::string>() : std::string();
}

}  // namespace

std::string readBootId(const std::string& proc_root) {
  std::ifstream in(proc_root + "/sys/kernel/random/boot_id");
  std::string id;
  in >> id;
  return id;
}

KillHistory::KillHistory(const Clock& clock, io::EventLog& log, LabelsOf labels_of)
    : clock_(clock), log_(log), labels_of_(std::move(labels_of)) {}

void KillHistory::open(const config::History& settings, std::string boot_id) {
  boot_id_ = std::move(boot_id);
  auto journal = io::KillJournal::open(settings.dir, settings.max_bytes);
  if (!journal) {
    log_.write("history_unavailable", Json{{"dir", settings.dir}, {"error", journal.error().describe()}});
    status_ = "unavailable: " + journal.error().describe();
    return;
  }
  journal_ = std::move(journal).value();
  status_ = settings.dir + "/" + io::kKillJournalFile;
  if (boot_id_.empty()) {
    // Without the boot's id, sequence numbers cannot be told from another boot's: every kill in the
    // ring buffer is journaled at start (marked replayed), and no gap is claimed.
    return;
  }
  // One record at a time: the journal may hold megabytes.
  (void)io::forEachKillRecord(settings.dir, [&](const Json& record) {
    const auto seq = record.find("seq");
    if (stringOf(record, "boot_id") == boot_id_ && seq != record.end() && seq->is_number_unsigned() &&
        stringOf(record, "killer") == "kernel") {
      journaled_seq_ = std::max(journaled_seq_.value_or(0), seq->get<uint64_t>());
    }
  });
  if (auto position = io::readKmsgPosition(settings.dir); position && position->boot_id == boot_id_) {
    resume_seq_ = position->sequence;
    saved_seq_ = position->sequence;
  } else if (journaled_seq_) {
    resume_seq_ = journaled_seq_;  // a run of this boot journaled a kill, and saved no position
  } else {
    first_in_boot_ = true;  // this boot's history begins with this run
  }
}

Json KillHistory::base(const char* killer, const char* kind, std::optional<uint64_t> sequence, uint64_t kmsg_us) const {
  Json record;
  auto when = log_.now();
  if (kmsg_us != 0) {
    // The kmsg clock is CLOCK_MONOTONIC's (printk's local_clock): the kill was this long ago.
    const uint64_t now_us = clock_.monotonic_us();
    if (now_us > kmsg_us) {
      when -= std::chrono::microseconds(now_us - kmsg_us);
    }
  }
  record["time"] = io::EventLog::formatTimestamp(when);
  record["killer"] = killer;
  record["kind"] = kind;
  record["boot_id"] = boot_id_;
  if (sequence) {
    record["seq"] = *sequence;
  }
  return record;
}

Json KillHistory::workload(const std::string& cgroup) const {
  const auto identity = kube::identifyCgroup(cgroup);
  const auto labels = identity.inPod() ? labels_of_(cgroup) : kube::WorkloadLabels{};
  if (!identity.inPod()) {
    return nullptr;
  }
  return Json{{"namespace", labels.namespace_name}, {"pod", labels.pod},       {"container", labels.container},
              {"pod_uid", identity.pod_uid},        {"container_id", identity.container_id}};
}

Json KillHistory::kernelKill(const cgroupfs::KernelOomKill& kill, const std::string& domain) const {
  const auto& victim = kill.victim;
  const std::string cgroup = kill.summary.task_memcg.value_or("");
  return Json{{"pid", victim.pid},
              {"comm", victim.comm},
              {"cgroup", kill.summary.task_memcg ? Json(cgroup) : Json(nullptr)},
              {"constraint", kill.summary.constraint},
              {"domain", domain},
              {"anon_rss_kb", optionalJson(victim.anon_rss_kb)},
              {"file_rss_kb", optionalJson(victim.file_rss_kb)},
              {"shmem_rss_kb", optionalJson(victim.shmem_rss_kb)},
              {"pgtables_kb", optionalJson(victim.pgtables_kb)},
              {"oom_score_adj", optionalJson(victim.oom_score_adj)},
              {"invoked_by", kill.invocation.comm},
              {"workload", cgroup.empty() ? Json(nullptr) : workload(cgroup)}};
}

Json KillHistory::groupKill(const cgroupfs::KernelOomGroupKill& group, std::optional<uint64_t> sequence,
                            uint64_t kmsg_us) const {
  Json line = base("kernel", "group_kill", sequence, kmsg_us);
  line["cgroup"] = group.cgroup;
  line["workload"] = workload(group.cgroup);
  return line;
}

Json KillHistory::groupMember(const cgroupfs::KernelGroupMemberKilled& member, std::optional<uint64_t> sequence,
                              uint64_t kmsg_us) const {
  Json line = base("kernel", "group_member", sequence, kmsg_us);
  line["pid"] = member.process.pid;
  line["comm"] = member.process.comm;
  line["cgroup"] = member.cgroup;
  return line;
}

void KillHistory::append(const Json& record) {
  if (!journal_) {
    return;
  }
  if (auto appended = journal_->append(record); !appended) {
    // Logged once per ten failures (a full disk must not flood the log); the kill itself is logged anyway.
    if (append_failures_++ % 10 == 0) {
      log_.write("history_write_failed", Json{{"error", appended.error().describe()}, {"failures", append_failures_}});
    }
  }
}

void KillHistory::noteSequence(uint64_t sequence, bool replaying) {
  // The ring buffer dropped the records between the last one read (by this run, or by the last run as
  // kmsg.position says) and this one: kills among them cannot be known.
  // The last record known read: by this run; else by the last run (its position, or its newest kill
  // if that is newer: the position is saved at most every minute); else, at this boot's first start,
  // none (the history begins at record 0).
  std::optional<uint64_t> previous = last_seq_;
  if (!previous && resume_seq_) {
    previous = std::max(*resume_seq_, journaled_seq_.value_or(0));
  }
  const uint64_t first_missing = previous ? *previous + 1 : 0;
  if ((previous || (first_in_boot_ && replaying)) && sequence > first_missing && journal_) {
    Json gap = base("unknown", "gap", std::nullopt, 0);
    gap["from_seq"] = first_missing;
    gap["to_seq"] = sequence - 1;
    gap["detail"] = std::string("the kernel's ring buffer dropped these records before oomguard read them") +
                    (!previous ? " (before its first start in this boot)" : replaying ? " (while it was not running)" : "");
    log_.write("history_gap", Json{{"from_seq", first_missing}, {"to_seq", sequence - 1}});
    append(gap);
  }
  first_in_boot_ = false;
  if (!last_seq_ || sequence > *last_seq_) {
    last_seq_ = sequence;
  }
}

void KillHistory::replay(const std::string& record_text) {
  auto record = cgroupfs::parseKmsgRecord(record_text);
  if (!record) {
    return;
  }
  const uint64_t sequence = record.value().sequence;
  ++replay_.records;
  if (!replay_.first_seq) {
    replay_.first_seq = sequence;
  }
  // Records the last run read are assembled too: a report it read in part may end in one it did not.
  noteSequence(sequence, true);
  for (const auto& event : replay_assembler_.feed(record.value().message, record.value().timestamp_us)) {
    if (!boot_id_.empty() && journaled_seq_ && sequence <= *journaled_seq_) {
      continue;  // journaled already, by a run that saw it live or replayed it
    }
    Json line;
    if (const auto* kill = std::get_if<cgroupfs::KernelOomKill>(&event)) {
      line = base("kernel", "kill", sequence, record.value().timestamp_us);
      const std::string domain = kill->summary.oom_memcg && !kill->summary.global_oom ? *kill->summary.oom_memcg : "/";
      line.update(kernelKill(*kill, domain));
    } else if (const auto* group = std::get_if<cgroupfs::KernelOomGroupKill>(&event)) {
      line = groupKill(*group, sequence, record.value().timestamp_us);
    } else if (const auto* member = std::get_if<cgroupfs::KernelGroupMemberKilled>(&event)) {
      line = groupMember(*member, sequence, record.value().timestamp_us);
    }
    line["replayed"] = true;
    ++replay_.kills;
    append(line);
    // The live descriptor reads what arrived while this one did: journaled here, skipped there.
    journaled_seq_ = std::max(journaled_seq_.value_or(0), sequence);
  }
}

void KillHistory::replayed() {
  first_in_boot_ = false;
  if (!journal_) {
    return;
  }
  log_.write("history_resumed", Json{{"dir", journal_->dir()},
                                     {"records_read", replay_.records},
                                     {"first_seq", optionalJson(replay_.first_seq)},
                                     {"resumed_after_seq", optionalJson(resume_seq_)},
                                     {"kills_journaled", replay_.kills}});
  savePosition(true);
}

void KillHistory::sync() {
  if (!journal_) {
    return;
  }
  if (auto synced = journal_->sync(); !synced && append_failures_++ % 10 == 0) {
    log_.write("history_write_failed", Json{{"error", synced.error().describe()}, {"failures", append_failures_}});
  }
  savePosition(false);
}

void KillHistory::sawRecord(uint64_t sequence) {
  noteSequence(sequence, false);
  savePosition(false);
}

void KillHistory::kernelReport(const OomReport& report, std::optional<uint64_t> sequence) {
  if (sequence && journaled_seq_ && *sequence <= *journaled_seq_) {
    return;  // the replay journaled it (it arrived while the replay read)
  }
  Json line;
  if (const auto* checked = std::get_if<KernelKillCheck>(&report)) {
    line = base("kernel", "kill", sequence, 0);  // live: the kill is now
    line.update(kernelKill(checked->kill, checked->domain));
    line["predicted"] = checked->predicted ? Json{{"pid", checked->predicted->pid}, {"comm", checked->predicted->comm}}
                                           : Json(nullptr);
    line["prediction"] = toString(checked->result);
    line["domain_limit_bytes"] = optionalJson(checked->domain_limit_bytes);
  } else if (const auto* group = std::get_if<cgroupfs::KernelOomGroupKill>(&report)) {
    line = groupKill(*group, sequence, 0);
  } else if (const auto* member = std::get_if<cgroupfs::KernelGroupMemberKilled>(&report)) {
    line = groupMember(*member, sequence, 0);
  }
  if (sequence) {
    journaled_seq_ = std::max(journaled_seq_.value_or(0), *sequence);
  }
  append(line);
  savePosition(false);
}

void KillHistory::oomguardKill(const OomguardKill& kill) {
  Json line = base("oomguard", kill.killed_cgroup ? "group_kill" : "kill", std::nullopt, 0);
  const auto& victim = kill.victim;
  const std::string cgroup = kill.killed_cgroup.value_or(victim.cgroup);
  line["pid"] = kill.killed_cgroup ? Json(nullptr) : Json(victim.pid);
  line["comm"] = kill.killed_cgroup ? Json(nullptr) : Json(victim.comm);
  line["cgroup"] = cgroup.empty() ? Json(nullptr) : Json(cgroup);
  line["constraint"] = kill.domain == "/" ? "CONSTRAINT_NONE" : "CONSTRAINT_MEMCG";
  line["domain"] = kill.domain;
  if (kill.status && kill.status->has_mm) {
    line["anon_rss_kb"] = kill.status->rss_anon_kb;
    line["file_rss_kb"] = kill.status->rss_file_kb;
    line["shmem_rss_kb"] = kill.status->rss_shmem_kb;
  }
  line["oom_score_adj"] = victim.oom_score_adj;
  line["points"] = victim.points;
  line["policy"] = kill.policy;
  line["reason"] = kill.reason;
  if (!cgroup.empty()) {
    Json where = workload(cgroup);
    if (where.is_object() && where["pod"].get<std::string>().empty() && !kill.labels.pod.empty()) {
      where["namespace"] = kill.labels.namespace_name;
      where["pod"] = kill.labels.pod;
      where["container"] = kill.labels.container;
    }
    line["workload"] = std::move(where);
  }
  append(line);
}

void KillHistory::savePosition(bool force) {
  if (!journal_) {
    return;
  }
  if (force) {
    (void)journal_->sync();
  }
  if (!last_seq_ || boot_id_.empty() || *last_seq_ == saved_seq_) {
    return;
  }
  const uint64_t now_us = clock_.monotonic_us();
  if (!force && now_us - saved_at_us_ < kPositionEveryUs) {
    return;
  }
  if (io::writeKmsgPosition(journal_->dir(), io::KmsgPosition{boot_id_, *last_seq_})) {
    saved_seq_ = *last_seq_;
    saved_at_us_ = now_us;
  }
}

}  // namespace oomguard::guardian::daemon
