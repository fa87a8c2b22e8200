// `oomguard history`: the kill journal (io::KillJournal) as a table or JSON lines; it reads only the
// files, so it works while the daemon is down.
#include <algorithm>
#include <cctype>
#include <chrono>
#include <ctime>
#include <ostream>

#include "guardian/cli/commands.hpp"
#include "guardian/io/kill_journal.hpp"
#include "guardian/text/format.hpp"

namespace oomguard::guardian::cli {
namespace {

using Json = nlohmann::ordered_json;

// "2026-11-22T03:50:01.123456Z" -> seconds since the epoch; nullopt when it is not that form.
std::optional<int64_t> epochSeconds(const std::string& time) {
  std::tm utc{};
  if (time.size() < 20 || ::strptime(time.c_str(), "%Y-%m-%dT%H:%M:%S", &utc) == nullptr) {
    return std::nullopt;
  }
  return static_cast<int64_t>(::timegm(&utc));
}

// A journal line is input (a tampered or foreign file): a member of another type reads as empty.
std::string stringOf(const Json& record, const char* key, const std::string& fallback = "") {
  const auto found = record.find(key);
  return found != record.end() && found->is_string() ? found->get<std::string>() : fallback;
}

bool replayedOf(const Json& record) {
  const auto found = record.find("replayed");
  return found != record.end() && found->is_boolean() && found->get<bool>();
}

std::string field(const Json& record, const char* key) {
  const auto found = record.find(key);
  if (found == record.end() || found->is_null()) {
    return "-";
  }
  return found->is_string() ? found->get<std::string>() : found->dump();
}

std::string whereOf(const Json& record) {
  const auto workload = record.find("workload");
  if (workload != record.end() && workload->is_object()) {
    const std::string pod = stringOf(*workload, "pod");
    if (!pod.empty()) {
      const std::string container = stringOf(*workload, "container");
      return stringOf(*workload, "namespace") + "/" + pod + (container.empty() ? "" : "/" + container);
    }
    // The pod is not known by name (no API server, or gone before it was listed): its uid and the
    // container's runtime ID, from the cgroup path the kubelet made.
    const std::string container_id = stringOf(*workload, "container_id");
    return "pod " + stringOf(*workload, "pod_uid", "?") +
           (container_id.empty() ? "" : " container " + container_id.substr(0, 12));
  }
  return field(record, "cgroup");
}

std::string rssOf(const Json& record) {
  if (!record.contains("anon_rss_kb") || !record["anon_rss_kb"].is_number()) {
    return "-";
  }
  uint64_t kb = 0;
  for (const char* key : {"anon_rss_kb", "file_rss_kb", "shmem_rss_kb"}) {
    if (record.contains(key) && record[key].is_number_unsigned()) {
      kb += record[key].get<uint64_t>();
    }
  }
  return text::mibFromKb(kb) + " MiB";
}

}  // namespace

std::optional<int64_t> parseDurationSeconds(const std::string& text) {
  if (text.empty()) {
    return std::nullopt;
  }
  size_t digits = 0;
  while (digits < text.size() && std::isdigit(static_cast<unsigned char>(text[digits])) != 0) {
    ++digits;
  }
  if (digits == 0 || digits > 9 || text.size() - digits > 1) {
    return std::nullopt;
  }
  const int64_t value = std::stoll(text.substr(0, digits));
  const char unit = digits == text.size() ? 's' : text[digits];
  switch (unit) {
    case 's':
      return value;
    case 'm':
      return value * 60;
    case 'h':
      return value * 3600;
    case 'd':
      return value * 86400;
    default:
      return std::nullopt;
  }
}

int runHistory(const HistoryOptions& options, std::ostream& out, std::ostream& err) {
  std::optional<int64_t> since_epoch;
  if (options.since) {
    const auto seconds = parseDurationSeconds(*options.since);
    if (!seconds) {
      err << "oomguard history: --since " << text::printable(*options.since)
          << ": not a duration (N, Ns, Nm, Nh or Nd)\n";
      return kExitUsage;
    }
    since_epoch = options.now_epoch_s - *seconds;
  }
  bool any_shown = false;
  bool any_replayed = false;
  if (!options.json) {
    out << text::column("TIME (UTC)", 20) << " " << text::column("KILLER", 8) << " " << text::rightColumn("PID", 8)
        << " " << text::column("COMM", 16) << " " << text::rightColumn("RSS", 11) << " "
        << text::column("CONSTRAINT", 17) << " WHERE\n";
  }
  // One record at a time, as read: the journal may hold megabytes.
  auto skipped = io::forEachKillRecord(options.dir, [&](const Json& record) {
    if (since_epoch) {
      const auto when = epochSeconds(stringOf(record, "time"));
      if (!when || *when < *since_epoch) {
        return;
      }
    }
    any_shown = true;
    if (options.json) {
      out << text::jsonText(record) << "\n";
      return;
    }
    const std::string time = stringOf(record, "time").substr(0, 19);
    const std::string kind = stringOf(record, "kind");
    if (kind == "gap") {
      out << text::column(time, 20) << " kmsg records " << text::printable(field(record, "from_seq")) << ".."
          << text::printable(field(record, "to_seq"))
          << " were dropped by the kernel's ring buffer before oomguard read them: kills among them are unknown\n";
      return;
    }
    std::string killer = field(record, "killer");
    if (replayedOf(record)) {
      killer += "*";
      any_replayed = true;
    }
    std::string where = whereOf(record);
    if (kind == "group_kill") {
      where = "whole cgroup " + field(record, "cgroup") + " (memory.oom.group)";
    } else if (kind == "group_member") {
      where += " (group member)";
    }
    out << text::column(time, 20) << " " << text::column(killer, 8) << " " << text::rightColumn(field(record, "pid"), 8)
        << " " << text::column(field(record, "comm"), 16) << " " << text::rightColumn(rssOf(record), 11) << " "
        << text::column(field(record, "constraint"), 17) << " " << text::printable(where) << "\n";
  });
  if (!skipped) {
    err << "oomguard history: " << skipped.error().describe() << "\n";
    return kExitFailure;
  }
  if (!options.json) {
    if (!any_shown) {
      out << "no OOM kill recorded" << (options.since ? " in the last " + text::printable(*options.since) : "")
          << " in " << text::printable(options.dir) << "\n";
    } else if (any_replayed) {
      out << "* seen in the kernel's log when oomguard started: the kill happened while it was not running\n";
    }
  }
  if (skipped.value() > 0) {
    err << "oomguard history: " << skipped.value() << " torn or unreadable line(s) skipped\n";
  }
  return kExitOk;
}

}  // namespace oomguard::guardian::cli
