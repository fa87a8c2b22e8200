// The in-cluster endpoint of the Kubernetes API client: from the service environment and the service
// account's files.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <optional>
#include <string>

#include "guardian/kube_client/endpoint.hpp"

namespace oomguard::guardian::kube_client {
namespace {

// What inClusterEndpoint refused, or "" when it found the endpoint.
std::string why(const cgroupfs::Result<KubeApiEndpoint>& endpoint) { return endpoint ? "" : endpoint.error().message; }

class InCluster : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("oomguard-sa-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir_);
    std::ofstream(dir_ / "ca.crt") << "-----BEGIN CERTIFICATE-----\n";
    std::ofstream(dir_ / "token") << "token\n";
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::function<std::optional<std::string>(const char*)> env(std::map<std::string, std::string> values) {
    return [values = std::move(values)](const char* name) -> std::optional<std::string> {
      const auto it = values.find(name);
      return it == values.end() ? std::nullopt : std::optional<std::string>(it->second);
    };
  }

  std::filesystem::path dir_;
};

TEST_F(InCluster, FromServiceEnvironmentAndAccountFiles) {
  const auto endpoint =
      inClusterEndpoint(env({{"KUBERNETES_SERVICE_HOST", "10.96.0.1"}, {"KUBERNETES_SERVICE_PORT", "6443"}}),
                        dir_.string(), "worker-3");
  ASSERT_TRUE(endpoint) << why(endpoint);
  EXPECT_EQ(endpoint->host, "10.96.0.1");
  EXPECT_EQ(endpoint->port, 6443);
  EXPECT_EQ(endpoint->ca_file, (dir_ / "ca.crt").string());
  EXPECT_EQ(endpoint->token_file, (dir_ / "token").string());
  EXPECT_EQ(endpoint->node_name, "worker-3");

  const auto default_port =
      inClusterEndpoint(env({{"KUBERNETES_SERVICE_HOST", "fd00::1"}}), dir_.string(), "n");
  ASSERT_TRUE(default_port) << why(default_port);
  EXPECT_EQ(default_port->port, 443);
}

TEST_F(InCluster, MissingPiecesAreExplained) {
  const auto no_host = inClusterEndpoint(env({}), dir_.string(), "n");
  EXPECT_FALSE(no_host);
  EXPECT_NE(why(no_host).find("KUBERNETES_SERVICE_HOST"), std::string::npos) << why(no_host);

  for (const char* port : {"", "0", "https", "70000", "443x"}) {
    const auto endpoint =
        inClusterEndpoint(env({{"KUBERNETES_SERVICE_HOST", "10.96.0.1"}, {"KUBERNETES_SERVICE_PORT", port}}),
                          dir_.string(), "n");
    // An empty port is taken as unset (443).
    EXPECT_EQ(endpoint.ok(), std::string(port).empty()) << port << ": " << why(endpoint);
  }

  const auto no_node = inClusterEndpoint(env({{"KUBERNETES_SERVICE_HOST", "10.96.0.1"}}), dir_.string(), "");
  EXPECT_FALSE(no_node);
  EXPECT_NE(why(no_node).find("node name"), std::string::npos) << why(no_node);

  std::filesystem::remove(dir_ / "token");
  const auto no_token = inClusterEndpoint(env({{"KUBERNETES_SERVICE_HOST", "10.96.0.1"}}), dir_.string(), "n");
  EXPECT_FALSE(no_token);
  EXPECT_NE(why(no_token).find("token"), std::string::npos) << why(no_token);
}

}  // namespace
}  // namespace oomguard::guardian::kube_client
