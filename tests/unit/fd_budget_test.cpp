// The open-file limit and the PSI triggers' share of it (io/fd_budget.hpp): the soft limit raised to the
// hard one (in a child process: a lowered hard limit cannot be raised again), the budget a limit leaves
// for triggers, and shares given back by their holders, a closed trigger's included.
#include "guardian/io/fd_budget.hpp"

#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <filesystem>

#include "guardian/io/watchers.hpp"

namespace oomguard::guardian::io {
namespace {

TEST(OpenFileLimit, TheSoftLimitIsRaisedToTheHardOne) {
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    const rlimit low{64, 256};
    if (::setrlimit(RLIMIT_NOFILE, &low) != 0) {
      ::_exit(10);
    }
    const OpenFileLimit limit = raiseOpenFileLimit();
    rlimit now{};
    ::getrlimit(RLIMIT_NOFILE, &now);
    const bool ok = limit.soft_before == 64 && limit.soft == 256 && limit.hard == 256 &&
                    now.rlim_cur == 256 && now.rlim_max == 256;
    ::_exit(ok ? 0 : 11);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status));
  if (WEXITSTATUS(status) == 10) {
    GTEST_SKIP() << "SKIPPED: this process's hard open-file limit is below 256";
  }
  EXPECT_EQ(WEXITSTATUS(status), 0) << "64 soft, 256 hard: raised to 256";
}

TEST(OpenFileLimit, TriggersGetWhatTheReserveLeaves) {
  EXPECT_EQ(triggerBudgetFor(1024), size_t{512}) << "the common default keeps 512 for everything else";
  EXPECT_EQ(triggerBudgetFor(524288), size_t{524288 - 512});
  EXPECT_EQ(triggerBudgetFor(100), size_t{50}) << "a tiny limit: half of it";
}

TEST(FdBudget, SharesAreTakenUpToTheMaxAndGivenBackByTheirHolders) {
  FdBudget budget(2);
  auto first = budget.take();
  {
    auto second = budget.take();
    EXPECT_TRUE(first && second);
    EXPECT_FALSE(budget.available());
    EXPECT_FALSE(budget.take()) << "spent";
    EXPECT_EQ(budget.used(), size_t{2});
    EXPECT_EQ(budget.free(), size_t{0});
  }
  EXPECT_EQ(budget.used(), size_t{1}) << "a destroyed share is given back";
  FdBudget::Share moved = std::move(first);
  EXPECT_EQ(budget.used(), size_t{1}) << "a move keeps one share";
  moved = budget.take();
  EXPECT_EQ(budget.used(), size_t{1}) << "the share replaced by assignment is given back";
  EXPECT_EQ(budget.free(), size_t{1});
  budget.setMax(0);
  EXPECT_FALSE(budget.available());
  EXPECT_EQ(budget.free(), size_t{0}) << "a max lowered below the shares held: none free";
}

TEST(FdBudget, AClosedTriggerGivesItsShareBack) {
  const std::string file = "/proc/pressure/memory";
  if (!std::filesystem::exists(file)) {
    GTEST_SKIP() << "SKIPPED: this kernel has no PSI (" << file << " is missing)";
  }
  boost::asio::io_context io;
  FdBudget budget(1);
  config::PressureTrigger trigger;
  trigger.resource = "memory";
  trigger.kind = "some";
  trigger.stall_us = 500'000;
  trigger.window_ms = 2000;
  auto armed = PressureWatch::arm(
      io, file, trigger, [](bool, const std::string&) {}, budget.take());
  if (!armed) {
    GTEST_SKIP() << "SKIPPED: no PSI trigger may be armed here: " << armed.error().describe();
  }
  EXPECT_EQ(budget.used(), size_t{1});
  armed.value()->close();
  EXPECT_EQ(budget.used(), size_t{0}) << "closed: its descriptor is free";
  auto again = PressureWatch::arm(
      io, file, trigger, [](bool, const std::string&) {}, budget.take());
  ASSERT_TRUE(again);
  EXPECT_EQ(budget.used(), size_t{1});
  const int released = again.value()->release();
  EXPECT_GE(released, 0);
  ::close(released);
  EXPECT_EQ(budget.used(), size_t{0}) << "released to closeDescriptors: given back";
}

}  // namespace
}  // namespace oomguard::guardian::io
