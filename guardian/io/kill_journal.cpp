#include "guardian/io/kill_journal.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <fstream>

#include "guardian/text/format.hpp"

namespace oomguard::guardian::io {
namespace {

// One record is a few hundred bytes; a line longer than this is not ours (or is torn) and is skipped.
constexpr size_t kMaxLineBytes = size_t{64} * 1024;

cgroupfs::Result<bool> writeAll(int fd, const std::string& text, const std::string& path) {
  size_t done = 0;
  while (done < text.size()) {
    const ssize_t wrote = ::write(fd, text.data() + done, text.size() - done);
    if (wrote < 0 && errno == EINTR) {
      continue;
    }
    if (wrote <= 0) {
      return cgroupfs::systemError(wrote < 0 ? errno : EIO, path, "cannot write");
    }
    done += static_cast<size_t>(wrote);
  }
  return true;
}

size_t readLines(const std::string& path, const std::function<void(const nlohmann::ordered_json&)>& each) {
  std::ifstream in(path, std::ios::binary);
  std::string line;
  size_t skipped = 0;
  while (std::getline(in, line)) {
    if (line.empty()) {
      continue;
    }
    if (line.size() > kMaxLineBytes) {
      ++skipped;
      continue;
    }
    auto record = nlohmann::ordered_json::parse(line, nullptr, false);
    if (record.is_discarded() || !record.is_object()) {
      ++skipped;  // torn by a crash mid-write, or not ours
      continue;
    }
    each(record);
  }
  return skipped;
}

}  // namespace

cgroupfs::Result<std::unique_ptr<KillJournal>> KillJournal::open(const std::string& dir, uint64_t max_bytes) {
  // Its parents as mkdir -p makes them (a minimal root may lack /var/lib), the directory itself 0750.
  std::error_code parents;
  std::filesystem::create_directories(std::filesystem::path(dir).parent_path(), parents);
  if (::mkdir(dir.c_str(), 0750) != 0 && errno != EEXIST) {
    return cgroupfs::systemError(errno, dir, "cannot create the state directory");
  }
  // One writer per directory: two daemons appending and rotating the same files would lose records.
  const std::string lock_path = dir + "/lock";
  const int lock_fd = ::open(lock_path.c_str(), O_RDONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0640);
  if (lock_fd < 0) {
    return cgroupfs::systemError(errno, lock_path, "cannot open the lock");
  }
  if (::flock(lock_fd, LOCK_EX | LOCK_NB) != 0) {
    const int saved = errno;
    ::close(lock_fd);
    return cgroupfs::systemError(saved, lock_path,
                                 saved == EWOULDBLOCK ? "another oomguard keeps its history here" : "cannot lock");
  }
  const std::string path = dir + "/" + kKillJournalFile;
  const int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0640);
  if (fd < 0) {
    const int saved = errno;
    ::close(lock_fd);
    return cgroupfs::systemError(saved, path, "cannot open the kill journal");
  }
  struct stat info {};
  if (::fstat(fd, &info) != 0 || !S_ISREG(info.st_mode)) {
    const int saved = errno;
    ::close(fd);
    ::close(lock_fd);
    return cgroupfs::systemError(saved != 0 ? saved : EINVAL, path, "not a regular file");
  }
  auto journal = std::make_unique<KillJournal>(dir, fd, lock_fd, static_cast<uint64_t>(info.st_size), max_bytes);
  // A crash mid-write left a torn line: the next record starts on a line of its own.
  if (info.st_size > 0) {
    char last = '\n';
    const int check = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (check >= 0) {
      if (::pread(check, &last, 1, info.st_size - 1) != 1) {
        last = '\n';
      }
      ::close(check);
    }
    if (last != '\n') {
      if (auto ended = writeAll(fd, "\n", path); !ended) {
        return ended.error();
      }
      ++journal->size_bytes_;
    }
  }
  return journal;
}

KillJournal::KillJournal(std::string dir, int fd, int lock_fd, uint64_t size_bytes, uint64_t max_bytes)
    : dir_(std::move(dir)), fd_(fd), lock_fd_(lock_fd), size_bytes_(size_bytes), max_bytes_(max_bytes) {}

