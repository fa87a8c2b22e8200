// Reading the cgroup v2 tree under a root given at run time (/sys/fs/cgroup, /host/sys/fs/cgroup, or a
// fixture tree). Cgroup paths are relative to that root and start with "/".
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "cgroupfs/file_reader.hpp"
#include "cgroupfs/paths.hpp"
#include "cgroupfs/procfs.hpp"
#include "cgroupfs/result.hpp"
#include "cgroupfs/types.hpp"

namespace oomguard::cgroupfs {

class CgroupFs {
 public:
  explicit CgroupFs(std::string root);
  [[nodiscard]] const std::string& root() const { return root_; }
  // The directory of a cgroup path on disk.
  [[nodiscard]] std::string directoryOf(std::string_view cgroup) const;

  // memory.max, memory.swap.max, memory.current, memory.oom.group and cgroup.procs, through one held
  // directory handle. Files of a controller that is not enabled there are simply absent.
  Result<CgroupSnapshot> readCgroup(std::string_view cgroup);
  // The cgroup and all below it, in the order the kernel's OOM scan visits them: pre-order, siblings
  // in creation order (inode number). Cgroups that vanish during the walk are counted and skipped.
  std::vector<CgroupSnapshot> readSubtree(std::string_view cgroup, ReadCounters& counters);
  // Child cgroup paths of one cgroup, in creation order.
  Result<std::vector<std::string>> listChildren(std::string_view cgroup);

  Result<std::vector<std::string>> readControllers(std::string_view cgroup);
  Result<MemoryEvents> readMemoryEvents(std::string_view cgroup, bool local);
  Result<Pressure> readPressure(std::string_view cgroup, std::string_view resource);
  Result<FlatKeyed> readFlatKeyed(std::string_view cgroup, std::string_view file);
  // A limit file (memory.max, memory.high, memory.swap.max): bytes, or nullopt for "max".
  Result<LimitBytes> readLimit(std::string_view cgroup, std::string_view file);
  // memory.current in bytes (a negative value is malformed).
  Result<uint64_t> readMemoryCurrent(std::string_view cgroup);
  Result<std::string> readText(std::string_view cgroup, std::string_view file);
  [[nodiscard]] bool hasFile(std::string_view cgroup, std::string_view file) const;

 private:
  struct Child {
    uint64_t inode;
    std::string path;
  };
  Result<std::vector<Child>> listChildrenWithInodes(std::string_view cgroup);
  void walk(std::string_view cgroup, std::vector<CgroupSnapshot>& out, ReadCounters& counters, int depth);
  Result<std::string_view> readFile(std::string_view cgroup, std::string_view file);

  std::string root_;
  FileReader reader_;
};

}  // namespace oomguard::cgroupfs
