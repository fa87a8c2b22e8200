// Everything oomguard does to the system goes through an Actuator: the real one, a dry-run one that
// only says what it would do, and (in the tests) a recording fake.
#pragma once

#include <sys/types.h>

#include <boost/asio/io_context.hpp>
#include <memory>
#include <optional>
#include <string>

#include "cgroupfs/file_reader.hpp"
#include "cgroupfs/result.hpp"

namespace oomguard::guardian::io {

// A process pinned by a pidfd: signals sent through it reach that process or nothing, never another
// process that reuses its pid later.
class PinnedProcess {
 public:
  // Without a pidfd (kernels before 5.3) the pin is only the pid: the fallback path.
  PinnedProcess(pid_t pid, cgroupfs::UniqueFd pidfd) : pid_(pid), pidfd_(std::move(pidfd)) {}
  [[nodiscard]] pid_t pid() const { return pid_; }
  [[nodiscard]] int pidfd() const { return pidfd_.get(); }
  [[nodiscard]] bool pinned() const { return pidfd_.valid(); }
  // True once the pinned process has exited (its pidfd polls readable).
  [[nodiscard]] bool exited() const;

 private:
  pid_t pid_;
  cgroupfs::UniqueFd pidfd_;
};

struct ActionResult {
  bool ok = false;
  std::string detail;  // what happened, for the log ("SIGKILL sent, memory released", "gone", ...)
  // release(): process_mrelease reaped the victim's address space (its memory is back, as after the
  // kernel's oom_reaper, which then sets MMF_OOM_SKIP so that the next OOM may choose another task).
  bool memory_released = false;
};

class Actuator {
 public:
  virtual ~Actuator() = default;
  // Pins the process now at `pid` (pidfd_open). Read its /proc data only after this, then check that it
  // has not exited: what was read then belongs to the pinned process.
  virtual cgroupfs::Result<std::shared_ptr<PinnedProcess>> pin(pid_t pid) = 0;
  // SIGKILL at once (grace 0), or SIGTERM then SIGKILL after `sigterm_grace_ms` if it is still alive
  // (that later SIGKILL is followed by process_mrelease on its own). Returns once the signal is sent: a
  // killed process allocates no more, so this is the moment the race with the kernel is decided.
  virtual ActionResult kill(const std::shared_ptr<PinnedProcess>& process, uint32_t sigterm_grace_ms) = 0;
  // After kill() with grace 0: process_mrelease, so the victim's memory returns without waiting for
  // its exit. ok even when it could not (the kill stands); the detail says what happened.
  virtual ActionResult release(const std::shared_ptr<PinnedProcess>& process) = 0;
  // Writes "1" to <cgroup>/cgroup.kill (the whole subtree dies).
  virtual ActionResult killCgroup(const std::string& cgroup) = 0;
  // Writes /proc/<pid>/oom_score_adj of the pinned process: the file is opened first, and written only
  // if the pin says the process is still alive then (a pid cannot be reused while its process lives,
  // so the file belongs to the pinned process). The caller checked the pin against its snapshot.
  virtual ActionResult setOomScoreAdj(const std::shared_ptr<PinnedProcess>& process, int oom_score_adj) = 0;
  virtual ActionResult setOomGroup(const std::string& cgroup, bool enabled) = 0;
  // Writes memory.high of `cgroup`: bytes, or nullopt for "max" (no throttling).
  virtual ActionResult setMemoryHigh(const std::string& cgroup, std::optional<uint64_t> bytes) = 0;
  // name as in sysctl: "vm.panic_on_oom".
  virtual ActionResult writeSysctl(const std::string& name, long value) = 0;
  // Crashes the kernel through /proc/sysrq-trigger ("c"), after syncing. Does not return when it works.
  virtual ActionResult panic() = 0;
  // The daemon's own settings, written in every mode and by the dry-run actuator too (they change
  // nothing but oomguard itself): its oom_score_adj (config self.oom_score_adj), and one line of its own
  // into the kernel log (`kmsg_path`, a character device), the clock mark the kmsg reader measures by.
  virtual ActionResult setOwnOomScoreAdj(int oom_score_adj) = 0;
  virtual ActionResult writeKernelLog(const std::string& kmsg_path, const std::string& line) = 0;
};

// What the kill path may use; SystemActuator::probe() says what this kernel has.
struct KillPathFeatures {
  bool pidfd = true;        // pidfd_open + pidfd_send_signal (5.3); else kill(2) by pid
  bool cgroup_kill = true;  // cgroup.kill (5.14); else SIGKILL each task of the subtree until empty
};

// The real one. Roots as given to the command (--proc-root, --cgroup-root).
class SystemActuator final : public Actuator {
 public:
  using Features = KillPathFeatures;
  // The kernel's features, with the reason for each fallback (empty when none is needed).
  static Features probe(const std::string& cgroup_root, std::string& fallbacks);

