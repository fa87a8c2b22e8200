// Kernel event sources on a boost::asio::io_context: PSI triggers (POLLPRI), inotify, /dev/kmsg.
// Each owns its file descriptor; close() (or destruction) cancels the pending wait, after which the
// callback is never called again.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "cgroupfs/result.hpp"
#include "cgroupfs/types.hpp"
#include "guardian/config/config.hpp"
#include "guardian/io/fd_budget.hpp"

namespace oomguard::guardian::io {

// A PSI trigger armed on one pressure file. The callback gets the file's content read right after the
// wake-up (the current averages), or gone = true when the cgroup was removed (the trigger is dead then).
class PressureWatch : public std::enable_shared_from_this<PressureWatch> {
 public:
  using Callback = std::function<void(bool gone, const std::string& pressure_text)>;
  // Opens `file` O_RDWR|O_NONBLOCK, writes the trigger, and starts waiting. The watch holds `share` (its
  // descriptor's place in the caller's FdBudget) until it is closed; an empty share is no budget.
  static cgroupfs::Result<std::shared_ptr<PressureWatch>> arm(boost::asio::io_context& io, const std::string& file,
                                                              const config::PressureTrigger& trigger, Callback callback,
                                                              FdBudget::Share share = {});
  void close();
  // Stops waiting and hands the descriptor to the caller (-1 when already closed): for closeDescriptors.
  [[nodiscard]] int release();
  [[nodiscard]] const std::string& file() const { return file_; }
  // The trigger in force (it may differ from the one asked for: see adjustment()).
  [[nodiscard]] const config::PressureTrigger& trigger() const { return trigger_; }
  // Non-empty when the kernel refused the asked-for trigger and a rounded one was armed instead.
  [[nodiscard]] const std::string& adjustment() const { return adjusted_; }
  // The trigger the caller asked for.
  [[nodiscard]] const config::PressureTrigger& requested() const { return requested_; }
  // The pressure file as it is now, read through the trigger's own descriptor (pread at 0: the kernel
  // regenerates the text; no open, no path walk, and the trigger is left as it was). ENODEV once the
  // cgroup is gone.
  [[nodiscard]] cgroupfs::Result<cgroupfs::Pressure> read() const;
  PressureWatch(boost::asio::io_context& io, int fd, std::string file, config::PressureTrigger trigger, Callback callback);

 private:
  void wait();
  boost::asio::posix::stream_descriptor descriptor_;
  int fd_;  // descriptor_'s, for reads while it is open
  std::string file_;
  config::PressureTrigger trigger_;
  Callback callback_;
  std::string buffer_;
  std::string adjusted_;
  config::PressureTrigger requested_;
  std::optional<uint64_t> last_total_us_;  // the trigger kind's stall total at arming / the last fire
  FdBudget::Share share_;                  // given back when the descriptor is closed or released
  [[nodiscard]] std::optional<uint64_t> stallTotal(const std::string& text) const;
};

// Closes every descriptor in `fds`; returns when all are closed. Closing a PSI trigger costs the kernel
// an RCU grace period (psi_trigger_destroy() calls synchronize_rcu(), then stops the group's psimon
// kthread): closed one after another, 500 triggers took 5.7 s in the VM lab. Here they are closed from up
// to `max_threads` threads at once (small stacks), whose waits overlap; where no thread can be started,
// by the caller alone. Returns the number of threads that closed them (0: the caller).
size_t closeDescriptors(const std::vector<int>& fds, size_t max_threads = 16);

// One inotify instance. Callbacks get the watch descriptor, the mask and the name (for directory events).
class InotifyWatch {
 public:
  using Callback = std::function<void(int wd, uint32_t mask, const std::string& name)>;
  static cgroupfs::Result<std::unique_ptr<InotifyWatch>> open(boost::asio::io_context& io, Callback callback);
  InotifyWatch(boost::asio::io_context& io, int fd, Callback callback);
  cgroupfs::Result<int> add(const std::string& path, uint32_t mask);
  void remove(int wd);
  void close();

 private:
  void read();
  boost::asio::posix::stream_descriptor descriptor_;
  Callback callback_;
  std::vector<char> buffer_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

// /dev/kmsg: every record written after open, one callback per record. With `replay`, the records the
// kernel's ring buffer holds are also given to `replay`, synchronously, oldest first, before open returns
// (the kill history resumes from them), read through a second descriptor: those that arrive while it
// reads reach both `replay` and `callback`.
class KmsgWatch {
 public:
  using Callback = std::function<void(const std::string& record)>;
  static cgroupfs::Result<std::unique_ptr<KmsgWatch>> open(boost::asio::io_context& io, const std::string& path,
                                                           Callback callback, const Callback& replay = {});
  KmsgWatch(boost::asio::io_context& io, int fd, Callback callback);
  void close();
  [[nodiscard]] uint64_t lostRecords() const { return lost_records_; }

 private:
  void wait();
  boost::asio::posix::stream_descriptor descriptor_;
  Callback callback_;
  std::vector<char> buffer_;
  uint64_t lost_records_ = 0;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace oomguard::guardian::io
