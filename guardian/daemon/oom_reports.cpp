#include "guardian/daemon/oom_reports.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <nlohmann/json.hpp>

namespace oomguard::guardian::daemon {
namespace {

using Json = nlohmann::ordered_json;
constexpr size_t kKernelKilledKept = 4096;

}  // namespace

const char* toString(PredictionCheck check) {
  switch (check) {
    case PredictionCheck::kMatch:
      return "match";
    case PredictionCheck::kMismatch:
      return "mismatch";
    case PredictionCheck::kStale:
      return "stale";
    case PredictionCheck::kUnmodelled:
      return "unmodelled";
    case PredictionCheck::kNone:
      return "none";
  }
  return "none";
}

OomReports::OomReports(io::Actuator& actuator, const Clock& clock, io::EventLog& log, exporter::Metrics& metrics,
                       DaemonStats& stats, const Rankings& rankings)
    : actuator_(actuator), clock_(clock), log_(log), metrics_(metrics), stats_(stats), rankings_(rankings) {}

void OomReports::markClock(const std::string& kmsg_path) {
  struct stat info {};
  if (::stat(kmsg_path.c_str(), &info) != 0 || !S_ISCHR(info.st_mode)) {
    return;
  }
  mark_ = "oomguard[" + std::to_string(::getpid()) + "]: started, kmsg clock mark";
  mark_before_us_ = clock_.monotonic_us();
  const bool written = actuator_.writeKernelLog(kmsg_path, "<6>" + mark_ + "\n").ok;
  mark_after_us_ = clock_.monotonic_us();
  if (!written) {
    mark_.clear();
  }
}

std::vector<OomReport> OomReports::feed(const std::string& record_text) {
  std::vector<OomReport> reports;
  auto record = cgroupfs::parseKmsgRecord(record_text);
  last_sequence_.reset();
  if (!record) {
    return reports;
  }
  last_sequence_ = record.value().sequence;
  // A record is read after it is written, so the smallest (read time - record time) seen bounds the
  // offset from above, tightly whenever we read promptly (tens of milliseconds apart in a VM otherwise);
  // predictions (stamped on CLOCK_MONOTONIC) are compared through it.
  const auto read_us = static_cast<int64_t>(clock_.monotonic_us());
  const int64_t lag = read_us - static_cast<int64_t>(record.value().timestamp_us);
  if (!offset_us_ || lag < *offset_us_) {
    offset_us_ = lag;
  }
  if (!mark_.empty() && record.value().message == mark_) {
    // Our own mark: the offset lies between (before - stamp) and (after - stamp).
    const auto stamp = static_cast<int64_t>(record.value().timestamp_us);
    const int64_t upper = static_cast<int64_t>(mark_after_us_) - stamp;
    offset_us_ = std::min(*offset_us_, upper);
    log_.write("kmsg_clock", Json{{"offset_us", *offset_us_}, {"uncertainty_us", mark_after_us_ - mark_before_us_}});
    mark_.clear();
    return reports;
  }
  for (auto& event : assembler_.feed(record.value().message, record.value().timestamp_us)) {
    if (const auto* kill = std::get_if<cgroupfs::KernelOomKill>(&event)) {
      reports.emplace_back(check(*kill));
    } else if (const auto* group = std::get_if<cgroupfs::KernelOomGroupKill>(&event)) {
      reports.emplace_back(*group);
    } else if (const auto* member = std::get_if<cgroupfs::KernelGroupMemberKilled>(&event)) {
      noteKernelKilled(member->process.pid);
      reports.emplace_back(*member);
    }
  }
  return reports;
}

KernelKillCheck OomReports::check(const cgroupfs::KernelOomKill& kill) {
  ++stats_.kernel_oom_kills;
  metrics_.countKernelOomKill(kill.summary.constraint);
  KernelKillCheck checked;
  checked.kill = kill;
  checked.domain = kill.summary.oom_memcg && !kill.summary.global_oom ? *kill.summary.oom_memcg : "/";
  // cpuset and mempolicy OOMs scan only the tasks allowed on those nodes: not modelled here.
  checked.modelled = kill.summary.constraint == "CONSTRAINT_NONE" || kill.summary.constraint == "CONSTRAINT_MEMCG";
  // The prediction in force when the OOM began: the newest one recorded before the report's first line.
  std::optional<std::optional<policies::VictimCandidate>> prediction;
  if (checked.modelled) {
    prediction = rankings_.predictionBefore(
        checked.domain, kill.started_us == 0 ? INT64_MAX
                                             : static_cast<int64_t>(kill.started_us) + offset_us_.value_or(0));
  }
  if (prediction) {
    checked.predicted = *prediction;
  }
  const auto& predicted = checked.predicted;
  if (!checked.modelled) {
    checked.result = PredictionCheck::kUnmodelled;
    ++stats_.predictions_missing;
  } else if (kill.rate_limited && !kill.summary.oom_memcg && kill.summary.constraint == "CONSTRAINT_MEMCG") {
    checked.result = PredictionCheck::kNone;  // the report that names the memcg was rate-limited away
    ++stats_.predictions_missing;
  } else if (predicted && kernel_killed_.contains(predicted->pid) && predicted->pid != kill.victim.pid) {
    checked.result = PredictionCheck::kStale;
    ++stats_.predictions_missing;
  } else if (predicted) {
    const bool match = predicted->pid == kill.victim.pid;
    checked.result = match ? PredictionCheck::kMatch : PredictionCheck::kMismatch;
    ++(match ? stats_.predictions_match : stats_.predictions_mismatch);
    metrics_.countPrediction(toString(checked.result));
  } else {
    ++stats_.predictions_missing;
  }
  noteKernelKilled(kill.victim.pid);
  return checked;
}

void OomReports::noteKernelKilled(pid_t pid) {
  // A group kill reports each member: one report can add hundreds, so the cap holds after every insert.
  if (kernel_killed_.insert(pid).second) {
    kernel_killed_order_.push_back(pid);
  }
  while (kernel_killed_.size() > kKernelKilledKept) {
    kernel_killed_.erase(kernel_killed_order_.front());
    kernel_killed_order_.pop_front();
  }
}

}  // namespace oomguard::guardian::daemon
