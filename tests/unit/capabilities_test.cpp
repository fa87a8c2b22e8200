// What mode act needs of the process's capabilities (io::checkActCapabilities), on effective masks as capget
// shows them; and the live reading of this process's own.
#include <gtest/gtest.h>
#include <linux/capability.h>

#include "guardian/io/features.hpp"

namespace oomguard::guardian::io {
namespace {

constexpr uint64_t bit(int cap) { return uint64_t{1} << cap; }

TEST(ActCapabilities, TheChartsSetActsFully) {
  const uint64_t chart = bit(CAP_KILL) | bit(CAP_SYS_RESOURCE) | bit(CAP_DAC_OVERRIDE) | bit(CAP_SYSLOG) |
                         bit(CAP_IPC_LOCK);
  const auto check = checkActCapabilities(chart);
  EXPECT_TRUE(check.refused.empty());
  EXPECT_TRUE(check.degraded.empty());
}

TEST(ActCapabilities, WithoutCapKillActIsRefusedAndTheCapabilityNamed) {
  const uint64_t observe = bit(CAP_SYS_RESOURCE) | bit(CAP_SYSLOG) | bit(CAP_IPC_LOCK);
  const auto check = checkActCapabilities(observe);
  ASSERT_EQ(check.refused.size(), 1U);
  EXPECT_EQ(check.refused[0].rfind("CAP_KILL", 0), 0U) << check.refused[0];
  ASSERT_EQ(check.degraded.size(), 1U);
  EXPECT_NE(check.degraded[0].find("CAP_DAC_OVERRIDE"), std::string::npos);
}

TEST(ActCapabilities, NothingButCapKillActsWithItsProtectionsDegraded) {
  const auto check = checkActCapabilities(bit(CAP_KILL));
  EXPECT_TRUE(check.refused.empty());
  EXPECT_EQ(check.degraded.size(), 2U);
}

TEST(ActCapabilities, ThisProcessHasAReadableMask) {
  // capget of this process works; the mask is whatever this test runs with.
  EXPECT_TRUE(ownEffectiveCapabilities().has_value());
}

}  // namespace
}  // namespace oomguard::guardian::io
