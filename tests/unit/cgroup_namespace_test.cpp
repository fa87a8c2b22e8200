// Where a process's cgroup is when oomguard reads /proc from inside a private cgroup namespace
// (containerd's default on cgroup v2, so a DaemonSet's): /proc/<pid>/cgroup names it relative to that
// namespace ("/../../kubepods/..." outside it), and io::Node resolves it to a path of the whole tree.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "cgroupfs/paths.hpp"
#include "guardian/io/node.hpp"

namespace oomguard {
namespace {

TEST(ResolveCgroupPath, ClimbsFromTheNamespaceRootAndNeverAboveTheTree) {
  using cgroupfs::resolveCgroupPath;
  EXPECT_EQ(resolveCgroupPath("/", "/a/b"), "/a/b");
  EXPECT_EQ(resolveCgroupPath("/kubepods/burstable/podA/c1", "/"), "/kubepods/burstable/podA/c1");
  EXPECT_EQ(resolveCgroupPath("/kubepods/burstable/podA/c1", "/sub"), "/kubepods/burstable/podA/c1/sub");
  EXPECT_EQ(resolveCgroupPath("/kubepods/burstable/podA/c1", "/../../../besteffort/podB/c2"),
            "/kubepods/besteffort/podB/c2");
  EXPECT_EQ(resolveCgroupPath("/kubepods/burstable/podA/c1", "/../../../.."), "/");
  EXPECT_EQ(resolveCgroupPath("/kubepods/burstable/podA/c1", "/../../../../init.scope"), "/init.scope");
  EXPECT_EQ(resolveCgroupPath("/a", "/../.."), std::nullopt) << "above the tree's root";
  EXPECT_EQ(resolveCgroupPath("/a", "/b//c"), std::nullopt);
  EXPECT_EQ(resolveCgroupPath("/a", "/./b"), std::nullopt);
  EXPECT_EQ(resolveCgroupPath("/a", "b"), std::nullopt);
}

class NamespaceTree : public ::testing::Test {
 protected:
  std::filesystem::path root = std::filesystem::temp_directory_path() /
                               ("oomguard-cgroupns-" + std::to_string(::getpid()));
  const pid_t self = ::getpid();

  void SetUp() override {
    for (const char* dir : {"", "/kubepods", "/kubepods/burstable", "/kubepods/burstable/podA",
                            "/kubepods/burstable/podA/c1", "/kubepods/besteffort", "/kubepods/besteffort/podB",
                            "/kubepods/besteffort/podB/c2"}) {
      std::filesystem::create_directories(root / ("cgroup" + std::string(dir)));
      write("cgroup" + std::string(dir) + "/cgroup.procs", "");
    }
    write("cgroup/kubepods/burstable/podA/c1/cgroup.procs", std::to_string(self) + "\n");
    process(self, "/");
    process(777, "/../../../besteffort/podB/c2");
    process(778, "/../../../../../../etc");
  }
  void TearDown() override { std::filesystem::remove_all(root); }
  void write(const std::string& relative, const std::string& text) const { std::ofstream(root / relative) << text; }
  void process(pid_t pid, const std::string& cgroup) const {
    std::filesystem::create_directories(root / ("proc/" + std::to_string(pid)));
    write("proc/" + std::to_string(pid) + "/cgroup", "0::" + cgroup + "\n");
  }
};

TEST_F(NamespaceTree, PathsAreResolvedAgainstWhereTheNamespaceRootIsInTheTree) {
  guardian::io::Node node((root / "proc").string(), (root / "cgroup").string());
  EXPECT_EQ(node.readCgroupPath(777).value(), "/kubepods/besteffort/podB/c2");
  EXPECT_EQ(node.readCgroupPath(self).value(), "/kubepods/burstable/podA/c1");
  EXPECT_FALSE(node.readCgroupPath(778).ok()) << "a path that climbs out of the tree is no place";
  EXPECT_FALSE(node.readCgroupPath(779).ok()) << "gone";
}

TEST_F(NamespaceTree, OnAHostThePathsAreTheTreesOwn) {
  process(self, "/kubepods/burstable/podA/c1");  // no private namespace: the path read is the tree's
  process(777, "/kubepods/besteffort/podB/c2");
  process(780, "/../../kubepods/x");  // no private namespace, yet a path above the tree's root
  guardian::io::Node node((root / "proc").string(), (root / "cgroup").string());
  EXPECT_EQ(node.readCgroupPath(777).value(), "/kubepods/besteffort/podB/c2");
  EXPECT_FALSE(node.readCgroupPath(780).ok()) << "never a path that leaves --cgroup-root";
}

TEST_F(NamespaceTree, AnUnknownNamespaceRootLeavesNoPathOutsideIt) {
  write("cgroup/kubepods/burstable/podA/c1/cgroup.procs", "");  // oomguard is not in the tree it reads
  guardian::io::Node node((root / "proc").string(), (root / "cgroup").string());
  EXPECT_FALSE(node.readCgroupPath(777).ok());
  EXPECT_EQ(node.readCgroupPath(self).value(), "/") << "inside the namespace: taken as read";
}

}  // namespace
}  // namespace oomguard
