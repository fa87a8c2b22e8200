#include "guardian/actuator.hpp"

#include "guardian/syscalls.hpp"

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <boost/asio/steady_timer.hpp>
#include <cerrno>
#include <csignal>
#include <cstring>

namespace oomguard::guardian {
namespace {

std::string errnoText(int error) { return std::strerror(error); }  // NOLINT(concurrency-mt-unsafe)

ActionResult writeText(const std::string& path, const std::string& text) {
  auto written = cgroupfs::writeFileAt(AT_FDCWD, path.c_str(), text, path);
  if (!written) {
    return {false, written.error().describe()};
  }
  return {true, "wrote \"" + text + "\" to " + path};
}

std::string sysctlPath(const std::string& proc_root, const std::string& name) {
  std::string relative = name;
  for (char& c : relative) {
    c = c == '.' ? '/' : c;
  }
  return proc_root + "/sys/" + relative;
}

// SIGKILL through the pidfd, then process_mrelease to free the victim's memory at once.
ActionResult killNow(const PinnedProcess& process) {
  if (pidfdSendSignal(process.pidfd(), SIGKILL) != 0) {
    const int error = errno;
    return {error == ESRCH, error == ESRCH ? "already gone" : "SIGKILL failed: " + errnoText(error)};
  }
  if (processMrelease(process.pidfd()) == 0) {
    return {true, "SIGKILL sent, memory released (process_mrelease)"};
  }
  const int error = errno;
  if (error == ESRCH) {
    return {true, "SIGKILL sent, exited before process_mrelease"};
  }
  return {true, "SIGKILL sent; process_mrelease unavailable or refused (" + errnoText(error) + ")"};
}

}  // namespace

bool PinnedProcess::exited() const {
  pollfd pfd{pidfd_.get(), POLLIN, 0};
  return ::poll(&pfd, 1, 0) > 0 && (pfd.revents & (POLLIN | POLLHUP | POLLERR)) != 0;
}

SystemActuator::SystemActuator(boost::asio::io_context& io, std::string proc_root, std::string cgroup_root)
    : io_(io), proc_root_(std::move(proc_root)), cgroup_root_(std::move(cgroup_root)) {}

cgroupfs::Result<std::shared_ptr<PinnedProcess>> SystemActuator::pin(pid_t pid) {
  const long fd = pidfdOpen(pid);
  if (fd < 0) {
    return cgroupfs::systemError(errno, "pid " + std::to_string(pid), "pidfd_open failed");
  }
  return std::make_shared<PinnedProcess>(pid, cgroupfs::UniqueFd(static_cast<int>(fd)));
}

ActionResult SystemActuator::kill(const std::shared_ptr<PinnedProcess>& process, uint32_t sigterm_grace_ms) {
  if (sigterm_grace_ms == 0) {
    return killNow(*process);
  }
  if (pidfdSendSignal(process->pidfd(), SIGTERM) != 0) {
    const int error = errno;
    return {error == ESRCH, error == ESRCH ? "already gone" : "SIGTERM failed: " + errnoText(error)};
  }
  // The grace runs on the loop: the process (pinned by the shared handle) gets SIGKILL if still alive.
  auto timer = std::make_shared<boost::asio::steady_timer>(io_, std::chrono::milliseconds(sigterm_grace_ms));
  timer->async_wait([timer, process](const boost::system::error_code& error) {
    if (!error && !process->exited()) {
      killNow(*process);
    }
  });
  return {true, "SIGTERM sent; SIGKILL follows in " + std::to_string(sigterm_grace_ms) + " ms if it is still alive"};
}

ActionResult SystemActuator::killCgroup(const std::string& cgroup) {
  const std::string path = (cgroup == "/" ? cgroup_root_ : cgroup_root_ + cgroup) + "/cgroup.kill";
  return writeText(path, "1");
}

ActionResult SystemActuator::setOomScoreAdj(pid_t pid, int oom_score_adj) {
  return writeText(proc_root_ + "/" + std::to_string(pid) + "/oom_score_adj", std::to_string(oom_score_adj));
}

ActionResult SystemActuator::setOomGroup(const std::string& cgroup, bool enabled) {
  return writeText(cgroup_root_ + cgroup + "/memory.oom.group", enabled ? "1" : "0");
}

ActionResult SystemActuator::writeSysctl(const std::string& name, long value) {
  return writeText(sysctlPath(proc_root_, name), std::to_string(value));
}

ActionResult SystemActuator::panic() {
  ::sync();
  return writeText(proc_root_ + "/sysrq-trigger", "c");
}

cgroupfs::Result<std::shared_ptr<PinnedProcess>> DryRunActuator::pin(pid_t pid) {
  const long fd = pidfdOpen(pid);
  if (fd < 0) {
    return cgroupfs::systemError(errno, "pid " + std::to_string(pid), "pidfd_open failed");
  }
  return std::make_shared<PinnedProcess>(pid, cgroupfs::UniqueFd(static_cast<int>(fd)));
}

ActionResult DryRunActuator::kill(const std::shared_ptr<PinnedProcess>& process, uint32_t sigterm_grace_ms) {
  return {true, "dry-run: would send " +
                    (sigterm_grace_ms == 0 ? std::string("SIGKILL")
                                           : "SIGTERM, then SIGKILL after " + std::to_string(sigterm_grace_ms) + " ms") +
                    " to pid " + std::to_string(process->pid())};
}

ActionResult DryRunActuator::killCgroup(const std::string& cgroup) {
  return {true, "dry-run: would write 1 to " + cgroup + "/cgroup.kill"};
}

ActionResult DryRunActuator::setOomScoreAdj(pid_t pid, int oom_score_adj) {
  return {true, "dry-run: would set oom_score_adj " + std::to_string(oom_score_adj) + " on pid " + std::to_string(pid)};
}

ActionResult DryRunActuator::setOomGroup(const std::string& cgroup, bool enabled) {
  return {true, std::string("dry-run: would set memory.oom.group ") + (enabled ? "1" : "0") + " on " + cgroup};
}

ActionResult DryRunActuator::writeSysctl(const std::string& name, long value) {
  return {true, "dry-run: would set " + name + " = " + std::to_string(value)};
}

ActionResult DryRunActuator::panic() { return {true, "dry-run: would panic the kernel (sysrq c)"}; }

}  // namespace oomguard::guardian
