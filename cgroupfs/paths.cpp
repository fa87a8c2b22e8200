#include "cgroupfs/paths.hpp"

namespace oomguard::cgroupfs {

std::string parentCgroup(std::string_view path) {
  if (path.empty() || path == "/") {
    return {};
  }
  const auto slash = path.rfind('/');
  return slash == 0 ? std::string("/") : std::string(path.substr(0, slash));
}

bool isCanonicalCgroupPath(std::string_view path) {
  if (!path.starts_with('/') || path.find('\0') != std::string_view::npos) {
    return false;
  }
  if (path == "/") {
    return true;
  }
  std::string_view rest = path.substr(1);
  while (true) {
    const auto slash = rest.find('/');
    const auto segment = rest.substr(0, slash);
    if (segment.empty() || segment == "." || segment == "..") {
      return false;
    }
    if (slash == std::string_view::npos) {
      return true;
    }
    rest.remove_prefix(slash + 1);
  }
}

std::optional<std::string> resolveCgroupPath(std::string_view namespace_root, std::string_view path) {
  if (!path.starts_with('/')) {
    return std::nullopt;
  }
  std::string resolved(namespace_root == "/" ? "" : namespace_root);
  std::string_view rest = path.substr(1);
  while (!rest.empty()) {
    const auto slash = rest.find('/');
    const auto segment = rest.substr(0, slash);
    if (segment == "..") {
      if (resolved.empty()) {
        return std::nullopt;  // above the tree's root
      }
      resolved.erase(resolved.rfind('/'));
    } else {
      resolved += '/';
      resolved += segment;
    }
    rest.remove_prefix(slash == std::string_view::npos ? rest.size() : slash + 1);
  }
  if (resolved.empty()) {
    return std::string(1, '/');  // the tree's root (assigning "/" to `resolved` trips GCC 12's -Wrestrict)
  }
  if (!isCanonicalCgroupPath(resolved)) {
    return std::nullopt;
  }
  return resolved;
}

bool isSameOrBelow(std::string_view path, std::string_view ancestor) {
  if (ancestor == "/") {
    return path.starts_with('/');
  }
  return path.starts_with(ancestor) && (path.size() == ancestor.size() || path[ancestor.size()] == '/');
}

}  // namespace oomguard::cgroupfs
