// Pure helpers on cgroup v2 paths ("/" is the root; others start with "/" and have no trailing "/").
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace oomguard::cgroupfs {

// "/a/b" -> "/a"; "/a" -> "/"; "/" -> "" (no parent).
std::string parentCgroup(std::string_view path);
// True when `path` is "/" or "/" followed by segments separated by single '/', none of them empty,
// "." or "..", and no NUL: a path that cannot leave the cgroup root it is resolved under.
bool isCanonicalCgroupPath(std::string_view path);
// True when `path` is `ancestor` or lies below it.
bool isSameOrBelow(std::string_view path, std::string_view ancestor);
// A path read from /proc/<pid>/cgroup, relative to the reader's cgroup namespace (its root is "/", a
// cgroup outside it starts with "/.."), as a path of the whole tree, given where the namespace's root
// is in it (`namespace_root`, canonical). nullopt when the result is not canonical (it would climb
// above the tree's root, or holds an empty or "." segment).
std::optional<std::string> resolveCgroupPath(std::string_view namespace_root, std::string_view path);

}  // namespace oomguard::cgroupfs
