// Whole-file reads of small kernel files, through directory fds, into one reusable buffer.
#pragma once

#include <string>
#include <string_view>
#include <utility>

#include "cgroupfs/result.hpp"

namespace oomguard::cgroupfs {

// Owns one file descriptor; closes it on destruction.
class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  UniqueFd(UniqueFd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept;
  ~UniqueFd();

  [[nodiscard]] int get() const { return fd_; }
  [[nodiscard]] bool valid() const { return fd_ >= 0; }
  int release() { return std::exchange(fd_, -1); }

 private:
  int fd_ = -1;
};

// Opens a directory as an O_PATH handle for later openat() calls. The handle pins the directory: a
// /proc/<pid> or cgroup removed and recreated under the same name is not confused with the old one.
Result<UniqueFd> openDirectory(const std::string& path);

class FileReader {
 public:
  // The most a read takes: the largest kernel file read this way is a cgroup.procs of a few hundred
  // thousand pids. More is refused (EFBIG), as is anything but a regular file once a read passes
  // kCheckTypeBytes (kernel files are regular; a fixture tree may hold a FIFO or /dev/zero). Opens are
  // O_NONBLOCK, so a FIFO never blocks: with no writer it reads as empty, with one it fails EAGAIN.
  static constexpr size_t kMaxBytes = size_t{16} * 1024 * 1024;
  static constexpr size_t kCheckTypeBytes = size_t{1024} * 1024;

  // Reads the whole of `name` under `directory_fd` (or an absolute name with AT_FDCWD). The view stays
  // valid until the next read. `path_for_errors` names the file in an Error. A file the kernel makes in
  // one piece (producedWhole) is whole after a read shorter than asked: no second read for its end.
  Result<std::string_view> read(int directory_fd, const char* name, const std::string& path_for_errors);
  Result<std::string_view> read(const std::string& path);
  // Reads the whole of the open file `fd` (named `name`, for producedWhole) from offset 0, with pread: a
  // file kept open and read again. A seq_file makes its text anew for a read at offset 0 and goes on
  // from where it stopped for a read at the offset it reached (fs/seq_file.c seq_read_iter); a regular
  // file is read as it is now. The file's own offset is left alone.
  Result<std::string_view> readFromStart(int fd, std::string_view name, const std::string& path_for_errors);

 private:
  // The read loop of both: read() (`positioned` false) or pread() at the bytes read so far.
  Result<std::string_view> readOpen(int fd, bool positioned, std::string_view name,
                                    const std::string& path_for_errors);

  std::string buffer_;
};

// True when a read of `name` (a path or a base name) that returns less than it asked for has returned the
// whole file, so the read that would return 0 can be skipped. Kernel facts (fs/seq_file.c
// seq_read_iter): a seq_file shown as one record (single_open, kernfs files without seq_start) hands
// over the whole record when the buffer is larger; a multi-record seq_file (cgroup.procs, /proc/vmstat)
// stops when its own page-sized buffer fills, short of the end. oom_score_adj is simple_read_from_buffer
// (whole). Regular files (fixture trees) read to their end or to the buffer's. Only the one-record files
// read on the daemon's hot paths are listed; any other file is read to its end.
bool producedWhole(std::string_view name);

// Writes `text` to `name` under `directory_fd` in one write() (kernel control files need that).
Result<bool> writeFileAt(int directory_fd, const char* name, std::string_view text,
                         const std::string& path_for_errors);

}  // namespace oomguard::cgroupfs
