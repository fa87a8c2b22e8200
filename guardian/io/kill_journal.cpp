#include "guardian/io/kill_journal.hpp"

#include <fcntl.h>
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

void readLines(const std::string& path, KillJournalRead& read) {
  std::ifstream in(path, std::ios::binary);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) {
      continue;
    }
    if (line.size() > kMaxLineBytes) {
      ++read.skipped_lines;
      continue;
    }
    auto record = nlohmann::ordered_json::parse(line, nullptr, false);
    if (record.is_discarded() || !record.is_object()) {
      ++read.skipped_lines;  // torn by a crash mid-write, or not ours
      continue;
    }
    read.records.push_back(std::move(record));
  }
}

}  // namespace

cgroupfs::Result<std::unique_ptr<KillJournal>> KillJournal::open(const std::string& dir, uint64_t max_bytes) {
  // Its parents as mkdir -p makes them (a minimal root may lack /var/lib), the directory itself 0750.
  std::error_code parents;
  std::filesystem::create_directories(std::filesystem::path(dir).parent_path(), parents);
  if (::mkdir(dir.c_str(), 0750) != 0 && errno != EEXIST) {
    return cgroupfs::systemError(errno, dir, "cannot create the state directory");
  }
  const std::string path = dir + "/" + kKillJournalFile;
  const int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0640);
  if (fd < 0) {
    return cgroupfs::systemError(errno, path, "cannot open the kill journal");
  }
  struct stat info {};
  if (::fstat(fd, &info) != 0 || !S_ISREG(info.st_mode)) {
    const int saved = errno;
    ::close(fd);
    return cgroupfs::systemError(saved != 0 ? saved : EINVAL, path, "not a regular file");
  }
  auto journal = std::make_unique<KillJournal>(dir, fd, static_cast<uint64_t>(info.st_size), max_bytes);
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

KillJournal::KillJournal(std::string dir, int fd, uint64_t size_bytes, uint64_t max_bytes)
    : dir_(std::move(dir)), fd_(fd), size_bytes_(size_bytes), max_bytes_(max_bytes) {}

KillJournal::~KillJournal() {
  if (fd_ >= 0) {
    ::close(fd_);
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
    return cgroupfs::systemError(errno, path, "cannot open the kill journal");
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

cgroupfs::Result<bool> KillJournal::append(const nlohmann::ordered_json& record, bool durable) {
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
  return durable ? sync() : cgroupfs::Result<bool>(true);
}

cgroupfs::Result<KillJournalRead> readKillJournal(const std::string& dir) {
  KillJournalRead read;
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
    readLines(path, read);
  }
  return read;
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
  auto wrote = writeAll(fd, text, temporary);
  if (wrote && ::fdatasync(fd) != 0) {
    wrote = cgroupfs::systemError(errno, temporary, "cannot sync the kmsg position");
  }
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
