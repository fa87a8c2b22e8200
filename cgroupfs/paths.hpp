// Pure helpers on cgroup v2 paths ("/" is the root; others start with "/" and have no trailing "/").
#pragma once

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

}  // namespace oomguard::cgroupfs
