// The notify protocol against a real AF_UNIX datagram socket, as systemd listens on one.
#include "guardian/io/service_notify.hpp"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>

namespace oomguard::guardian::io {
namespace {

// A listening datagram socket: a path, or an abstract name when `path` starts with '@'.
class Listener {
 public:
  explicit Listener(const std::string& path) : path_(path) {
    fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    std::memcpy(address.sun_path, path.data(), path.size());
    if (path[0] == '@') {
      address.sun_path[0] = '\0';
    }
    bound_ = ::bind(fd_, reinterpret_cast<const sockaddr*>(&address),
                    static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size())) == 0;
  }
  ~Listener() {
    ::close(fd_);
    if (path_[0] == '/') {
      ::unlink(path_.c_str());
    }
  }
  Listener(const Listener&) = delete;
  Listener& operator=(const Listener&) = delete;
  [[nodiscard]] bool bound() const { return bound_; }
  std::string receive() const {
    char buffer[512];
    const ssize_t n = ::recv(fd_, buffer, sizeof buffer, MSG_DONTWAIT);
    return n > 0 ? std::string(buffer, static_cast<size_t>(n)) : std::string();
  }

 private:
  std::string path_;
  int fd_ = -1;
  bool bound_ = false;
};

TEST(ServiceNotify, SendsEachStateAsOneDatagramToAPath) {
  const std::string path = std::filesystem::temp_directory_path() / ("oomguard-notify-" + std::to_string(::getpid()));
  Listener listener(path);
  ASSERT_TRUE(listener.bound());
  const ServiceNotifier notifier(NotifySettings{path, std::nullopt});
  EXPECT_TRUE(notifier.enabled());
  EXPECT_EQ(notifier.send("READY=1\nSTATUS=3 OOM domains ranked"), "");
  EXPECT_EQ(notifier.send("WATCHDOG=1"), "");
  EXPECT_EQ(listener.receive(), "READY=1\nSTATUS=3 OOM domains ranked");
  EXPECT_EQ(listener.receive(), "WATCHDOG=1");
}

TEST(ServiceNotify, AnAbstractNameIsReached) {
  const std::string name = "@oomguard-notify-test-" + std::to_string(::getpid());
  Listener listener(name);
  ASSERT_TRUE(listener.bound());
  EXPECT_EQ(ServiceNotifier(NotifySettings{name, std::nullopt}).send("STOPPING=1"), "");
  EXPECT_EQ(listener.receive(), "STOPPING=1");
}

TEST(ServiceNotify, WithoutAManagerNothingIsSentAndNothingFails) {
  const ServiceNotifier notifier(NotifySettings{});
  EXPECT_FALSE(notifier.enabled());
  EXPECT_EQ(notifier.send("READY=1"), "");
}

TEST(ServiceNotify, ASocketNobodyListensOnIsReportedNotFatal) {
  const ServiceNotifier gone(NotifySettings{"/nonexistent/oomguard/notify", std::nullopt});
  EXPECT_NE(gone.send("READY=1").find("sendto /nonexistent/oomguard/notify"), std::string::npos);
  const ServiceNotifier relative(NotifySettings{"relative/path", std::nullopt});
  EXPECT_NE(relative.send("READY=1").find("neither an absolute path"), std::string::npos);
}

TEST(ServiceNotify, TheWatchdogIsOursOnlyWhenWatchdogPidNamesUs) {
  ::setenv("NOTIFY_SOCKET", "/run/systemd/notify", 1);
  ::setenv("WATCHDOG_USEC", "30000000", 1);
  ::unsetenv("WATCHDOG_PID");
  auto settings = notifySettingsFromEnvironment(42);
  EXPECT_EQ(settings.socket_path, "/run/systemd/notify");
  EXPECT_EQ(settings.watchdog_us, 30'000'000U);
  ::setenv("WATCHDOG_PID", "42", 1);
  EXPECT_EQ(notifySettingsFromEnvironment(42).watchdog_us, 30'000'000U);
  EXPECT_EQ(notifySettingsFromEnvironment(43).watchdog_us, std::nullopt);  // a child's inherited variables
  ::setenv("WATCHDOG_USEC", "30s", 1);
  EXPECT_EQ(notifySettingsFromEnvironment(42).watchdog_us, std::nullopt);  // malformed: unset
  ::setenv("WATCHDOG_USEC", "0", 1);
  EXPECT_EQ(notifySettingsFromEnvironment(42).watchdog_us, std::nullopt);
  ::unsetenv("NOTIFY_SOCKET");
  ::unsetenv("WATCHDOG_USEC");
  ::unsetenv("WATCHDOG_PID");
  EXPECT_FALSE(ServiceNotifier(notifySettingsFromEnvironment(42)).enabled());
}

}  // namespace
}  // namespace oomguard::guardian::io
