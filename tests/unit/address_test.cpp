// The one host:port parser (guardian/config/address.hpp): listen addresses and the API server URL.
#include <gtest/gtest.h>

#include "guardian/config/address.hpp"

namespace oomguard::guardian::config {
namespace {

TEST(ListenAddress, NumericOnlyExactlyAsWritten) {
  const auto v4 = parseListenAddress("127.0.0.1:9743");
  ASSERT_TRUE(v4.ok());
  EXPECT_EQ(v4.value().host, "127.0.0.1");
  EXPECT_EQ(v4.value().port, 9743);
  EXPECT_FALSE(v4.value().ipv6);
  const auto v6 = parseListenAddress("[::1]:0");
  ASSERT_TRUE(v6.ok());
  EXPECT_EQ(v6.value().host, "::1");
  EXPECT_TRUE(v6.value().ipv6);
  EXPECT_EQ(v6.value().text(), "[::1]:0");
  // These once passed and bound 0.0.0.0, 127.0.0.1 and 231.231.231.231.
  for (const char* bad : {"256.0.0.0:18090", "383.0.0.1:1", "999.999.999.999:1"}) {
    const auto parsed = parseListenAddress(bad);
    ASSERT_FALSE(parsed.ok()) << bad;
    EXPECT_NE(parsed.error().message.find("numeric IPv4 address"), std::string::npos) << parsed.error().message;
  }
  EXPECT_NE(parseListenAddress("localhost:9743").error().message.find("\"localhost\""), std::string::npos);
}

TEST(HttpsUrl, HostsPortsAndRefusals) {
  const auto named = parseHttpsUrl("https://kubernetes.default.svc");
  ASSERT_TRUE(named.ok());
  EXPECT_EQ(named.value().host, "kubernetes.default.svc");
  EXPECT_EQ(named.value().port, 443);
  const auto ported = parseHttpsUrl("https://10.96.0.1:6443/");
  ASSERT_TRUE(ported.ok());
  EXPECT_EQ(ported.value().host, "10.96.0.1");
  EXPECT_EQ(ported.value().port, 6443);
  const auto v6 = parseHttpsUrl("https://[fd00::1]:6443");
  ASSERT_TRUE(v6.ok());
  EXPECT_EQ(v6.value().host, "fd00::1");
  EXPECT_TRUE(v6.value().ipv6);
  for (const char* bad : {"http://a", "https://", "https://a:0", "https://a:65536", "https://a:", "https://a/b",
                          "https://[fd00::1", "https://[nope]:1", "https://a b", "https://999.1.1.1", "https://a:1:2",
                          "https://user@a"}) {
    EXPECT_FALSE(parseHttpsUrl(bad).ok()) << bad;
  }
}

}  // namespace
}  // namespace oomguard::guardian::config
