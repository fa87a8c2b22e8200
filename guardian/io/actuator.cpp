#include "guardian/io/actuator.hpp"

#include <sys/statfs.h>

#include "guardian/io/syscalls.hpp"

#include <fcntl.h>
#include <dirent.h>
#include <poll.h>
#include <unistd.h>

#include <boost/asio/steady_timer.hpp>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <fstream>
#include <set>
#include <vector>

namespace oomguard::guardian::io {
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

// Signals the process: through its pidfd, or by pid where there is none (the fallback).
int signalProcess(const PinnedProcess& process, int signal) {
  return process.pinned() ? pidfdSendSignal(process.pidfd(), signal) : ::kill(process.pid(), signal);
}

// SIGKILL through the pidfd (by pid where there is none).
ActionResult killNow(const PinnedProcess& process) {
  if (!process.pinned()) {
    if (::kill(process.pid(), SIGKILL) != 0) {
      return {errno == ESRCH, errno == ESRCH ? "already gone" : "SIGKILL failed: " + errnoText(errno)};
    }
    return {true, "SIGKILL sent by pid (no pidfd on this kernel)"};
  }
  if (pidfdSendSignal(process.pidfd(), SIGKILL) != 0) {
    const int error = errno;
    return {error == ESRCH, error == ESRCH ? "already gone" : "SIGKILL failed: " + errnoText(error)};
  }
  return {true, "SIGKILL sent"};
}

// process_mrelease after a SIGKILL: the victim's memory returns at once.
ActionResult releaseNow(const PinnedProcess& process) {
  if (!process.pinned()) {
    return {true, "no process_mrelease without a pidfd"};
  }
  if (processMrelease(process.pidfd()) == 0) {
    return {true, "memory released (process_mrelease)", true};
  }
  const int error = errno;
  if (error == ESRCH) {
    return {true, "exited before process_mrelease"};
  }
  return {true, "process_mrelease unavailable or refused (" + errnoText(error) + ")"};
}

// The daemon's own settings (see Actuator::setOwnOomScoreAdj), the same for every actuator.
ActionResult writeOwnOomScoreAdj(const std::string& proc_root, int oom_score_adj) {
  std::ofstream adj(proc_root + "/self/oom_score_adj");
  adj << oom_score_adj << "\n";
  adj.flush();
  return adj ? ActionResult{true, "oom_score_adj " + std::to_string(oom_score_adj) + " set"}
             : ActionResult{false, "oom_score_adj " + std::to_string(oom_score_adj) +
                                       " not set (needs CAP_SYS_RESOURCE to lower it)"};
}

ActionResult appendKernelLog(const std::string& kmsg_path, const std::string& line) {
  const int fd = ::open(kmsg_path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) {
    return {false, kmsg_path + ": " + std::strerror(errno)};
  }
  const bool written = ::write(fd, line.data(), line.size()) == static_cast<ssize_t>(line.size());
  ::close(fd);
  return {written, written ? "written" : "short write"};
}

}  // namespace

bool PinnedProcess::exited() const {
  if (!pidfd_.valid()) {
    return ::kill(pid_, 0) != 0 && errno == ESRCH;
  }
  pollfd pfd{pidfd_.get(), POLLIN, 0};
  return ::poll(&pfd, 1, 0) > 0 && (pfd.revents & (POLLIN | POLLHUP | POLLERR)) != 0;
}

SystemActuator::Features SystemActuator::probe(const std::string& cgroup_root, std::string& fallbacks) {
  Features features;
  const int self = pidfdOpen(::getpid());
  if (self >= 0) {
    ::close(self);
  } else {
    features.pidfd = false;
    fallbacks += "no pidfd_open (" + errnoText(errno) +
                 "): kills go by pid with kill(2), so a pid recycled between the check and the kill could be hit; ";
  }
  // cgroup.kill exists in every non-root cgroup from 5.14 on; look for it in one.
  bool found_child = false;
  if (DIR* dir = ::opendir(cgroup_root.c_str())) {
    while (const dirent* entry = ::readdir(dir)) {
      if (entry->d_type == DT_DIR && entry->d_name[0] != '.') {
        found_child = true;
        features.cgroup_kill = ::access((cgroup_root + "/" + entry->d_name + "/cgroup.kill").c_str(), F_OK) == 0;
        break;
      }
    }
    ::closedir(dir);
  }
  if (found_child && !features.cgroup_kill) {
    fallbacks += "no cgroup.kill (kernel < 5.14): a group kill signals each task of the subtree until it is empty; ";
  }
  return features;
}

