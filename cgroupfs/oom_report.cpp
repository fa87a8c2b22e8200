#include "cgroupfs/oom_report.hpp"

#include <cctype>
#include <charconv>

#include "cgroupfs/parse.hpp"

namespace oomguard::cgroupfs {
namespace {

constexpr std::string_view kInvoked = " invoked oom-killer:";
// 2^40 pages (4 PiB of 4 KiB pages): a bound on a page counter of the table, so that the model's sums
// of them stay far from overflow whatever the input holds.
constexpr uint64_t kMostPages = uint64_t{1} << 40;

template <class T>
std::optional<T> number(std::string_view text) {
  T value{};
  const auto* const end = text.data() + text.size();
  const auto [ptr, ec] = std::from_chars(text.data(), end, value);
  if (ec != std::errc() || ptr != end || text.empty()) {
    return std::nullopt;
  }
  return value;
}

// The digits right after `key` in `text` ("usage " in "memory: usage 49152kB, ..." -> 49152).
std::optional<uint64_t> numberAfter(std::string_view text, std::string_view key) {
  const auto at = text.find(key);
  if (at == std::string_view::npos) {
    return std::nullopt;
  }
  const auto rest = text.substr(at + key.size());
  size_t end = 0;
  while (end < rest.size() && rest[end] >= '0' && rest[end] <= '9') {
    ++end;
  }
  return number<uint64_t>(rest.substr(0, end));
}

std::string_view leftTrimmed(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) {
    text.remove_prefix(1);
  }
  return text;
}

// "[    141]" -> 141, and the rest after ']'.
std::optional<std::pair<std::string_view, std::string_view>> bracketed(std::string_view text) {
  if (!text.starts_with('[')) {
    return std::nullopt;
  }
  const auto close = text.find(']');
  if (close == std::string_view::npos) {
    return std::nullopt;
  }
  return std::pair{trim(text.substr(1, close - 1)), text.substr(close + 1)};
}

std::optional<MemcgCounterLine> parseCounterLine(std::string_view text) {
  const auto usage = numberAfter(text, "usage ");
  const auto limit = numberAfter(text, "limit ");
  if (!usage || !limit) {
    return std::nullopt;
  }
  return MemcgCounterLine{*usage, *limit};
}

// "CPU: 0 UID: 0 PID: 141 Comm: hog Not tainted 6.12.117+deb12-amd64 #1 ...": the pid, the release.
void parseCpuLine(std::string_view text, OomReport& report) {
  if (auto cpu = numberAfter(text, "CPU: "); cpu && *cpu < 1000000) {
    report.cpu = static_cast<int>(*cpu);
  }
  if (auto pid = numberAfter(text, " PID: "); pid && *pid > 0 && *pid <= INT32_MAX) {
    report.invoking_pid = static_cast<pid_t>(*pid);
  }
  // The comm comes before the taint and may hold anything: search from the end.
  std::string_view rest;
  if (const auto at = text.rfind(" Not tainted "); at != std::string_view::npos) {
    rest = text.substr(at + 13);
  } else if (const auto tainted = text.rfind(" Tainted: "); tainted != std::string_view::npos) {
    rest = text.substr(tainted + 10);
    const auto digit = rest.find_first_of("0123456789");
    rest = digit == std::string_view::npos ? std::string_view() : rest.substr(digit);
  }
  rest = leftTrimmed(rest);
  const auto release = rest.substr(0, rest.find(' '));
  if (!release.empty()) {
    report.kernel_release = std::string(release);
  }
}

// The kernel's own list after `key` ("0-1,3", "(null)"): up to `stop`, or up to the first piece that
// is not a node list. Only for words: a cgroup name before it may hold anything.
std::optional<std::string> kernelList(std::string_view text, std::string_view key, std::string_view stop) {
  const auto at = text.find(key);
  if (at == std::string_view::npos) {
    return std::nullopt;
  }
  std::string_view rest = text.substr(at + key.size());
  if (stop != ",") {
    rest = rest.substr(0, rest.find(stop));
  } else {
    size_t end = 0;
    while (end < rest.size() &&
           (std::isdigit(static_cast<unsigned char>(rest[end])) != 0 || rest[end] == '-' ||
            (rest[end] == ',' && end + 1 < rest.size() &&
             std::isdigit(static_cast<unsigned char>(rest[end + 1])) != 0))) {
      ++end;
    }
    rest = rest.substr(0, end);
  }
  return std::string(rest);
}

struct Pending {
  OomReport report;
  bool no_killable = false;
};

class Scanner {
 public:
  void feed(const KernelLogMessage& message);
  OomReportScan finish() &&;

