// PressureWatch::read on this machine's own /proc/pressure/memory: the pressure text through the
// trigger's descriptor, again and again (pread at offset 0), and an error once the trigger is closed.
// A trigger is per descriptor and goes with it: nothing of the host is changed.
#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>
#include <cerrno>
#include <filesystem>

#include "guardian/io/watchers.hpp"

namespace oomguard::guardian::io {
namespace {

TEST(PressureWatch, ReadsThePressureThroughItsTriggerUntilClosed) {
  const std::string file = "/proc/pressure/memory";
  if (!std::filesystem::exists(file)) {
    GTEST_SKIP() << "SKIPPED: this kernel has no PSI (" << file << " is missing)";
  }
  boost::asio::io_context io;
  config::PressureTrigger trigger;
  trigger.resource = "memory";
  trigger.kind = "some";
  trigger.stall_us = 500'000;
  trigger.window_ms = 2000;  // a whole multiple of 2 s: armable without CAP_SYS_RESOURCE too
  auto watch = PressureWatch::arm(io, file, trigger, [](bool, const std::string&) {});
  if (!watch && (watch.error().errno_value == EACCES || watch.error().errno_value == EPERM ||
                 watch.error().errno_value == EROFS || watch.error().errno_value == EOPNOTSUPP)) {
    GTEST_SKIP() << "SKIPPED: no PSI trigger may be armed here: " << watch.error().describe();
  }
  ASSERT_TRUE(watch) << watch.error().describe();
  uint64_t last_total_us = 0;
  for (int i = 0; i < 3; ++i) {  // the same descriptor, read again from the start each time
    auto pressure = watch.value()->read();
    ASSERT_TRUE(pressure) << pressure.error().describe();
    EXPECT_GE(pressure.value().some.total_us, last_total_us) << "a stall total never goes back";
    EXPECT_TRUE(pressure.value().full.has_value()) << "memory pressure has a full line";
    last_total_us = pressure.value().some.total_us;
  }
  watch.value()->close();
  EXPECT_FALSE(watch.value()->read()) << "a closed trigger is not read (its descriptor number may be reused)";
}

}  // namespace
}  // namespace oomguard::guardian::io