KillJournal::~KillJournal() {
  (void)sync();
  if (fd_ >= 0) {
    ::close(fd_);
  }
  if (lock_fd_ >= 0) {
    ::close(lock_fd_);  // and the lock with it
  }
}

cgroupfs::Result<bool> KillJournal::rotate() {
  const std::string path = dir_ + "/" + kKillJournalFile;
  const std::string old = dir_ + "/" + kKillJournalOldFile;
  if (::rename(path.c_str(), old.c_str()) != 0) {
    return cgroupfs::systemError(errno, path, "cannot rotate the kill journal");
  }
  const int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0640);
  if (fd < 0) {
    const int saved = errno;
    // Back as it was: the next append retries the rotation instead of finding no file to rename.
    (void)::rename(old.c_str(), path.c_str());
    return cgroupfs::systemError(saved, path, "cannot open the kill journal");
  }
  ::close(fd_);
  fd_ = fd;
  size_bytes_ = 0;
  return true;
}

cgroupfs::Result<bool> KillJournal::sync() {
  if (!unsynced_) {
    return true;
  }
  if (::fdatasync(fd_) != 0) {
    return cgroupfs::systemError(errno, dir_ + "/" + kKillJournalFile, "cannot sync the kill journal");
  }
  unsynced_ = false;
  return true;
}

cgroupfs::Result<bool> KillJournal::append(const nlohmann::ordered_json& record) {
  const std::string line = text::jsonText(record) + "\n";
  if (size_bytes_ > 0 && size_bytes_ + line.size() > max_bytes_) {
    if (auto synced = sync(); !synced) {  // the old file's last records, before it is renamed
      return synced.error();
    }
    if (auto rotated = rotate(); !rotated) {
      return rotated.error();
    }
  }
  const std::string path = dir_ + "/" + kKillJournalFile;
  // One write of one line: O_APPEND places it whole at the end (a crash tears at most this line).
  if (auto wrote = writeAll(fd_, line, path); !wrote) {
    return wrote.error();
  }
  size_bytes_ += line.size();
  unsynced_ = true;
  return true;
}

cgroupfs::Result<KillJournalRead> readKillJournal(const std::string& dir) {
  KillJournalRead read;
  auto skipped = forEachKillRecord(dir, [&](const nlohmann::ordered_json& record) { read.records.push_back(record); });
  if (!skipped) {
    return skipped.error();
  }
  read.skipped_lines = skipped.value();
  return read;
}

cgroupfs::Result<size_t> forEachKillRecord(const std::string& dir,
                                           const std::function<void(const nlohmann::ordered_json&)>& each) {
  size_t skipped = 0;
  for (const char* name : {kKillJournalOldFile, kKillJournalFile}) {
    const std::string path = dir + "/" + name;
    if (::access(path.c_str(), F_OK) != 0) {
      if (errno == ENOENT) {
        continue;
      }
      return cgroupfs::systemError(errno, path, "cannot read the kill journal");
    }
    if (::access(path.c_str(), R_OK) != 0) {
      return cgroupfs::systemError(errno, path, "cannot read the kill journal");
    }
    skipped += readLines(path, each);
  }
  return skipped;
}

std::optional<KmsgPosition> readKmsgPosition(const std::string& dir) {
  std::ifstream in(dir + "/" + kKmsgPositionFile);
  KmsgPosition position;
  if (!(in >> position.boot_id >> position.sequence)) {
    return std::nullopt;
  }
  return position;
}

cgroupfs::Result<bool> writeKmsgPosition(const std::string& dir, const KmsgPosition& position) {
  const std::string path = dir + "/" + kKmsgPositionFile;
  const std::string temporary = path + ".new";
  const int fd = ::open(temporary.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0640);
  if (fd < 0) {
    return cgroupfs::systemError(errno, temporary, "cannot write the kmsg position");
  }
  const std::string text = position.boot_id + " " + std::to_string(position.sequence) + "\n";
  // Not synced: after a node crash the boot is another, and this boot's position means nothing to it.
  auto wrote = writeAll(fd, text, temporary);
  ::close(fd);
  if (!wrote) {
    return wrote.error();
  }
  if (::rename(temporary.c_str(), path.c_str()) != 0) {
    return cgroupfs::systemError(errno, path, "cannot write the kmsg position");
  }
  return true;
}

}  // namespace oomguard::guardian::io