 private:
  Pending& open(const KernelLogMessage& message);
  void extend(const KernelLogMessage& message) {
    if (pending_) {
      pending_->report.last_line = message.line;
    }
  }
  bool collect(std::string_view text, const KernelLogMessage& message);
  void closeIncomplete(std::string reason);
  void onKill(KernelOomKill kill, const KernelLogMessage& message);

  OomReportAssembler assembler_;
  std::optional<Pending> pending_;
  OomReportScan scan_;
};

Pending& Scanner::open(const KernelLogMessage& message) {
  if (!pending_) {
    pending_.emplace();
    pending_->report.first_line = message.line;
    pending_->report.first_sequence = message.sequence;
    pending_->report.started_us = message.timestamp_us;
  }
  pending_->report.last_line = message.line;
  return *pending_;
}

void Scanner::closeIncomplete(std::string reason) {
  if (!pending_) {
    return;
  }
  const auto& report = pending_->report;
  scan_.incomplete.push_back(IncompleteOomReport{
      report.first_line, report.last_line, report.invocation_seen ? report.invocation.comm : std::string(),
      std::move(reason)});
  pending_.reset();
}

// The lines of a report that the kill events leave out. True when `text` was one of them.
bool Scanner::collect(std::string_view text, const KernelLogMessage& message) {
  if (text.starts_with("oom-kill:")) {
    // The assembler reads the line; a report whose beginning is not in the input starts here.
    auto& report = open(message).report;
    report.nodemask = kernelList(text, "nodemask=", ",cpuset=");
    report.mems_allowed = kernelList(text, ",mems_allowed=", ",");
    return true;
  }
  if (text.starts_with("memory: usage ") || text.starts_with("swap: usage ")) {
    auto counter = parseCounterLine(text);
    auto& report = open(message).report;
    (text.starts_with("swap:") ? report.swap : report.memory) = counter;
    return true;
  }
  if (text.starts_with("Tasks state (memory values in pages)")) {
    open(message).report.task_table_seen = true;
    return true;
  }
  if (auto columns = parseTaskTableHeader(text)) {
    auto& report = open(message).report;
    report.task_table_seen = true;
    report.task_columns = std::move(*columns);
    return true;
  }
  if (!pending_) {
    return false;  // Mem-Info and the rest also come with allocation failures: only inside a report
  }
  auto& report = pending_->report;
  if (text.starts_with("[") && !report.task_columns.empty()) {
    if (auto row = parseTaskTableRow(text, report.task_columns)) {
      report.tasks.push_back(std::move(*row));
      extend(message);
      return true;
    }
    if (auto pid = bracketed(text); pid && number<pid_t>(pid->first)) {
      ++report.malformed_task_rows;
      extend(message);
      return true;
    }
    return false;
  }
  if (text.starts_with("CPU: ") && !report.invoking_pid && text.find(" Comm: ") != std::string_view::npos) {
    parseCpuLine(text, report);
  } else if (text.starts_with("Memory cgroup stats for ") && text.ends_with(':')) {
    report.memcg_stats_cgroup = std::string(text.substr(24, text.size() - 25));
  } else if (text.ends_with(" pages RAM")) {
    report.ram_pages = number<uint64_t>(text.substr(0, text.size() - 10));
  } else if (text.ends_with(" pages reserved")) {
    report.reserved_pages = number<uint64_t>(text.substr(0, text.size() - 15));
  } else if (text.starts_with("Total swap = ")) {
    report.total_swap_kb = numberAfter(text, "Total swap = ");
  } else if (auto zone = parseZoneLine(text)) {
    report.zones.push_back(std::move(*zone));
  } else if (text.starts_with("Out of memory and no killable processes")) {
    pending_->no_killable = true;
  } else {
    return false;
  }
  extend(message);
  return true;
}

void Scanner::onKill(KernelOomKill kill, const KernelLogMessage& message) {
  // A kill line without its oom-kill: line belongs to the open report only if that report could be
  // its own (the victim in its table, or no table); otherwise the open report lost its end.
  bool attach = pending_.has_value();
  if (pending_ && kill.rate_limited && !pending_->report.tasks.empty()) {
    attach = false;
    for (const auto& row : pending_->report.tasks) {
      attach = attach || row.pid == kill.victim.pid;
    }
    if (!attach) {
      closeIncomplete("its oom-kill: and Killed process lines are missing");
    }
  }
  OomReport report;
  if (attach) {
    report = std::move(pending_->report);
    pending_.reset();
  } else {
    report.first_line = message.line;
    report.first_sequence = message.sequence;
    report.started_us = message.timestamp_us;
  }
  report.kill_line_only = kill.rate_limited && !attach;
  if (!kill.invocation.comm.empty() || !report.invocation_seen) {
    report.invocation = std::move(kill.invocation);
  }
  report.summary = std::move(kill.summary);
  report.victim = std::move(kill.victim);
  report.last_line = message.line;
  scan_.reports.push_back(std::move(report));
}

void Scanner::feed(const KernelLogMessage& message) {
  ++scan_.messages;
  switch (message.form) {
    case KernelLogForm::kKmsg:
      ++scan_.kmsg_messages;
      break;
    case KernelLogForm::kDmesg:
      ++scan_.dmesg_messages;
      break;
    case KernelLogForm::kJournal:
      ++scan_.journal_messages;
      break;
    case KernelLogForm::kBare:
      ++scan_.bare_messages;
      break;
  }
  const std::string_view text = leftTrimmed(message.text);
  if (const auto at = text.find(kInvoked); at != std::string_view::npos && !text.starts_with("CPU: ")) {
    if (pending_) {
      closeIncomplete("a new report begins (line " + std::to_string(message.line) +
                      ") before its Killed process line");
    }
    auto& report = open(message).report;
    report.invocation_seen = true;
    report.invocation.comm = std::string(trim(text.substr(0, at)));
  } else {
    collect(text, message);
  }
  if (pending_ && pending_->no_killable) {
    closeIncomplete(
        "the kernel found no killable process (\"Out of memory and no killable processes\"; it panics)");
  }
  for (auto& event : assembler_.feed(text, message.timestamp_us.value_or(0))) {
    if (auto* kill = std::get_if<KernelOomKill>(&event)) {
      onKill(std::move(*kill), message);
    } else if (auto* group = std::get_if<KernelOomGroupKill>(&event);
               group != nullptr && !scan_.reports.empty()) {
      scan_.reports.back().group_cgroup = group->cgroup;
      scan_.reports.back().last_line = message.line;
    } else if (auto* member = std::get_if<KernelGroupMemberKilled>(&event);
               member != nullptr && !scan_.reports.empty()) {
      scan_.reports.back().group_killed.push_back(std::move(member->process));
      scan_.reports.back().last_line = message.line;
    }
  }
  if (text.starts_with("oom_reaper: reaped process ")) {
    const auto rest = text.substr(27);
    const auto pid = number<pid_t>(rest.substr(0, rest.find(' ')));
    for (auto it = scan_.reports.rbegin(); pid && it != scan_.reports.rend(); ++it) {
      bool member = it->victim.pid == *pid;
      for (const auto& killed : it->group_killed) {
        member = member || killed.pid == *pid;
      }
      if (member) {
        it->reaped.push_back(*pid);
        break;
      }
    }
  }
}

OomReportScan Scanner::finish() && {
  closeIncomplete("the input ends inside this report: no Killed process line");
  return std::move(scan_);
}

}  // namespace

