#include "cgroupfs/cgroup_tree.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <memory>

#include "cgroupfs/parse.hpp"

namespace oomguard::cgroupfs {

CgroupFs::CgroupFs(std::string root) : root_(std::move(root)) {
  while (root_.size() > 1 && root_.ends_with('/')) {
    root_.pop_back();
  }
}

std::string CgroupFs::directoryOf(std::string_view cgroup) const {
  if (cgroup.empty() || cgroup == "/") {
    return root_;
  }
  return root_ + std::string(cgroup);
}

namespace {

std::string childPath(std::string_view parent, std::string_view name) {
  std::string path(parent == "/" ? std::string_view() : parent);
  path += '/';
  path += name;
  return path;
}

}  // namespace

Result<CgroupSnapshot> CgroupFs::readCgroup(std::string_view cgroup) {
  const std::string directory = directoryOf(cgroup);
  auto handle = openDirectory(directory);
  if (!handle) {
    return handle.error();
  }
  const int fd = handle.value().get();
  CgroupSnapshot snapshot;
  snapshot.path = cgroup.empty() ? std::string("/") : std::string(cgroup);
  struct stat info {};
  if (::fstat(fd, &info) == 0) {
    snapshot.inode = info.st_ino;
  }

  // Reads an optional file: absent (ENOENT) is fine and leaves `found` false.
  auto read_optional = [&](const char* name, bool& found) -> Result<std::string_view> {
    found = false;
    auto text = reader_.read(fd, name, directory + "/" + name);
    if (!text) {
      if (text.error().errno_value == ENOENT) {
        return std::string_view();
      }
      return text.error();
    }
    found = true;
    return text;
  };
  bool found = false;

  auto max_text = read_optional("memory.max", found);
  if (!max_text) {
    return max_text.error();
  }
  if (found) {
    snapshot.has_memory_controller = true;
    auto limit = parseLimit(max_text.value()).withPath(directory + "/memory.max");
    if (!limit) {
      return limit.error();
    }
    snapshot.memory_max_bytes = limit.value();
  }

  auto swap_text = read_optional("memory.swap.max", found);
  if (!swap_text) {
    return swap_text.error();
  }
  if (found) {
    auto limit = parseLimit(swap_text.value()).withPath(directory + "/memory.swap.max");
    if (!limit) {
      return limit.error();
    }
    snapshot.swap_max_bytes = limit.value();
  }

  auto current_text = read_optional("memory.current", found);
  if (!current_text) {
    return current_text.error();
  }
  if (found) {
    auto current = parseInteger(current_text.value()).withPath(directory + "/memory.current");
    if (!current || current.value() < 0) {
      return current ? parseError("negative memory.current") : current.error();
    }
    snapshot.memory_current_bytes = static_cast<uint64_t>(current.value());
  }

  auto group_text = read_optional("memory.oom.group", found);
  if (!group_text) {
    return group_text.error();
  }
  if (found) {
    auto flag = parseInteger(group_text.value()).withPath(directory + "/memory.oom.group");
    if (!flag || (flag.value() != 0 && flag.value() != 1)) {
      return flag ? Error{0, directory + "/memory.oom.group", "expected 0 or 1"} : flag.error();
    }
    snapshot.oom_group = flag.value() == 1;
  }

  auto procs_text = reader_.read(fd, "cgroup.procs", directory + "/cgroup.procs");
  if (!procs_text && procs_text.error().errno_value == EOPNOTSUPP) {
    // A threaded cgroup (cgroup-v2.rst, "Threads"): cgroup.procs is not readable there, and its
    // threads' processes are listed in the threaded domain's cgroup.procs above it. No process of its own.
    return snapshot;
  }
  if (!procs_text) {
    return procs_text.error();
  }
  auto procs = parsePidList(procs_text.value()).withPath(directory + "/cgroup.procs");
  if (!procs) {
    return procs.error();
  }
  snapshot.procs = std::move(procs).value();
  return snapshot;
}

Result<std::vector<CgroupFs::Child>> CgroupFs::listChildrenWithInodes(std::string_view cgroup) {
  const std::string directory = directoryOf(cgroup);
  const int fd = ::open(directory.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) {
    return systemError(errno, directory, "cannot list");
  }
  const std::unique_ptr<DIR, int (*)(DIR*)> dir(::fdopendir(fd), ::closedir);
  if (!dir) {
    const int saved = errno;
    ::close(fd);
    return systemError(saved, directory, "cannot list");
  }
  std::vector<Child> children;
  while (const dirent* entry = ::readdir(dir.get())) {
    const std::string_view name(entry->d_name);
    if (name == "." || name == "..") {
      continue;
    }
    bool is_directory = entry->d_type == DT_DIR;
    if (entry->d_type == DT_UNKNOWN) {
      struct stat info {};
      is_directory = ::fstatat(fd, entry->d_name, &info, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(info.st_mode);
    }
    if (is_directory) {
      children.push_back(Child{entry->d_ino, childPath(cgroup.empty() ? "/" : cgroup, name)});
    }
  }
  std::sort(children.begin(), children.end(), [](const Child& a, const Child& b) {
    return a.inode != b.inode ? a.inode < b.inode : a.path < b.path;
  });
  return children;
}

Result<std::vector<std::string>> CgroupFs::listChildren(std::string_view cgroup) {
  auto children = listChildrenWithInodes(cgroup);
  if (!children) {
    return children.error();
  }
  std::vector<std::string> paths;
  paths.reserve(children.value().size());
  for (auto& child : children.value()) {
    paths.push_back(std::move(child.path));
  }
  return paths;
}

void CgroupFs::walk(std::string_view cgroup, std::vector<CgroupSnapshot>& out, ReadCounters& counters,
                    int depth) {
  constexpr int kMaxDepth = 64;  // far above cgroup.max.depth in practice; guards against loops in fixtures
  auto snapshot = readCgroup(cgroup);
  if (!snapshot) {
    counters.record(snapshot.error());
    return;
  }
  out.push_back(std::move(snapshot).value());
  if (depth >= kMaxDepth) {
    return;
  }
  auto children = listChildrenWithInodes(cgroup);
  if (!children) {
    counters.record(children.error());
    return;
  }
  for (const auto& child : children.value()) {
    walk(child.path, out, counters, depth + 1);
  }
}

std::vector<CgroupSnapshot> CgroupFs::readSubtree(std::string_view cgroup, ReadCounters& counters) {
  std::vector<CgroupSnapshot> out;
  walk(cgroup.empty() ? "/" : cgroup, out, counters, 0);
  return out;
}

Result<std::string_view> CgroupFs::readFile(std::string_view cgroup, std::string_view file) {
  return reader_.read(directoryOf(cgroup) + "/" + std::string(file));
}

namespace {

template <class Parser>
auto parseFrom(Result<std::string_view> text, const std::string& path, Parser parser)
    -> decltype(parser(std::string_view())) {
  if (!text) {
    return text.error();
  }
  return parser(text.value()).withPath(path);
}

}  // namespace

Result<std::vector<std::string>> CgroupFs::readControllers(std::string_view cgroup) {
  return parseFrom(readFile(cgroup, "cgroup.controllers"), directoryOf(cgroup) + "/cgroup.controllers",
                   parseWordList);
}

Result<MemoryEvents> CgroupFs::readMemoryEvents(std::string_view cgroup, bool local) {
  const std::string_view name = local ? "memory.events.local" : "memory.events";
  return parseFrom(readFile(cgroup, name), directoryOf(cgroup) + "/" + std::string(name), parseMemoryEvents);
}

Result<Pressure> CgroupFs::readPressure(std::string_view cgroup, std::string_view resource) {
  const std::string name = std::string(resource) + ".pressure";
  return parseFrom(readFile(cgroup, name), directoryOf(cgroup) + "/" + name, parsePressure);
}

Result<FlatKeyed> CgroupFs::readFlatKeyed(std::string_view cgroup, std::string_view file) {
  return parseFrom(readFile(cgroup, file), directoryOf(cgroup) + "/" + std::string(file), parseFlatKeyed);
}

Result<LimitBytes> CgroupFs::readLimit(std::string_view cgroup, std::string_view file) {
  return parseFrom(readFile(cgroup, file), directoryOf(cgroup) + "/" + std::string(file), parseLimit);
}

Result<uint64_t> CgroupFs::readMemoryCurrent(std::string_view cgroup) {
  auto current = parseFrom(readFile(cgroup, "memory.current"), directoryOf(cgroup) + "/memory.current", parseInteger);
  if (!current) {
    return current.error();
  }
  if (current.value() < 0) {
    return Error{0, directoryOf(cgroup) + "/memory.current", "negative"};
  }
  return static_cast<uint64_t>(current.value());
}

Result<std::string> CgroupFs::readText(std::string_view cgroup, std::string_view file) {
  auto text = readFile(cgroup, file);
  if (!text) {
    return text.error();
  }
  return std::string(text.value());
}

bool CgroupFs::hasFile(std::string_view cgroup, std::string_view file) const {
  const std::string path = directoryOf(cgroup) + "/" + std::string(file);
  return ::access(path.c_str(), F_OK) == 0;
}

}  // namespace oomguard::cgroupfs
