// The daemon binary as a child process, its JSON log lines read back as they come (daemon_test.cpp,
// daemon_command_test.cpp).
#pragma once

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "common/run_command.hpp"

namespace oomguard::testing {


// The daemon as a child process; its stdout is read line by line.
class DaemonProcess {
  using Json = nlohmann::json;
  using Clock = std::chrono::steady_clock;

 public:
  explicit DaemonProcess(const std::vector<std::string>& args) {
    int out[2];
    if (::pipe2(out, O_CLOEXEC) != 0) {
      return;
    }
    pid_ = ::fork();
    if (pid_ == 0) {
      ::dup2(out[1], STDOUT_FILENO);
      const int null = ::open("/dev/null", O_WRONLY);
      ::dup2(null, STDERR_FILENO);
      execArgs(args);
    }
    ::close(out[1]);
    fd_ = out[0];
  }
  DaemonProcess(const DaemonProcess&) = delete;
  DaemonProcess& operator=(const DaemonProcess&) = delete;
  ~DaemonProcess() {
    if (pid_ > 0 && !exited_) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    if (fd_ >= 0) {
      ::close(fd_);
    }
  }

  // The next log line whose "event" is `event` and that satisfies `accept`, within `timeout`.
  std::optional<Json> waitFor(const std::string& event, std::chrono::milliseconds timeout,
                              const std::function<bool(const Json&)>& accept = [](const Json&) { return true; }) {
    const auto deadline = Clock::now() + timeout;
    for (;;) {
      while (auto line = nextLine()) {
        Json parsed = Json::parse(*line, nullptr, false);
        lines.push_back(*line);
        if (!parsed.is_discarded() && parsed.value("event", "") == event && accept(parsed)) {
          return parsed;
        }
      }
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
      if (left <= 0) {
        return std::nullopt;
      }
      pollfd pfd{fd_, POLLIN, 0};
      if (::poll(&pfd, 1, static_cast<int>(left)) <= 0) {
        return std::nullopt;
      }
      char chunk[65536];
      const ssize_t got = ::read(fd_, chunk, sizeof chunk);
      if (got <= 0) {
        return std::nullopt;  // the daemon closed stdout (exited)
      }
      pending_.append(chunk, static_cast<size_t>(got));
    }
  }

  void signal(int number) const { ::kill(pid_, number); }
  [[nodiscard]] pid_t pid() const { return pid_; }

  // Waits for exit; returns the exit status (or -1 on timeout).
  int waitExit(std::chrono::milliseconds timeout) {
    const auto deadline = Clock::now() + timeout;
    while (Clock::now() < deadline) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        exited_ = true;
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      }
      ::usleep(5000);
    }
    return -1;
  }

  std::vector<std::string> lines;

 private:
  std::optional<std::string> nextLine() {
    const auto newline = pending_.find('\n');
    if (newline == std::string::npos) {
      return std::nullopt;
    }
    std::string line = pending_.substr(0, newline);
    pending_.erase(0, newline + 1);
    return line;
  }

  pid_t pid_ = -1;
  int fd_ = -1;
  bool exited_ = false;
  std::string pending_;
};

}  // namespace oomguard::testing