SystemActuator::SystemActuator(boost::asio::io_context& io, std::string proc_root, std::string cgroup_root,
                               Features features)
    : io_(io), proc_root_(std::move(proc_root)), cgroup_root_(std::move(cgroup_root)), features_(features) {}

cgroupfs::Result<std::shared_ptr<PinnedProcess>> SystemActuator::pin(pid_t pid) {
  if (!features_.pidfd) {
    if (::kill(pid, 0) != 0 && errno == ESRCH) {
      return cgroupfs::systemError(ESRCH, "pid " + std::to_string(pid), "no such process");
    }
    return std::make_shared<PinnedProcess>(pid, cgroupfs::UniqueFd());
  }
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
  if (signalProcess(*process, SIGTERM) != 0) {
    const int error = errno;
    return {error == ESRCH, error == ESRCH ? "already gone" : "SIGTERM failed: " + errnoText(error)};
  }
  // The grace runs on the loop: the process (pinned by the shared handle) gets SIGKILL if still alive.
  auto timer = std::make_shared<boost::asio::steady_timer>(io_, std::chrono::milliseconds(sigterm_grace_ms));
  timer->async_wait([timer, process](const boost::system::error_code& error) {
    if (!error && !process->exited() && killNow(*process).ok) {
      releaseNow(*process);
    }
  });
  return {true, "SIGTERM sent; SIGKILL follows in " + std::to_string(sigterm_grace_ms) + " ms if it is still alive"};
}

ActionResult SystemActuator::release(const std::shared_ptr<PinnedProcess>& process) { return releaseNow(*process); }

std::optional<std::string> SystemActuator::rootsRefusal(const std::string& proc_root, const std::string& cgroup_root) {
  constexpr long kProcSuperMagic = 0x9fa0;
  constexpr long kCgroup2SuperMagic = 0x63677270;
  struct statfs fs {};
  if (::statfs(proc_root.c_str(), &fs) != 0 || static_cast<long>(fs.f_type) != kProcSuperMagic) {
    return "--proc-root " + proc_root + " is not a procfs mount";
  }
  char self[32] = {};
  const ssize_t length = ::readlink((proc_root + "/self").c_str(), self, sizeof self - 1);
  if (length <= 0 || std::string(self, static_cast<size_t>(length)) != std::to_string(::getpid())) {
    return "--proc-root " + proc_root + " is the /proc of another pid namespace (its \"self\" is not pid " +
           std::to_string(::getpid()) + "): its pids would name other processes than the ones signalled";
  }
  if (::statfs(cgroup_root.c_str(), &fs) != 0 || static_cast<long>(fs.f_type) != kCgroup2SuperMagic) {
    return "--cgroup-root " + cgroup_root + " is not a cgroup2 mount";
  }
  return std::nullopt;
}

ActionResult SystemActuator::killCgroup(const std::string& cgroup) {
  const std::string directory = cgroup == "/" ? cgroup_root_ : cgroup_root_ + cgroup;
  if (features_.cgroup_kill) {
    return writeText(directory + "/cgroup.kill", "1");
  }
  // Without cgroup.kill: SIGKILL every task of the subtree, again while new ones appear (a fork racing
  // the kill), a bounded number of rounds.
  constexpr int kRounds = 20;
  // The tasks signalled, each once however many rounds list it (a killed task stays listed until its
  // exit is done: counting signals said 4 tasks of 3 under ASan's slower exits).
  std::set<pid_t> signalled;
  for (int round = 0; round < kRounds; ++round) {
    size_t found = 0;
    std::vector<std::string> pending = {directory};
    while (!pending.empty()) {
      const std::string current = pending.back();
      pending.pop_back();
      std::ifstream procs(current + "/cgroup.procs");
      for (pid_t pid = 0; procs >> pid;) {
        ++found;
        const int fd = pidfdOpen(pid);
        const int sent = fd >= 0 ? pidfdSendSignal(fd, SIGKILL) : ::kill(pid, SIGKILL);
        if (sent == 0) {
          signalled.insert(pid);
        }
        if (fd >= 0) {
          ::close(fd);
        }
      }
      if (DIR* dir = ::opendir(current.c_str())) {
        while (const dirent* entry = ::readdir(dir)) {
          if (entry->d_type == DT_DIR && entry->d_name[0] != '.') {
            pending.push_back(current + "/" + entry->d_name);
          }
        }
        ::closedir(dir);
      }
    }
    if (found == 0) {
      return {true, "no cgroup.kill: SIGKILL sent to " + std::to_string(signalled.size()) + " tasks of " + cgroup};
    }
    ::usleep(10000);
  }
  return {false, "no cgroup.kill: tasks of " + cgroup + " were still there after " + std::to_string(kRounds) +
                     " rounds (" + std::to_string(signalled.size()) + " signalled)"};
}

