#include "cgroupfs/kmsg.hpp"

#include "cgroupfs/parse.hpp"

#include <charconv>

namespace oomguard::cgroupfs {
namespace {

template <class T>
bool parseNumber(std::string_view text, T& out) {
  const auto* const end = text.data() + text.size();
  const auto [ptr, ec] = std::from_chars(text.data(), end, out);
  return ec == std::errc() && ptr == end && !text.empty();
}


// "123kB" -> 123
std::optional<uint64_t> kilobytes(std::string_view value) {
  if (value.ends_with("kB")) {
    value.remove_suffix(2);
  }
  uint64_t number = 0;
  return parseNumber(value, number) ? std::optional<uint64_t>(number) : std::nullopt;
}

}  // namespace

Result<KmsgRecord> parseKmsgRecord(std::string_view record) {
  const auto semicolon = record.find(';');
  if (semicolon == std::string_view::npos) {
    return parseError("kmsg record without ';'");
  }
  std::string_view header = record.substr(0, semicolon);
  std::string_view fields[4];
  for (size_t i = 0; i < 4; ++i) {
    const auto comma = header.find(',');
    fields[i] = header.substr(0, comma);
    if (comma == std::string_view::npos) {
      if (i < 3) {
        return parseError("kmsg header needs priority,sequence,timestamp,flags");
      }
      break;
    }
    header.remove_prefix(comma + 1);
  }
  KmsgRecord parsed;
  int priority = 0;
  if (!parseNumber(fields[0], priority) || !parseNumber(fields[1], parsed.sequence) ||
      !parseNumber(fields[2], parsed.timestamp_us)) {
    return parseError("malformed kmsg header");
  }
  parsed.level = priority & 7;
  parsed.facility = priority >> 3;
  parsed.continuation = fields[3].find('c') != std::string_view::npos;
  std::string_view message = record.substr(semicolon + 1);
  message = message.substr(0, message.find('\n'));
  parsed.message = std::string(message);
  return parsed;
}

Result<OomKillSummary> parseOomKillSummary(std::string_view message) {
  constexpr std::string_view kPrefix = "oom-kill:";
  message = trim(message);
  if (!message.starts_with(kPrefix)) {
    return parseError("not an oom-kill: line");
  }
  message.remove_prefix(kPrefix.size());
  // Comma separated key=value pairs; a piece without '=' continues the previous value (mems_allowed and
  // nodemask print lists like "0,2").
  OomKillSummary summary;
  std::vector<std::pair<std::string, std::string>> pairs;
  while (!message.empty()) {
    const auto comma = message.find(',');
    const auto piece = message.substr(0, comma);
    message = comma == std::string_view::npos ? std::string_view() : message.substr(comma + 1);
    const auto equals = piece.find('=');
    if (piece == "global_oom") {
      summary.global_oom = true;  // a bare flag, where a memcg OOM has oom_memcg=<path>
      continue;
    }
    if (equals == std::string_view::npos) {
      if (!pairs.empty()) {
        pairs.back().second += ",";
        pairs.back().second += piece;
      }
      continue;
    }
    pairs.emplace_back(std::string(piece.substr(0, equals)), std::string(piece.substr(equals + 1)));
  }
  bool has_pid = false;
  for (const auto& [key, value] : pairs) {
    if (key == "constraint") {
      summary.constraint = value;
    } else if (key == "oom_memcg") {
      summary.oom_memcg = value;
    } else if (key == "global_oom") {
      summary.global_oom = true;
    } else if (key == "task_memcg") {
      summary.task_memcg = value;
    } else if (key == "task") {
      summary.task_comm = value;
    } else if (key == "pid") {
      has_pid = parseNumber(std::string_view(value), summary.pid);
    } else if (key == "uid") {
      uid_t uid = 0;
      if (parseNumber(std::string_view(value), uid)) {
        summary.uid = uid;
      }
    }
  }
  if (!has_pid || summary.pid <= 0) {
    return parseError("oom-kill: line without a valid pid");
  }
  if (summary.constraint.empty()) {
    return parseError("oom-kill: line without constraint");
  }
  if (!summary.oom_memcg && summary.constraint == "CONSTRAINT_NONE") {
    summary.global_oom = true;
  }
  return summary;
}

Result<KilledProcess> parseKilledProcess(std::string_view message) {
  constexpr std::string_view kKilled = "Killed process ";
  message = trim(message);
  const auto at = message.find(kKilled);
  if (at == std::string_view::npos) {
    return parseError("not a Killed process line");
  }
  KilledProcess killed;
  if (at > 0) {
    std::string_view reason = message.substr(0, at);
    reason = trim(reason);
    if (reason.ends_with(':')) {
      reason.remove_suffix(1);
    }
    killed.reason = std::string(reason);
    killed.allocating_task = reason.find("oom_kill_allocating_task") != std::string_view::npos;
  }
  std::string_view rest = message.substr(at + kKilled.size());
  const auto space = rest.find(' ');
  if (!parseNumber(rest.substr(0, space), killed.pid) || killed.pid <= 0 || space == std::string_view::npos) {
    return parseError("Killed process line without a valid pid");
  }
  rest.remove_prefix(space + 1);
  // "(comm) total-vm:..." - the comm may itself hold ") ", so take the last ") " before the first "total-vm:"
  // when there is one, else the last ")".
  if (!rest.starts_with('(')) {
    return parseError("Killed process line without (comm)");
  }
  const auto fields_at = rest.find(" total-vm:");
  const auto close = fields_at == std::string_view::npos ? rest.rfind(')') : rest.rfind(')', fields_at);
  if (close == std::string_view::npos || close == 0) {
    return parseError("Killed process line without (comm)");
  }
  killed.comm = std::string(rest.substr(1, close - 1));
  rest.remove_prefix(close + 1);
  // key:value tokens separated by ", " or " ".
  while (!rest.empty()) {
    const auto end = rest.find_first_of(", ");
    const auto token = rest.substr(0, end);
    rest = end == std::string_view::npos ? std::string_view() : rest.substr(end + 1);
    const auto colon = token.find(':');
    if (colon == std::string_view::npos) {
      continue;
    }
    const auto key = token.substr(0, colon);
    const auto value = token.substr(colon + 1);
    if (key == "total-vm") {
      killed.total_vm_kb = kilobytes(value);
    } else if (key == "anon-rss") {
      killed.anon_rss_kb = kilobytes(value);
    } else if (key == "file-rss") {
      killed.file_rss_kb = kilobytes(value);
    } else if (key == "shmem-rss") {
      killed.shmem_rss_kb = kilobytes(value);
    } else if (key == "pgtables") {
      killed.pgtables_kb = kilobytes(value);
    } else if (key == "oom_score_adj") {
      int adj = 0;
      if (parseNumber(value, adj)) {
        killed.oom_score_adj = adj;
      }
    }
  }
  return killed;
}

namespace {

std::optional<OomInvocation> parseInvocation(std::string_view message) {
  constexpr std::string_view kInvoked = " invoked oom-killer:";
  const auto at = message.find(kInvoked);
  if (at == std::string_view::npos) {
    return std::nullopt;
  }
  OomInvocation invocation;
  invocation.comm = std::string(trim(message.substr(0, at)));
  std::string_view rest = message.substr(at + kInvoked.size());
  while (!rest.empty()) {
    const auto comma = rest.find(", ");
    const auto piece = trim(rest.substr(0, comma));
    rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 2);
    const auto equals = piece.find('=');
    if (equals == std::string_view::npos) {
      continue;
    }
    const auto key = piece.substr(0, equals);
    const auto value = piece.substr(equals + 1);
    int number = 0;
    if (key == "gfp_mask") {
      invocation.gfp_mask = std::string(value);
    } else if (key == "order" && parseNumber(value, number)) {
      invocation.order = number;
    } else if (key == "oom_score_adj" && parseNumber(value, number)) {
      invocation.oom_score_adj = number;
    }
  }
  return invocation;
}

}  // namespace

