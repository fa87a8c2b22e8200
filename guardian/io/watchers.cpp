#include "guardian/io/watchers.hpp"

#include "cgroupfs/parse.hpp"

#include <fcntl.h>
#include <pthread.h>
#include <sys/inotify.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <climits>
#include <cstring>
#include <ctime>

namespace oomguard::guardian::io {

// --- PSI -----------------------------------------------------------------------------------------

PressureWatch::PressureWatch(boost::asio::io_context& io, int fd, std::string file, config::PressureTrigger trigger,
                             Callback callback)
    : descriptor_(io, fd), fd_(fd), file_(std::move(file)), trigger_(std::move(trigger)), callback_(std::move(callback)) {
  buffer_.resize(512);
}

namespace {

// Opens `file` and writes the trigger; returns the fd or the errno.
int openTrigger(const std::string& file, const config::PressureTrigger& trigger, int& error) {
  const int fd = ::open(file.c_str(), O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) {
    error = errno;
    return -1;
  }
  const std::string text = trigger.triggerText();
  // The kernel takes the trigger string, NUL included, in one write.
  if (::write(fd, text.c_str(), text.size() + 1) < 0) {
    error = errno;
    ::close(fd);
    return -1;
  }
  return fd;
}

}  // namespace

cgroupfs::Result<std::shared_ptr<PressureWatch>> PressureWatch::arm(boost::asio::io_context& io, const std::string& file,
                                                                    const config::PressureTrigger& trigger, Callback callback,
                                                                    FdBudget::Share share) {
  int error = 0;
  config::PressureTrigger effective = trigger;
  int fd = openTrigger(file, effective, error);
  std::string adjusted;
  constexpr uint64_t kUnprivilegedWindowMs = 2000;
  if (fd < 0 && error == EINVAL && trigger.window_ms % kUnprivilegedWindowMs != 0) {
    // Without CAP_SYS_RESOURCE the kernel only takes windows in whole multiples of 2 s. Round the window
    // up and scale the stall to keep the same share of it.
    effective.window_ms = (trigger.window_ms / kUnprivilegedWindowMs + 1) * kUnprivilegedWindowMs;
    effective.stall_us = trigger.stall_us * effective.window_ms / trigger.window_ms;
    fd = openTrigger(file, effective, error);
    adjusted = "\"" + trigger.triggerText() + "\" refused without CAP_SYS_RESOURCE; armed \"" +
               effective.triggerText() + "\" (unprivileged windows are multiples of 2 s)";
  }
  if (fd < 0) {
    return cgroupfs::systemError(error, file, "cannot arm PSI trigger \"" + trigger.triggerText() + "\"");
  }
  auto watch = std::make_shared<PressureWatch>(io, fd, file, effective, std::move(callback));
  watch->adjusted_ = std::move(adjusted);
  watch->requested_ = trigger;
  watch->share_ = std::move(share);
  // The stall total at arming: a fire must grow it.
  std::string initial(512, '\0');
  if (const ssize_t got = ::pread(fd, initial.data(), initial.size(), 0); got > 0) {
    initial.resize(static_cast<size_t>(got));
    watch->last_total_us_ = watch->stallTotal(initial);
  }
  watch->wait();
  return watch;
}

void PressureWatch::wait() {
  // POLLPRI arrives as EPOLLPRI, which Asio's reactor delivers to "error" waits.
  descriptor_.async_wait(boost::asio::posix::stream_descriptor::wait_error,
                         [self = shared_from_this()](const boost::system::error_code& error) {
                           if (error || !self->descriptor_.is_open()) {
                             return;  // closed
                           }
                           // The poll that woke us consumed the event, so tell "fired" from "gone" by
                           // reading the file through the trigger's own fd: a removed cgroup gives ENODEV.
                           const int fd = self->descriptor_.native_handle();
                           const ssize_t got = ::pread(fd, self->buffer_.data(), self->buffer_.size(), 0);
                           if (got < 0 && errno != EAGAIN && errno != EINTR) {
                             self->close();
                             self->callback_(true, {});
                             return;
                           }
                           const std::string text(self->buffer_.data(), got > 0 ? static_cast<size_t>(got) : 0);
                           self->wait();
                           // A real fire means stall time accrued: a wake-up whose total did not grow is
                           // not the kernel's trigger (readiness left over from another, closed descriptor).
                           const auto total = self->stallTotal(text);
                           if (total && self->last_total_us_ && *total <= *self->last_total_us_) {
                             return;
                           }
                           if (total) {
                             self->last_total_us_ = total;
                           }
                           self->callback_(false, text);
                         });
}

cgroupfs::Result<cgroupfs::Pressure> PressureWatch::read() const {
  // Every line of a pressure file ("some avg10=... total=...", "full ...") fits in 256 bytes.
  if (!descriptor_.is_open()) {
    return cgroupfs::systemError(ENODEV, file_, "trigger closed");
  }
  std::array<char, 512> text{};
  const ssize_t got = ::pread(fd_, text.data(), text.size(), 0);
  if (got < 0) {
    return cgroupfs::systemError(errno, file_, "cannot read");
  }
  return cgroupfs::parsePressure(std::string_view(text.data(), static_cast<size_t>(got))).withPath(file_);
}

std::optional<uint64_t> PressureWatch::stallTotal(const std::string& text) const {
  auto pressure = cgroupfs::parsePressure(text);
  if (!pressure) {
    return std::nullopt;
  }
  if (trigger_.kind == "full") {
    return pressure.value().full ? std::optional<uint64_t>(pressure.value().full->total_us) : std::nullopt;
  }
  return pressure.value().some.total_us;
}

void PressureWatch::close() {
  boost::system::error_code ignored;
  descriptor_.close(ignored);
  share_ = {};
}

int PressureWatch::release() {
  if (!descriptor_.is_open()) {
    return -1;
  }
  share_ = {};  // the caller closes the descriptor now
  return descriptor_.release();  // the pending wait ends with operation_aborted; the reactor forgets it
}

namespace {

struct CloseWork {
  const std::vector<int>* fds;
  std::atomic<size_t> next{0};
};

void* closeSome(void* arg) {
  auto& work = *static_cast<CloseWork*>(arg);
  for (size_t i = work.next++; i < work.fds->size(); i = work.next++) {
    ::close((*work.fds)[i]);
  }
  return nullptr;
}

}  // namespace

size_t closeDescriptors(const std::vector<int>& fds, size_t max_threads) {
  CloseWork work{&fds};
  std::vector<pthread_t> threads;
  const size_t wanted = std::min(max_threads, fds.size() / 4);  // a few closes are not worth a thread
  pthread_attr_t attr;
  if (wanted > 0 && ::pthread_attr_init(&attr) == 0) {
    constexpr size_t kStackBytes = size_t{64} * 1024;  // a loop around close(2); under mlockall, locked on fault
    ::pthread_attr_setstacksize(&attr, kStackBytes);
    for (size_t i = 0; i < wanted; ++i) {
      pthread_t thread{};
      if (::pthread_create(&thread, &attr, closeSome, &work) != 0) {
        break;
      }
      threads.push_back(thread);
    }
    ::pthread_attr_destroy(&attr);
  }
  closeSome(&work);  // the caller takes its share, and all of it when no thread started
  for (const pthread_t thread : threads) {
    ::pthread_join(thread, nullptr);
  }
  return threads.size();
}

// --- inotify -------------------------------------------------------------------------------------

InotifyWatch::InotifyWatch(boost::asio::io_context& io, int fd, Callback callback)
    : descriptor_(io, fd), callback_(std::move(callback)) {
  buffer_.resize(64 * (sizeof(inotify_event) + NAME_MAX + 1));
}

cgroupfs::Result<std::unique_ptr<InotifyWatch>> InotifyWatch::open(boost::asio::io_context& io, Callback callback) {
  const int fd = ::inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (fd < 0) {
    return cgroupfs::systemError(errno, "inotify", "inotify_init1 failed");
  }
  auto watch = std::make_unique<InotifyWatch>(io, fd, std::move(callback));
  watch->read();
  return watch;
}

cgroupfs::Result<int> InotifyWatch::add(const std::string& path, uint32_t mask) {
  const int wd = ::inotify_add_watch(descriptor_.native_handle(), path.c_str(), mask);
  if (wd < 0) {
    return cgroupfs::systemError(errno, path, "inotify_add_watch failed");
  }
  return wd;
}

void InotifyWatch::remove(int wd) { ::inotify_rm_watch(descriptor_.native_handle(), wd); }

void InotifyWatch::read() {
  descriptor_.async_read_some(
      boost::asio::buffer(buffer_), [this, alive = alive_](const boost::system::error_code& error, size_t bytes) {
        if (!*alive || error) {
          return;
        }
        size_t offset = 0;
        while (offset + sizeof(inotify_event) <= bytes) {
          inotify_event header{};
          std::memcpy(&header, buffer_.data() + offset, sizeof header);
          const char* name = buffer_.data() + offset + sizeof(inotify_event);
          const std::string entry = header.len > 0 ? std::string(name, ::strnlen(name, header.len)) : std::string();
          offset += sizeof(inotify_event) + header.len;
          callback_(header.wd, header.mask, entry);
          if (!*alive) {
            return;
          }
        }
        read();
      });
}

void InotifyWatch::close() {
  *alive_ = false;
  boost::system::error_code ignored;
  descriptor_.close(ignored);
}

// --- /dev/kmsg -----------------------------------------------------------------------------------

KmsgWatch::KmsgWatch(boost::asio::io_context& io, int fd, Callback callback)
    : descriptor_(io, fd), callback_(std::move(callback)) {
  buffer_.resize(8192);  // one record is at most about 1 kB plus its dictionary
}

cgroupfs::Result<std::unique_ptr<KmsgWatch>> KmsgWatch::open(boost::asio::io_context& io, const std::string& path,
                                                             Callback callback, const Callback& replay) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) {
    return cgroupfs::systemError(errno, path, "cannot open");
  }
  // The live descriptor starts at the end: every record from here on is acted on, including those that
  // arrive while the replay below reads (it reads them too: the history keeps each once, by sequence).
  if (::lseek(fd, 0, SEEK_END) < 0 && errno != ESPIPE) {  // ESPIPE: a FIFO (tests) is always at its end
    const int saved = errno;
    ::close(fd);
    return cgroupfs::systemError(saved, path, "cannot seek to the end");
  }
  if (replay) {
    // A second descriptor starts at the oldest record the ring buffer holds: read up to the newest.
    const int from_start = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (from_start >= 0) {
      std::vector<char> buffer(8192);
      // Bounded even if records arrive as fast as they are read: the largest ring buffer (32 MiB) holds
      // fewer records than this, and the start-up must not stall either.
      constexpr uint64_t kMaxRecords = 1'000'000;
      constexpr int64_t kMaxReplayNs = 2'000'000'000;
      timespec began{};
      ::clock_gettime(CLOCK_MONOTONIC, &began);
      for (uint64_t records = 0; records < kMaxRecords; ++records) {
        timespec now{};
        ::clock_gettime(CLOCK_MONOTONIC, &now);
        if ((now.tv_sec - began.tv_sec) * 1'000'000'000 + (now.tv_nsec - began.tv_nsec) > kMaxReplayNs) {
          break;
        }
        const ssize_t got = ::read(from_start, buffer.data(), buffer.size());
        if (got > 0) {
          replay(std::string(buffer.data(), static_cast<size_t>(got)));
        } else if (got < 0 && (errno == EPIPE || errno == EINTR)) {
          continue;  // EPIPE: overwritten while we read; the next read resumes at the oldest left
        } else {
          break;  // EAGAIN: drained (0: a FIFO or a plain file in tests, at its end)
        }
      }
      ::close(from_start);
    }
  }
  auto watch = std::make_unique<KmsgWatch>(io, fd, std::move(callback));
  watch->wait();
  return watch;
}

void KmsgWatch::wait() {
  descriptor_.async_wait(boost::asio::posix::stream_descriptor::wait_read,
                         [this, alive = alive_](const boost::system::error_code& error) {
                           if (!*alive || error) {
                             return;
                           }
                           for (;;) {
                             const ssize_t got = ::read(descriptor_.native_handle(), buffer_.data(), buffer_.size());
                             if (got > 0) {
                               callback_(std::string(buffer_.data(), static_cast<size_t>(got)));
                               if (!*alive) {
                                 return;
                               }
                               continue;
                             }
                             if (got < 0 && errno == EPIPE) {
                               ++lost_records_;  // overwritten before we read them; the next read resumes
                               continue;
                             }
                             if (got < 0 && errno == EINTR) {
                               continue;
                             }
                             break;  // EAGAIN: drained
                           }
                           wait();
                         });
}

void KmsgWatch::close() {
  *alive_ = false;
  boost::system::error_code ignored;
  descriptor_.close(ignored);
}

}  // namespace oomguard::guardian::io
