// PressureWatch::read on this machine's own /proc/pressure/memory: the pressure text through the
// trigger's descriptor, again and again (pread at offset 0), and an error once the trigger is closed or
// its descriptor handed over (release, for closeDescriptors, which closes many at once from threads).
// A trigger is per descriptor and goes with it: nothing of the host is changed.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <cerrno>
#include <filesystem>
#include <memory>
#include <utility>
#include <vector>

#include "guardian/io/watchers.hpp"

namespace oomguard::guardian::io {
namespace {

// A trigger on this machine's memory pressure, "some 500 ms / 2 s" (a whole multiple of 2 s: armable
// without CAP_SYS_RESOURCE too); the test is skipped where none may be armed.
class HostTrigger : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string file = "/proc/pressure/memory";
    if (!std::filesystem::exists(file)) {
      GTEST_SKIP() << "SKIPPED: this kernel has no PSI (" << file << " is missing)";
    }
    config::PressureTrigger trigger;
    trigger.resource = "memory";
    trigger.kind = "some";
    trigger.stall_us = 500'000;
    trigger.window_ms = 2000;
    auto armed = PressureWatch::arm(io, file, trigger, [](bool, const std::string&) {});
    if (!armed) {
      const int error = armed.error().errno_value;
      if (error == EACCES || error == EPERM || error == EROFS || error == EOPNOTSUPP) {
        GTEST_SKIP() << "SKIPPED: no PSI trigger may be armed here: " << armed.error().describe();
      }
      FAIL() << armed.error().describe();
    }
    watch = std::move(armed).value();
  }
  boost::asio::io_context io;
  std::shared_ptr<PressureWatch> watch;
};

TEST_F(HostTrigger, ReadsThePressureThroughItsTriggerUntilClosed) {
  uint64_t last_total_us = 0;
  for (int i = 0; i < 3; ++i) {  // the same descriptor, read again from the start each time
    auto pressure = watch->read();
    ASSERT_TRUE(pressure) << pressure.error().describe();
    EXPECT_GE(pressure.value().some.total_us, last_total_us) << "a stall total never goes back";
    EXPECT_TRUE(pressure.value().full.has_value()) << "memory pressure has a full line";
    last_total_us = pressure.value().some.total_us;
  }
  watch->close();
  EXPECT_FALSE(watch->read()) << "a closed trigger is not read (its descriptor number may be reused)";
}

TEST_F(HostTrigger, ReleaseHandsTheDescriptorOverOnce) {
  const int fd = watch->release();
  ASSERT_GE(fd, 0);
  EXPECT_EQ(::fcntl(fd, F_GETFD), FD_CLOEXEC) << "still open, now the caller's";
  EXPECT_EQ(watch->release(), -1) << "handed over once";
  EXPECT_FALSE(watch->read()) << "a released trigger is not read through";
  EXPECT_EQ(io.poll(), 1U) << "the pending wait ended (operation_aborted)";
  closeDescriptors({fd});
  errno = 0;
  EXPECT_EQ(::fcntl(fd, F_GETFD), -1);
  EXPECT_EQ(errno, EBADF);
}

// Many descriptors: every one closed, from several threads; a few: by the caller alone.
TEST(CloseDescriptors, ClosesEveryDescriptorFromThreadsOrTheCaller) {
  for (const size_t count : {size_t{0}, size_t{3}, size_t{200}}) {
    std::vector<int> fds;
    for (size_t i = 0; i < count; ++i) {
      const int fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
      ASSERT_GE(fd, 0);
      fds.push_back(fd);
    }
    const size_t threads = closeDescriptors(fds);
    EXPECT_EQ(threads, count >= 64 ? 16U : count / 4) << count << " descriptors";
    for (const int fd : fds) {
      errno = 0;
      EXPECT_EQ(::fcntl(fd, F_GETFD), -1) << "descriptor " << fd << " of " << count << " left open";
      EXPECT_EQ(errno, EBADF);
    }
  }
}

}  // namespace
}  // namespace oomguard::guardian::io
