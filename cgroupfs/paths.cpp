#include "cgroupfs/paths.hpp"

namespace oomguard::cgroupfs {

std::string parentCgroup(std::string_view path) {
  if (path.empty() || path == "/") {
    return {};
  }
  const auto slash = path.rfind('/');
  return slash == 0 ? std::string("/") : std::string(path.substr(0, slash));
}

bool isSameOrBelow(std::string_view path, std::string_view ancestor) {
  if (ancestor == "/") {
    return path.starts_with('/');
  }
  return path.starts_with(ancestor) && (path.size() == ancestor.size() || path[ancestor.size()] == '/');
}

}  // namespace oomguard::cgroupfs
