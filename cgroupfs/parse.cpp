#include "cgroupfs/parse.hpp"

#include <charconv>
#include <string>
#include <system_error>

namespace oomguard::cgroupfs {
namespace {

constexpr std::string_view kWhitespace = " \t\n\r";

}  // namespace

std::string_view trim(std::string_view text) {
  const auto first = text.find_first_not_of(kWhitespace);
  if (first == std::string_view::npos) {
    return {};
  }
  const auto last = text.find_last_not_of(kWhitespace);
  return text.substr(first, last - first + 1);
}

namespace {

// Calls visit(line) for each line without its newline; stops early when visit returns false.
template <class Visit>
void forEachLine(std::string_view text, Visit&& visit) {
  while (!text.empty()) {
    const auto end = text.find('\n');
    const std::string_view line = text.substr(0, end);
    if (!visit(line)) {
      return;
    }
    if (end == std::string_view::npos) {
      return;
    }
    text.remove_prefix(end + 1);
  }
}

// Parses the whole of `text` (no sign, no spaces) as a number of type T.
template <class T>
bool parseWhole(std::string_view text, T& out) {
  if (text.empty()) {
    return false;
  }
  const auto* const end = text.data() + text.size();
  const auto [ptr, ec] = std::from_chars(text.data(), end, out);
  return ec == std::errc() && ptr == end;
}

std::string quoted(std::string_view text) {
  constexpr size_t kMaxShown = 40;
  std::string out = "'";
  for (const char c : text.substr(0, kMaxShown)) {
    out += (c >= ' ' && c < 127) ? c : '?';
  }
  if (text.size() > kMaxShown) {
    out += "...";
  }
  out += "'";
  return out;
}

Error badValue(std::string_view key, std::string_view value) {
  return parseError("bad value for " + std::string(key) + ": " + quoted(value));
}

}  // namespace

bool parseKbValue(std::string_view value, uint64_t& out) {
  constexpr uint64_t kMaxKb = uint64_t{1} << 50;
  value = trim(value);
  if (value.size() < 3 || value.substr(value.size() - 3) != " kB") {
    return false;
  }
  return parseWhole(trim(value.substr(0, value.size() - 3)), out) && out <= kMaxKb;
}

Result<ProcStatus> parseProcStatus(std::string_view text) {
  ProcStatus status;
  bool seen_name = false;
  bool seen_tgid = false;
  bool seen_ppid = false;
  bool seen_uid = false;
  bool seen_threads = false;
  int seen_memory_fields = 0;  // RssAnon, RssFile, RssShmem, VmSwap, VmPTE
  std::optional<Error> failure;

  forEachLine(text, [&](std::string_view line) {
    const auto colon = line.find(':');
    if (colon == std::string_view::npos) {
      return true;  // not a "Key:\tvalue" line: tolerated, nothing we read looks like this
    }
    const std::string_view key = line.substr(0, colon);
    const std::string_view value = line.substr(colon + 1);
    auto set_kb = [&](uint64_t& field) {
      if (!parseKbValue(value, field)) {
        failure = badValue(key, value);
        return false;
      }
      ++seen_memory_fields;
      return true;
    };
    auto set_int = [&](auto& field, bool& seen) {
      if (!parseWhole(trim(value), field)) {
        failure = badValue(key, value);
        return false;
      }
      seen = true;
      return true;
    };
    if (key == "Name") {
      // The kernel prints one tab, then the (escaped) comm, which may contain spaces.
      status.comm = std::string(value.substr(value.starts_with('\t') ? 1 : 0));
      seen_name = true;
    } else if (key == "Uid") {
      const auto fields = trim(value);
      if (!parseWhole(fields.substr(0, fields.find_first_of(kWhitespace)), status.uid)) {
        failure = badValue(key, value);
        return false;
      }
      seen_uid = true;
    } else if (key == "Tgid") {
      return set_int(status.tgid, seen_tgid);
    } else if (key == "PPid") {
      return set_int(status.ppid, seen_ppid);
    } else if (key == "Threads") {
      return set_int(status.threads, seen_threads);
    } else if (key == "Kthread") {
      int flag = 0;
      bool seen = false;
      if (!set_int(flag, seen) || (flag != 0 && flag != 1)) {
        failure = badValue(key, value);
        return false;
      }
      status.kthread = flag == 1;
    } else if (key == "VmSize") {
      status.has_mm = true;
    } else if (key == "RssAnon") {
      return set_kb(status.rss_anon_kb);
    } else if (key == "RssFile") {
      return set_kb(status.rss_file_kb);
    } else if (key == "RssShmem") {
      return set_kb(status.rss_shmem_kb);
    } else if (key == "VmSwap") {
      return set_kb(status.swap_kb);
    } else if (key == "VmPTE") {
      return set_kb(status.pgtables_kb);
    }
    return true;
  });

  if (failure) {
    return *failure;
  }
  if (!(seen_name && seen_tgid && seen_ppid && seen_uid && seen_threads)) {
    return parseError("missing one of Name, Tgid, PPid, Uid, Threads");
  }
  if (status.has_mm && seen_memory_fields != 5) {
    return parseError("task has an mm but lacks one of RssAnon, RssFile, RssShmem, VmSwap, VmPTE");
  }
  if (!status.has_mm && seen_memory_fields != 0) {
    return parseError("memory fields without VmSize");
  }
  return status;
}

Result<long> parseInteger(std::string_view text) {
  long value = 0;
  const auto trimmed = trim(text);
  if (!parseWhole(trimmed, value)) {
    return parseError("expected one integer, got " + quoted(trimmed));
  }
  return value;
}

Result<int> parseOomScoreAdj(std::string_view text) {
  auto value = parseInteger(text);
  if (!value) {
    return value.error();
  }
  if (value.value() < -1000 || value.value() > 1000) {
    return parseError("oom_score_adj out of range -1000..1000: " + std::to_string(value.value()));
  }
  return static_cast<int>(value.value());
}

Result<std::string> parseCgroupV2Path(std::string_view text) {
  std::optional<std::string> path;
  forEachLine(text, [&](std::string_view line) {
    if (line.starts_with("0::")) {
      path = std::string(line.substr(3));
      return false;
    }
    return true;
  });
  if (!path) {
    return parseError("no cgroup v2 (\"0::\") line");
  }
  if (!path->starts_with('/')) {
    return parseError("cgroup v2 path is not absolute: " + quoted(*path));
  }
  // A task of a cgroup removed while it was exiting shows " (deleted)": keep the path itself.
  if (path->ends_with(" (deleted)")) {
    path->resize(path->size() - std::string_view(" (deleted)").size());
  }
  return *std::move(path);
}

Result<MemInfo> parseMemInfo(std::string_view text) {
  MemInfo info;
  int required = 0;  // MemTotal, MemFree, SwapTotal, SwapFree
  std::optional<Error> failure;
  forEachLine(text, [&](std::string_view line) {
    const auto colon = line.find(':');
    if (colon == std::string_view::npos) {
      return true;
    }
    const auto key = line.substr(0, colon);
    const auto value = line.substr(colon + 1);
    uint64_t* required_field = nullptr;
    std::optional<uint64_t>* optional_field = nullptr;
    if (key == "MemTotal") {
      required_field = &info.mem_total_kb;
    } else if (key == "MemFree") {
      required_field = &info.mem_free_kb;
    } else if (key == "SwapTotal") {
      required_field = &info.swap_total_kb;
    } else if (key == "SwapFree") {
      required_field = &info.swap_free_kb;
    } else if (key == "MemAvailable") {
      optional_field = &info.mem_available_kb;
    } else if (key == "CommitLimit") {
      optional_field = &info.commit_limit_kb;
    } else if (key == "Committed_AS") {
      optional_field = &info.committed_as_kb;
    } else {
      return true;
    }
    uint64_t number = 0;
    if (!parseKbValue(value, number)) {
      failure = badValue(key, value);
      return false;
    }
    if (required_field != nullptr) {
      *required_field = number;
      ++required;
    } else {
      *optional_field = number;
    }
    return true;
  });
  if (failure) {
    return *failure;
  }
  if (required != 4) {
    return parseError("missing one of MemTotal, MemFree, SwapTotal, SwapFree");
  }
  if (info.mem_total_kb == 0) {
    return parseError("MemTotal is 0");
  }
  return info;
}

namespace {

std::optional<PressureLine> parsePressureFields(std::string_view fields) {
  PressureLine line;
  int seen = 0;
  while (!fields.empty()) {
    fields = trim(fields);
    const auto end = fields.find(' ');
    const auto field = fields.substr(0, end);
    fields = end == std::string_view::npos ? std::string_view() : fields.substr(end + 1);
    const auto equals = field.find('=');
    if (equals == std::string_view::npos) {
      return std::nullopt;
    }
    const auto key = field.substr(0, equals);
    const auto value = field.substr(equals + 1);
    bool parsed = true;
    if (key == "avg10") {
      parsed = parseWhole(value, line.avg10);
    } else if (key == "avg60") {
      parsed = parseWhole(value, line.avg60);
    } else if (key == "avg300") {
      parsed = parseWhole(value, line.avg300);
    } else if (key == "total") {
      parsed = parseWhole(value, line.total_us);
    } else {
      continue;
    }
    if (!parsed) {
      return std::nullopt;
    }
    ++seen;
  }
  if (seen != 4) {
    return std::nullopt;
  }
  return line;
}

}  // namespace

Result<Pressure> parsePressure(std::string_view text) {
  std::optional<PressureLine> some;
  std::optional<PressureLine> full;
  std::optional<Error> failure;
  forEachLine(text, [&](std::string_view line) {
    if (trim(line).empty()) {
      return true;
    }
    const auto space = line.find(' ');
    const auto kind = line.substr(0, space);
    auto* target = kind == "some" ? &some : kind == "full" ? &full : nullptr;
    if (target == nullptr || space == std::string_view::npos) {
      failure = parseError("unexpected PSI line: " + quoted(line));
      return false;
    }
    *target = parsePressureFields(line.substr(space + 1));
    if (!*target) {
      failure = parseError("malformed PSI line: " + quoted(line));
      return false;
    }
    return true;
  });
  if (failure) {
    return *failure;
  }
  if (!some) {
    return parseError("no \"some\" line");
  }
  return Pressure{*some, full};
}

Result<LimitBytes> parseLimit(std::string_view text) {
  const auto trimmed = trim(text);
  if (trimmed == "max") {
    return LimitBytes{};
  }
  uint64_t bytes = 0;
  if (!parseWhole(trimmed, bytes)) {
    return parseError("expected \"max\" or a byte count, got " + quoted(trimmed));
  }
  return LimitBytes{bytes};
}

Result<FlatKeyed> parseFlatKeyed(std::string_view text) {
  FlatKeyed entries;
  std::optional<Error> failure;
  forEachLine(text, [&](std::string_view line) {
    if (line.empty()) {
      return true;
    }
    const auto space = line.find(' ');
    uint64_t value = 0;
    if (space == std::string_view::npos || space == 0 || !parseWhole(trim(line.substr(space + 1)), value)) {
      failure = parseError("expected \"key value\", got " + quoted(line));
      return false;
    }
    entries.emplace_back(std::string(line.substr(0, space)), value);
    return true;
  });
  if (failure) {
    return *failure;
  }
  return entries;
}

Result<MemoryEvents> parseMemoryEvents(std::string_view text) {
  auto entries = parseFlatKeyed(text);
  if (!entries) {
    return entries.error();
  }
  MemoryEvents events;
  for (const auto& [key, value] : entries.value()) {
    if (key == "low") {
      events.low = value;
    } else if (key == "high") {
      events.high = value;
    } else if (key == "max") {
      events.max = value;
    } else if (key == "oom") {
      events.oom = value;
    } else if (key == "oom_kill") {
      events.oom_kill = value;
    } else if (key == "oom_group_kill") {
      events.oom_group_kill = value;
    }
  }
  return events;
}

Result<std::vector<pid_t>> parsePidList(std::string_view text) {
  std::vector<pid_t> pids;
  std::optional<Error> failure;
  forEachLine(text, [&](std::string_view line) {
    if (line.empty()) {
      return true;
    }
    pid_t pid = 0;
    if (!parseWhole(line, pid) || pid <= 0) {
      failure = parseError("expected a pid, got " + quoted(line));
      return false;
    }
    pids.push_back(pid);
    return true;
  });
  if (failure) {
    return *failure;
  }
  return pids;
}

Result<std::vector<std::string>> parseWordList(std::string_view text) {
  std::vector<std::string> words;
  text = trim(text);
  while (!text.empty()) {
    const auto end = text.find_first_of(kWhitespace);
    words.emplace_back(text.substr(0, end));
    if (end == std::string_view::npos) {
      break;
    }
    text = trim(text.substr(end));
  }
  return words;
}

Result<std::vector<BuddyZone>> parseBuddyInfo(std::string_view text) {
  std::vector<BuddyZone> zones;
  std::optional<Error> failure;
  forEachLine(text, [&](std::string_view line) {
    if (trim(line).empty()) {
      return true;
    }
    // "Node 0, zone   Normal   12   5 ..."
    BuddyZone zone;
    const auto comma = line.find(',');
    const auto zone_key = line.find("zone");
    if (!line.starts_with("Node ") || comma == std::string_view::npos || zone_key == std::string_view::npos ||
        !parseWhole(trim(line.substr(5, comma - 5)), zone.node)) {
      failure = parseError("malformed buddyinfo line: " + quoted(line));
      return false;
    }
    auto words = parseWordList(line.substr(zone_key + 4)).value();
    if (words.empty()) {
      failure = parseError("buddyinfo line without a zone name: " + quoted(line));
      return false;
    }
    zone.zone = words.front();
    for (size_t i = 1; i < words.size(); ++i) {
      uint64_t count = 0;
      if (!parseWhole(std::string_view(words[i]), count)) {
        failure = parseError("malformed buddyinfo count: " + quoted(words[i]));
        return false;
      }
      zone.free_blocks_by_order.push_back(count);
    }
    zones.push_back(std::move(zone));
    return true;
  });
  if (failure) {
    return *failure;
  }
  return zones;
}

Result<KernelVersion> parseKernelRelease(std::string_view text) {
  KernelVersion version;
  version.release = std::string(trim(text));
  std::string_view rest = version.release;
  int* parts[] = {&version.major, &version.minor, &version.patch};
  for (size_t i = 0; i < 3; ++i) {
    const auto* const end = rest.data() + rest.size();
    const auto [ptr, ec] = std::from_chars(rest.data(), end, *parts[i]);
    if (ec != std::errc()) {
      if (i < 2) {
        return parseError("not a kernel release: " + quoted(version.release));
      }
      break;  // "6.12" has no patch level
    }
    rest = std::string_view(ptr, static_cast<size_t>(end - ptr));
    if (i < 2) {
      if (!rest.starts_with('.')) {
        if (i == 0) {
          return parseError("not a kernel release: " + quoted(version.release));
        }
        break;
      }
      rest.remove_prefix(1);
    }
  }
  return version;
}

}  // namespace oomguard::cgroupfs
