#include "cgroupfs/file_reader.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <iterator>

namespace oomguard::cgroupfs {

UniqueFd& UniqueFd::operator=(UniqueFd&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) {
      ::close(fd_);
    }
    fd_ = std::exchange(other.fd_, -1);
  }
  return *this;
}

UniqueFd::~UniqueFd() {
  if (fd_ >= 0) {
    ::close(fd_);
  }
}

Result<UniqueFd> openDirectory(const std::string& path) {
  const int fd = ::open(path.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) {
    return systemError(errno, path, "cannot open directory");
  }
  return UniqueFd(fd);
}

bool producedWhole(std::string_view name) {
  const auto slash = name.rfind('/');
  const std::string_view base = slash == std::string_view::npos ? name : name.substr(slash + 1);
  // Named one by one (a prefix would take in a multi-record file added later, such as cgroup v1's
  // memory.kmem.slabinfo): cgroup v2 memory files shown by one kernfs show(), /proc/<pid> files shown
  // by proc_single_show (oom_score_adj: simple_read_from_buffer), /proc/meminfo (single_open) and
  // /proc/pressure/memory (psi_show). Not /proc/vmstat, cgroup.procs or cgroup.threads (many records).
  static constexpr std::string_view kWhole[] = {
      "memory.current", "memory.max",      "memory.high",   "memory.low",          "memory.min",
      "memory.swap.max", "memory.swap.current", "memory.events", "memory.events.local", "memory.pressure",
      "memory.oom.group", "memory.stat",   "status",        "stat",                "cgroup",
      "oom_score",       "oom_score_adj",  "meminfo",       "memory"};
  return std::find(std::begin(kWhole), std::end(kWhole), base) != std::end(kWhole);
}

Result<std::string_view> FileReader::read(int directory_fd, const char* name,
                                          const std::string& path_for_errors) {
  const int fd = ::openat(directory_fd, name, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
  if (fd < 0) {
    return systemError(errno, path_for_errors, "cannot open");
  }
  const UniqueFd file(fd);
  return readOpen(fd, false, name, path_for_errors);
}

Result<std::string_view> FileReader::readFromStart(int fd, std::string_view name,
                                                   const std::string& path_for_errors) {
  return readOpen(fd, true, name, path_for_errors);
}

Result<std::string_view> FileReader::readOpen(int fd, bool positioned, std::string_view name,
                                              const std::string& path_for_errors) {
  constexpr size_t kInitialCapacity = 4096;
  if (buffer_.size() < kInitialCapacity) {
    buffer_.resize(kInitialCapacity);
  }
  size_t used = 0;
  bool type_checked = false;
  const bool whole_when_short = producedWhole(name);
  for (;;) {
    if (used == buffer_.size()) {
      // Past the size of any small kernel file: check once that this is one (no fstat on the hot path).
      if (used >= kCheckTypeBytes && !type_checked) {
        type_checked = true;
        struct stat info {};
        if (::fstat(fd, &info) != 0 || !S_ISREG(info.st_mode)) {
          return systemError(EINVAL, path_for_errors, "not a regular file");
        }
      }
      if (used >= kMaxBytes) {
        return systemError(EFBIG, path_for_errors, "larger than " + std::to_string(kMaxBytes) + " bytes");
      }
      buffer_.resize(std::min(buffer_.size() * 2, kMaxBytes));
    }
    char* const into = buffer_.data() + used;
    const size_t room = buffer_.size() - used;
    const ssize_t got =
        positioned ? ::pread(fd, into, room, static_cast<off_t>(used)) : ::read(fd, into, room);
    if (got < 0) {
      if (errno == EINTR) {
        continue;
      }
      return systemError(errno, path_for_errors, "cannot read");
    }
    if (got == 0) {
      break;
    }
    used += static_cast<size_t>(got);
    if (whole_when_short && used < buffer_.size()) {
      break;  // a short read of a one-record file: that was all of it
    }
  }
  return std::string_view(buffer_.data(), used);
}

Result<std::string_view> FileReader::read(const std::string& path) { return read(AT_FDCWD, path.c_str(), path); }

Result<bool> writeFileAt(int directory_fd, const char* name, std::string_view text,
                         const std::string& path_for_errors) {
  const int fd = ::openat(directory_fd, name, O_WRONLY | O_CLOEXEC);
  if (fd < 0) {
    return systemError(errno, path_for_errors, "cannot open for writing");
  }
  const UniqueFd file(fd);
  const ssize_t wrote = ::write(fd, text.data(), text.size());
  if (wrote < 0) {
    return systemError(errno, path_for_errors, "cannot write");
  }
  if (static_cast<size_t>(wrote) != text.size()) {
    return systemError(EIO, path_for_errors, "short write");
  }
  return true;
}

}  // namespace oomguard::cgroupfs
