#include "cgroupfs/procfs.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <charconv>
#include <memory>

#include "cgroupfs/parse.hpp"

namespace oomguard::cgroupfs {

void ReadCounters::record(const Error& error) {
  constexpr size_t kKeptErrors = 16;
  if (error.vanished()) {
    ++vanished;
    return;
  }
  if (error.malformed()) {
    ++malformed;
  } else {
    ++failed;
  }
  if (errors.size() < kKeptErrors) {
    errors.push_back(error);
  }
}

std::optional<Error> ReadCounters::firstFailure() const {
  if (malformed + failed == 0) {
    return std::nullopt;
  }
  return errors.empty() ? Error{0, "", "a read failed"} : errors.front();
}

ProcFs::ProcFs(std::string root) : root_(std::move(root)) {
  while (root_.size() > 1 && root_.ends_with('/')) {
    root_.pop_back();
  }
}

Result<std::vector<ProcFs::PidEntry>> ProcFs::listPidEntries() const {
  const std::unique_ptr<DIR, int (*)(DIR*)> dir(::opendir(root_.c_str()), ::closedir);
  if (!dir) {
    return systemError(errno, root_, "cannot list");
  }
  std::vector<PidEntry> entries;
  while (const dirent* entry = ::readdir(dir.get())) {
    const std::string_view name(entry->d_name);
    pid_t pid = 0;
    const auto [ptr, ec] = std::from_chars(name.data(), name.data() + name.size(), pid);
    if (ec == std::errc() && ptr == name.data() + name.size() && pid > 0) {
      entries.push_back(PidEntry{pid, entry->d_ino});
    }
  }
  return entries;
}

Result<std::vector<pid_t>> ProcFs::listPids() const {
  auto entries = listPidEntries();
  if (!entries) {
    return entries.error();
  }
  std::vector<pid_t> pids;
  pids.reserve(entries.value().size());
  for (const auto& entry : entries.value()) {
    pids.push_back(entry.pid);
  }
  return pids;
}

Result<int> ProcFs::rootFd() {
  if (!root_fd_.valid()) {
    auto handle = openDirectory(root_);
    if (!handle) {
      return handle.error();
    }
    root_fd_ = std::move(handle).value();
  }
  return root_fd_.get();
}

Result<std::string_view> ProcFs::readOfPid(pid_t pid, const char* file) {
  const auto root = rootFd();
  if (!root) {
    return root.error();
  }
  relative_ = std::to_string(pid);
  relative_ += '/';
  relative_ += file;
  auto text = reader_.read(root.value(), relative_.c_str(), std::string());
  if (!text) {
    return std::move(text).withPath(root_ + "/" + relative_);
  }
  return text;
}

Result<ProcessSnapshot> ProcFs::readProcess(pid_t pid, bool with_cgroup, bool with_oom_score) {
  ProcessSnapshot process;
  process.pid = pid;
  auto path = [&](const char* file) { return root_ + "/" + std::to_string(pid) + "/" + file; };

  auto status_text = readOfPid(pid, "status");
  if (!status_text) {
    return status_text.error();
  }
  auto status = parseProcStatus(status_text.value());
  if (!status) {
    return std::move(status).withPath(path("status")).error();
  }
  process.status = std::move(status).value();

  auto adj_text = readOfPid(pid, "oom_score_adj");
  if (!adj_text) {
    return adj_text.error();
  }
  auto adj = parseOomScoreAdj(adj_text.value());
  if (!adj) {
    return std::move(adj).withPath(path("oom_score_adj")).error();
  }
  process.oom_score_adj = adj.value();

  if (with_cgroup) {
    auto cgroup_text = readOfPid(pid, "cgroup");
    if (!cgroup_text) {
      return cgroup_text.error();
    }
    auto cgroup = parseCgroupV2Path(cgroup_text.value());
    if (!cgroup) {
      return std::move(cgroup).withPath(path("cgroup")).error();
    }
    process.cgroup = std::move(cgroup).value();
  }
  if (with_oom_score) {
    if (auto score_text = readOfPid(pid, "oom_score")) {
      if (auto score = parseInteger(score_text.value())) {
        process.kernel_oom_score = score.value();
      }
    }
  }
  return process;
}

std::vector<ProcessSnapshot> ProcFs::readProcesses(std::span<const pid_t> pids, bool with_cgroup,
                                                   ReadCounters& counters, bool with_oom_score) {
  std::vector<ProcessSnapshot> processes;
  processes.reserve(pids.size());
  for (const pid_t pid : pids) {
    auto process = readProcess(pid, with_cgroup, with_oom_score);
    if (process) {
      processes.push_back(std::move(process).value());
    } else {
      counters.record(process.error());
    }
  }
  return processes;
}

Result<std::string> ProcFs::readCmdline(pid_t pid, size_t max_bytes) {
  const auto root = rootFd();
  if (!root) {
    return root.error();
  }
  const std::string relative = std::to_string(pid) + "/cmdline";
  const int fd = ::openat(root.value(), relative.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
  if (fd < 0) {
    return systemError(errno, root_ + "/" + relative, "cannot open");
  }
  const UniqueFd file(fd);
  std::string text(max_bytes, '\0');
  const ssize_t got = ::read(fd, text.data(), text.size());
  if (got < 0) {
    return systemError(errno, root_ + "/" + relative, "cannot read");
  }
  text.resize(static_cast<size_t>(got));
  return text;
}

Result<std::string_view> ProcFs::readFile(std::string_view relative) {
  return reader_.read(root_ + "/" + std::string(relative));
}

Result<int> ProcFs::readOomScoreAdj(pid_t pid) {
  auto text = readOfPid(pid, "oom_score_adj");
  if (!text) {
    return text.error();
  }
  return parseOomScoreAdj(text.value()).withPath(root_ + "/" + std::to_string(pid) + "/oom_score_adj");
}

Result<std::string> ProcFs::readCgroupPath(pid_t pid) {
  const std::string path = root_ + "/" + std::to_string(pid) + "/cgroup";
  auto text = reader_.read(path);
  if (!text) {
    return text.error();
  }
  return parseCgroupV2Path(text.value()).withPath(path);
}

Result<uint64_t> parseStatStartTime(std::string_view text) {
  const auto close = text.rfind(')');
  if (close == std::string_view::npos) {
    return parseError("no ')' after the comm");
  }
  // After ") ": field 3 (state) is the first; field 22 is the 20th.
  std::string_view rest = text.substr(close + 1);
  for (int field = 3; field <= 22; ++field) {
    const auto start = rest.find_first_not_of(' ');
    if (start == std::string_view::npos) {
      return parseError("fewer than 22 fields");
    }
    rest.remove_prefix(start);
    const auto end = rest.find(' ');
    const std::string_view value = rest.substr(0, end);
    if (field == 22) {
      uint64_t ticks = 0;
      const auto [ptr, ec] = std::from_chars(value.data(), value.data() + value.size(), ticks);
      if (ec != std::errc() || ptr != value.data() + value.size()) {
        return parseError("bad starttime");
      }
      return ticks;
    }
    rest.remove_prefix(end == std::string_view::npos ? rest.size() : end);
  }
  return parseError("fewer than 22 fields");
}


namespace {

// `text` (read from `path`) parsed, with parse errors attributed to the file.
template <class Parser>
auto parsedText(Result<std::string_view> text, const std::string& path, Parser parser)
    -> decltype(parser(std::string_view())) {
  if (!text) {
    return text.error();
  }
  return parser(text.value()).withPath(path);
}

// Reads a file and parses it, attributing parse errors to the file.
template <class Parser>
auto readParsed(ProcFs& procfs, FileReader& reader, std::string_view relative, Parser parser)
    -> decltype(parser(std::string_view())) {
  const std::string path = procfs.root() + "/" + std::string(relative);
  return parsedText(reader.read(path), path, parser);
}

}  // namespace

Result<std::string_view> ProcFs::readHeld(std::string_view relative, HeldFile& held) {
  if (held.path.empty()) {
    held.path = root_ + "/" + std::string(relative);
  }
  if (!held.fd.valid() && !held.unheld) {
    const int fd = ::open(held.path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd < 0) {
      return systemError(errno, held.path, "cannot open");  // tried again at the next read
    }
    UniqueFd file(fd);
    struct statfs filesystem {};
    if (::fstatfs(fd, &filesystem) != 0) {
      return reader_.read(held.path);  // not known: read as any file, and asked again at the next read
    }
    if (filesystem.f_type != PROC_SUPER_MAGIC) {
      held.unheld = true;
    } else {
      held.fd = std::move(file);
    }
  }
  if (held.unheld) {
    return reader_.read(held.path);
  }
  auto text = reader_.readFromStart(held.fd.get(), relative, held.path);
  if (!text) {
    held.fd = UniqueFd();
  }
  return text;
}

Result<uint64_t> ProcFs::readStartTimeTicks(pid_t pid) {
  return readParsed(*this, reader_, std::to_string(pid) + "/stat", parseStatStartTime);
}

Result<long> ProcFs::readOomScore(pid_t pid) {
  return readParsed(*this, reader_, std::to_string(pid) + "/oom_score", parseInteger);
}

Result<MemInfo> ProcFs::readMemInfo() {
  auto text = readHeld("meminfo", meminfo_);
  return parsedText(std::move(text), meminfo_.path, parseMemInfo);
}

Result<uint64_t> ProcFs::readAllocatedPages() {
  auto text = readHeld("vmstat", vmstat_);
  return parsedText(std::move(text), vmstat_.path, parseAllocatedPages);
}

Result<Pressure> ProcFs::readPressure(std::string_view resource) {
  if (resource == "memory") {
    auto text = readHeld("pressure/memory", memory_pressure_);
    return parsedText(std::move(text), memory_pressure_.path, parsePressure);
  }
  return readParsed(*this, reader_, "pressure/" + std::string(resource), parsePressure);
}

Result<long> ProcFs::readSysctl(std::string_view name) {
  return readParsed(*this, reader_, "sys/" + std::string(name), parseInteger);
}

Result<KernelVersion> ProcFs::readKernelVersion() {
  return readParsed(*this, reader_, "sys/kernel/osrelease", parseKernelRelease);
}

Result<std::vector<BuddyZone>> ProcFs::readBuddyInfo() {
  return readParsed(*this, reader_, "buddyinfo", parseBuddyInfo);
}

Result<std::string> ProcFs::readText(std::string_view relative) {
  auto text = readFile(relative);
  if (!text) {
    return text.error();
  }
  return std::string(text.value());
}

}  // namespace oomguard::cgroupfs