std::vector<KernelOomEvent> OomReportAssembler::feed(std::string_view message, uint64_t timestamp_us) {
  std::vector<KernelOomEvent> events;
  message = trim(message);
  if (auto invocation = parseInvocation(message)) {
    invocation_ = std::move(invocation);
    started_us_ = timestamp_us;
    summary_.reset();
    group_cgroup_.reset();
    return events;
  }
  if (message.starts_with("oom-kill:")) {
    if (auto summary = parseOomKillSummary(message)) {
      if (!invocation_) {
        started_us_ = timestamp_us;
      }
      summary_ = std::move(summary).value();
      group_cgroup_.reset();
    }
    return events;
  }
  constexpr std::string_view kTasksIn = "Tasks in ";
  constexpr std::string_view kGroupSuffix = " are going to be killed due to memory.oom.group set";
  if (message.starts_with(kTasksIn) && message.ends_with(kGroupSuffix)) {
    group_cgroup_ = std::string(message.substr(kTasksIn.size(), message.size() - kTasksIn.size() - kGroupSuffix.size()));
    group_last_us_ = timestamp_us;
    events.emplace_back(KernelOomGroupKill{*group_cgroup_});
    return events;
  }
  if (message.find("Killed process ") != std::string_view::npos && !message.starts_with("oom_reaper:")) {
    auto killed = parseKilledProcess(message);
    if (!killed) {
      return events;
    }
    // A group kill's members follow its "Tasks in" line within about a millisecond; another OOM, even
    // a rate-limited one, comes much later.
    constexpr uint64_t kGroupWindowUs = 20000;
    const bool in_group = group_cgroup_ && (timestamp_us == 0 || group_last_us_ == 0 ||
                                            timestamp_us - group_last_us_ <= kGroupWindowUs);
    if (summary_ && summary_->pid == killed.value().pid) {
      events.emplace_back(
          KernelOomKill{started_us_, false, invocation_.value_or(OomInvocation{}), *summary_, std::move(killed).value()});
      summary_.reset();
      invocation_.reset();
    } else if (in_group) {
      group_last_us_ = timestamp_us;
      events.emplace_back(KernelGroupMemberKilled{*group_cgroup_, std::move(killed).value()});
    } else {
      // The report was rate-limited away: only the kill line is left.
      group_cgroup_.reset();
      OomKillSummary summary;
      const bool memcg = killed.value().reason.starts_with("Memory cgroup");
      summary.constraint = memcg ? "CONSTRAINT_MEMCG" : "CONSTRAINT_NONE";
      summary.global_oom = !memcg;
      summary.pid = killed.value().pid;
      summary.task_comm = killed.value().comm;
      events.emplace_back(KernelOomKill{timestamp_us, true, OomInvocation{}, std::move(summary), std::move(killed).value()});
    }
  }
  return events;
}

}  // namespace oomguard::cgroupfs
