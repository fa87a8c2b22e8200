#include "cgroupfs/result.hpp"

#include <cstring>

namespace oomguard::cgroupfs {

std::string Error::describe() const {
  std::string text = path.empty() ? std::string("<text>") : path;
  text += ": ";
  text += message.empty() ? std::string("error") : message;
  if (errno_value != 0) {
    text += " (";
    text += std::strerror(errno_value);  // NOLINT(concurrency-mt-unsafe): messages only
    text += ")";
  }
  return text;
}

Error parseError(std::string message) { return Error{0, {}, std::move(message)}; }

Error systemError(int errno_value, std::string path, std::string message) {
  return Error{errno_value, std::move(path), std::move(message)};
}

}  // namespace oomguard::cgroupfs