ActionResult SystemActuator::setOomScoreAdj(const std::shared_ptr<PinnedProcess>& process, int oom_score_adj) {
  const std::string path = proc_root_ + "/" + std::to_string(process->pid()) + "/oom_score_adj";
  const cgroupfs::UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
  if (!fd.valid()) {
    const int error = errno;
    return {error == ENOENT || error == ESRCH, error == ENOENT || error == ESRCH ? "gone" : path + ": " + errnoText(error)};
  }
  if (process->pinned() && process->exited()) {
    return {true, "gone"};  // the file may belong to a new process under the same pid: not written
  }
  const std::string text = std::to_string(oom_score_adj);
  if (::write(fd.get(), text.data(), text.size()) != static_cast<ssize_t>(text.size())) {
    const int error = errno;
    return {error == ESRCH, error == ESRCH ? "gone" : path + ": " + errnoText(error)};
  }
  return {true, "wrote \"" + text + "\" to " + path + (process->pinned() ? " (pidfd-verified)" : "")};
}

ActionResult SystemActuator::setOomGroup(const std::string& cgroup, bool enabled) {
  return writeText(cgroup_root_ + cgroup + "/memory.oom.group", enabled ? "1" : "0");
}

ActionResult SystemActuator::setMemoryHigh(const std::string& cgroup, std::optional<uint64_t> bytes) {
  return writeText(cgroup_root_ + cgroup + "/memory.high", bytes ? std::to_string(*bytes) : "max");
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

ActionResult DryRunActuator::release(const std::shared_ptr<PinnedProcess>& /*process*/) {
  return {true, "then process_mrelease"};
}

ActionResult DryRunActuator::killCgroup(const std::string& cgroup) {
  return {true, "dry-run: would write 1 to " + cgroup + "/cgroup.kill"};
}

ActionResult DryRunActuator::setOomScoreAdj(const std::shared_ptr<PinnedProcess>& process, int oom_score_adj) {
  return {true, "dry-run: would set oom_score_adj " + std::to_string(oom_score_adj) + " on pid " +
                    std::to_string(process->pid())};
}

ActionResult DryRunActuator::setOomGroup(const std::string& cgroup, bool enabled) {
  return {true, std::string("dry-run: would set memory.oom.group ") + (enabled ? "1" : "0") + " on " + cgroup};
}

ActionResult DryRunActuator::setMemoryHigh(const std::string& cgroup, std::optional<uint64_t> bytes) {
  return {true, "dry-run: would set memory.high " + (bytes ? std::to_string(*bytes) : std::string("max")) + " on " + cgroup};
}

ActionResult DryRunActuator::writeSysctl(const std::string& name, long value) {
  return {true, "dry-run: would set " + name + " = " + std::to_string(value)};
}

ActionResult DryRunActuator::panic() { return {true, "dry-run: would panic the kernel (sysrq c)"}; }

ActionResult SystemActuator::setOwnOomScoreAdj(int oom_score_adj) { return writeOwnOomScoreAdj(proc_root_, oom_score_adj); }

ActionResult SystemActuator::writeKernelLog(const std::string& kmsg_path, const std::string& line) {
  return appendKernelLog(kmsg_path, line);
}

ActionResult DryRunActuator::setOwnOomScoreAdj(int oom_score_adj) { return writeOwnOomScoreAdj(proc_root_, oom_score_adj); }

ActionResult DryRunActuator::writeKernelLog(const std::string& kmsg_path, const std::string& line) {
  return appendKernelLog(kmsg_path, line);
}

}  // namespace oomguard::guardian::io