std::optional<std::vector<std::string>> parseTaskTableHeader(std::string_view message) {
  const auto parts = bracketed(trim(message));
  if (!parts || parts->first != "pid") {
    return std::nullopt;
  }
  std::vector<std::string> columns;
  std::string_view rest = parts->second;
  while (!(rest = leftTrimmed(rest)).empty()) {
    const auto end = rest.find(' ');
    columns.emplace_back(rest.substr(0, end));
    rest = end == std::string_view::npos ? std::string_view() : rest.substr(end);
  }
  if (columns.empty() || columns.back() != "name") {
    return std::nullopt;
  }
  return columns;
}

std::optional<OomTaskRow> parseTaskTableRow(std::string_view message,
                                            const std::vector<std::string>& columns) {
  const auto parts = bracketed(message);
  if (!parts || columns.empty() || columns.back() != "name") {
    return std::nullopt;
  }
  OomTaskRow row;
  const auto pid = number<pid_t>(parts->first);
  if (!pid || *pid <= 0) {
    return std::nullopt;
  }
  row.pid = *pid;
  std::string_view rest = parts->second;
  for (size_t i = 0; i + 1 < columns.size(); ++i) {
    rest = leftTrimmed(rest);
    const auto end = rest.find(' ');
    if (end == std::string_view::npos) {
      return std::nullopt;  // every numeric column and then " name"
    }
    const auto token = rest.substr(0, end);
    rest = rest.substr(end);
    const auto& column = columns[i];
    if (column == "oom_score_adj") {
      const auto adj = number<int>(token);
      if (!adj || *adj < -1000 || *adj > 1000) {
        return std::nullopt;  // the kernel keeps it in -1000..1000
      }
      row.oom_score_adj = *adj;
      continue;
    }
    const auto value = number<uint64_t>(token);
    if (value && *value > kMostPages && column != "pgtables_bytes" && column != "uid") {
      return std::nullopt;  // more pages than any machine has: not a row the kernel printed
    }
    if (!value) {
      if (number<long long>(token)) {
        continue;  // a signed column this parser does not know
      }
      return std::nullopt;
    }
    if (column == "uid") {
      row.uid = static_cast<uid_t>(*value);
    } else if (column == "tgid") {
      row.tgid = static_cast<pid_t>(*value);
    } else if (column == "total_vm") {
      row.total_vm_pages = *value;
    } else if (column == "rss") {
      row.rss_pages = *value;
    } else if (column == "rss_anon") {
      row.rss_anon_pages = *value;
      row.split_rss = true;
    } else if (column == "rss_file") {
      row.rss_file_pages = *value;
    } else if (column == "rss_shmem") {
      row.rss_shmem_pages = *value;
    } else if (column == "pgtables_bytes") {
      if (*value > kMostPages * 4096) {
        return std::nullopt;
      }
      row.pgtables_bytes = *value;
    } else if (column == "swapents") {
      row.swapents_pages = *value;
    }
  }
  // "%5hd %s": one space, then the comm exactly as it is (it may begin with a space).
  row.name = std::string(rest.substr(rest.empty() ? 0 : 1));
  return row;
}

std::optional<ZoneLine> parseZoneLine(std::string_view message) {
  message = trim(message);
  if (!message.starts_with("Node ") || message.find(" present:") == std::string_view::npos) {
    return std::nullopt;
  }
  std::string_view rest = message.substr(5);
  const auto space = rest.find(' ');
  const auto node = number<int>(rest.substr(0, space));
  if (!node || space == std::string_view::npos) {
    return std::nullopt;
  }
  rest = rest.substr(space + 1);
  ZoneLine zone;
  zone.node = *node;
  zone.zone = std::string(rest.substr(0, rest.find(' ')));
  const auto present = numberAfter(message, " present:");
  if (!present || zone.zone.find(':') != std::string::npos) {
    return std::nullopt;
  }
  zone.present_kb = *present;
  zone.managed_kb = numberAfter(message, " managed:");
  return zone;
}

OomReportScan scanOomReports(std::span<const KernelLogMessage> messages) {
  Scanner scanner;
  for (const auto& message : messages) {
    scanner.feed(message);
  }
  return std::move(scanner).finish();
}

}  // namespace oomguard::cgroupfs
