// Errors as values for everything that reads the kernel's files.
#pragma once

#include <cerrno>
#include <string>
#include <utility>
#include <variant>

namespace oomguard::cgroupfs {

// What went wrong with one file. errno_value is 0 when the syscalls succeeded but the content was
// malformed (then message says why).
struct Error {
  int errno_value = 0;
  std::string path;     // the file or directory involved; empty for a pure parser before it is attributed
  std::string message;  // the reason, without the path

  // A pid or cgroup that went away between listing and reading: a normal outcome, not a failure.
  // ENODEV: a file of a cgroup removed while it was open (kernfs deactivates it).
  [[nodiscard]] bool vanished() const { return errno_value == ENOENT || errno_value == ESRCH || errno_value == ENODEV; }
  [[nodiscard]] bool malformed() const { return errno_value == 0; }
  // "path: message (strerror)" for logs and error messages.
  [[nodiscard]] std::string describe() const;
};

Error parseError(std::string message);
Error systemError(int errno_value, std::string path, std::string message = {});

// Either a value or an Error. Accessing the wrong alternative is a programming error (std::get throws).
template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : state_(std::move(value)) {}        // NOLINT(google-explicit-constructor)
  Result(Error error) : state_(std::move(error)) {}    // NOLINT(google-explicit-constructor)

  [[nodiscard]] bool ok() const { return std::holds_alternative<T>(state_); }
  explicit operator bool() const { return ok(); }
  [[nodiscard]] const T& value() const& { return std::get<T>(state_); }
  [[nodiscard]] T& value() & { return std::get<T>(state_); }
  [[nodiscard]] T&& value() && { return std::get<T>(std::move(state_)); }
  [[nodiscard]] const Error& error() const { return std::get<Error>(state_); }
  const T* operator->() const { return &value(); }
  T* operator->() { return &value(); }

  // Attributes a parser's error to the file it came from.
  Result withPath(const std::string& path) && {
    if (auto* error = std::get_if<Error>(&state_); error != nullptr && error->path.empty()) {
      error->path = path;
    }
    return std::move(*this);
  }

 private:
  std::variant<T, Error> state_;
};

}  // namespace oomguard::cgroupfs