  // Why acting on these roots would be unsafe, or nullopt when it is not: the pidfds and signals act
  // on this pid namespace, so `proc_root` must be its live procfs (statfs PROC_SUPER_MAGIC, and
  // "self" naming this process), never a fixture tree or another namespace's /proc, whose pids would
  // name other processes; and `cgroup_root` must be a cgroup2 mount, whose cgroup.procs lists real
  // tasks (the group-kill fallback signals them).
  static std::optional<std::string> rootsRefusal(const std::string& proc_root, const std::string& cgroup_root);

  SystemActuator(boost::asio::io_context& io, std::string proc_root, std::string cgroup_root,
                 Features features = Features{});
  cgroupfs::Result<std::shared_ptr<PinnedProcess>> pin(pid_t pid) override;
  ActionResult kill(const std::shared_ptr<PinnedProcess>& process, uint32_t sigterm_grace_ms) override;
  ActionResult release(const std::shared_ptr<PinnedProcess>& process) override;
  ActionResult killCgroup(const std::string& cgroup) override;
  ActionResult setOomScoreAdj(const std::shared_ptr<PinnedProcess>& process, int oom_score_adj) override;
  ActionResult setOomGroup(const std::string& cgroup, bool enabled) override;
  ActionResult setMemoryHigh(const std::string& cgroup, std::optional<uint64_t> bytes) override;
  ActionResult writeSysctl(const std::string& name, long value) override;
  ActionResult panic() override;
  ActionResult setOwnOomScoreAdj(int oom_score_adj) override;
  ActionResult writeKernelLog(const std::string& kmsg_path, const std::string& line) override;

 private:
  boost::asio::io_context& io_;
  std::string proc_root_;
  std::string cgroup_root_;
  Features features_;
};

// Dry-run: pins (read-only) like the real one, and for every action only reports what it would do.
class DryRunActuator final : public Actuator {
 public:
  explicit DryRunActuator(std::string proc_root = "/proc") : proc_root_(std::move(proc_root)) {}
  cgroupfs::Result<std::shared_ptr<PinnedProcess>> pin(pid_t pid) override;
  ActionResult kill(const std::shared_ptr<PinnedProcess>& process, uint32_t sigterm_grace_ms) override;
  ActionResult release(const std::shared_ptr<PinnedProcess>& process) override;
  ActionResult killCgroup(const std::string& cgroup) override;
  ActionResult setOomScoreAdj(const std::shared_ptr<PinnedProcess>& process, int oom_score_adj) override;
  ActionResult setOomGroup(const std::string& cgroup, bool enabled) override;
  ActionResult setMemoryHigh(const std::string& cgroup, std::optional<uint64_t> bytes) override;
  ActionResult writeSysctl(const std::string& name, long value) override;
  ActionResult panic() override;
  ActionResult setOwnOomScoreAdj(int oom_score_adj) override;
  ActionResult writeKernelLog(const std::string& kmsg_path, const std::string& line) override;

 private:
  std::string proc_root_;
};

}  // namespace oomguard::guardian::io
