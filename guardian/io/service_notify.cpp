#include "guardian/io/service_notify.hpp"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <cstring>

namespace oomguard::guardian::io {
namespace {

std::optional<uint64_t> number(const char* text) {
  if (text == nullptr || *text == '\0') {
    return std::nullopt;
  }
  uint64_t value = 0;
  const char* end = text + std::strlen(text);
  const auto [ptr, error] = std::from_chars(text, end, value);
  if (error != std::errc() || ptr != end) {
    return std::nullopt;
  }
  return value;
}

}  // namespace

NotifySettings notifySettingsFromEnvironment(int self_pid) {
  NotifySettings settings;
  if (const char* socket = std::getenv("NOTIFY_SOCKET"); socket != nullptr) {
    settings.socket_path = socket;
  }
  const auto watchdog = number(std::getenv("WATCHDOG_USEC"));
  const auto pid = number(std::getenv("WATCHDOG_PID"));
  if (watchdog && *watchdog > 0 && (!pid || *pid == static_cast<uint64_t>(self_pid))) {
    settings.watchdog_us = watchdog;
  }
  return settings;
}

std::string ServiceNotifier::send(std::string_view state) const {
  if (!enabled()) {
    return "";
  }
  const std::string& path = settings_.socket_path;
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  if ((path[0] != '/' && path[0] != '@') || path.size() >= sizeof address.sun_path) {
    return "NOTIFY_SOCKET " + path + " is neither an absolute path nor an abstract name that fits";
  }
  std::memcpy(address.sun_path, path.data(), path.size());
  if (path[0] == '@') {
    address.sun_path[0] = '\0';  // the abstract namespace
  }
  const auto length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size());
  const int fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    return std::string("socket: ") + std::strerror(errno);
  }
  const ssize_t sent =
      ::sendto(fd, state.data(), state.size(), MSG_NOSIGNAL, reinterpret_cast<const sockaddr*>(&address), length);
  const int error = errno;
  ::close(fd);
  if (sent != static_cast<ssize_t>(state.size())) {
    return "sendto " + path + ": " + (sent < 0 ? std::strerror(error) : "short write");
  }
  return "";
}

}  // namespace oomguard::guardian::io
