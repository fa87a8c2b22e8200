#include "guardian/io/hooks.hpp"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <boost/asio/post.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <optional>

#include "cgroupfs/file_reader.hpp"
#include "guardian/io/syscalls.hpp"

namespace oomguard::guardian::io {

struct HookRunner::Running {
  Running(boost::asio::io_context& io, uint64_t id_in)
      : id(id_in), exit_watch(io), output_pipe(io), deadline(io), poll(io) {}
  uint64_t id;
  std::string key;
  HookOutcome outcome;
  size_t max_output_bytes = 0;
  uint64_t started_us = 0;
  uint32_t timeout_ms = 0;
  bool timed_out = false;
  bool reaped = false;
  bool delivered = false;  // `done` was called (at the reap, or at the deadline)
  int code = 0;    // waitid's si_code (CLD_EXITED, CLD_KILLED, ...) and si_status
  int status = 0;
  boost::asio::posix::stream_descriptor exit_watch;   // the pidfd (readable once the hook has exited)
  boost::asio::posix::stream_descriptor output_pipe;  // stdout and stderr
  boost::asio::steady_timer deadline;                 // the timeout
  boost::asio::steady_timer poll;                     // without a pidfd: the reap and the timeout, polled
  std::array<char, 4096> buffer{};
  Done done;
};

namespace {

std::string errnoText(int error) { return std::strerror(error); }

// waitid's P_PIDFD (Linux 5.4): older headers lack it.
constexpr auto kWaitPidfd = static_cast<idtype_t>(3);

// Reaps `pid` if it has exited: true (with `info` filled) when it was reaped or is gone.
bool reapNow(pid_t pid, siginfo_t& info) {
  info = siginfo_t{};
  if (::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG) != 0) {
    return true;  // ECHILD: not ours to reap (any more)
  }
  return info.si_pid != 0;
}

// posix_spawn's inputs, freed on every path.
class SpawnSetup {
 public:
  SpawnSetup() {
    ::posix_spawn_file_actions_init(&actions_);
    ::posix_spawnattr_init(&attributes_);
  }
  ~SpawnSetup() {
    ::posix_spawn_file_actions_destroy(&actions_);
    ::posix_spawnattr_destroy(&attributes_);
  }
  SpawnSetup(const SpawnSetup&) = delete;
  SpawnSetup& operator=(const SpawnSetup&) = delete;
  posix_spawn_file_actions_t actions_{};
  posix_spawnattr_t attributes_{};
};

// Every byte the pipe holds now, without blocking; stops at EOF, EAGAIN or an error.
void drain(int fd, HookOutcome& outcome, size_t max_bytes) {
  std::array<char, 4096> buffer{};
  for (int rounds = 0; rounds < 64; ++rounds) {
    const ssize_t got = ::read(fd, buffer.data(), buffer.size());
    if (got <= 0) {
      return;
    }
    const size_t room = max_bytes > outcome.output.size() ? max_bytes - outcome.output.size() : 0;
    outcome.output.append(buffer.data(), std::min(room, static_cast<size_t>(got)));
    outcome.output_truncated = outcome.output_truncated || static_cast<size_t>(got) > room;
  }
}

}  // namespace

HookRunner::HookRunner(boost::asio::io_context& io, MonotonicUs monotonic_us)
    : io_(io), monotonic_us_(std::move(monotonic_us)) {}

HookRunner::~HookRunner() {
  try {
    stop();
  } catch (...) {  // NOLINT(bugprone-empty-catch): a destructor must not throw (stop() allocates a little)
  }
}

bool HookRunner::isHook(pid_t pid) const {
  const uint64_t now_us = monotonic_us_();
  for (const auto& [reaped_pid, at_us] : reaped_) {
    if (reaped_pid == pid && now_us - at_us < 10'000'000) {
      return true;
    }
  }
  return std::any_of(running_.begin(), running_.end(), [pid](const auto& entry) { return entry.second->outcome.pid == pid; });
}

bool HookRunner::runningFor(const std::string& key) const {
  for (const auto& [id, hook] : running_) {
    if (hook->key == key && !hook->delivered) {
      return true;
    }
  }
  return false;
}

void HookRunner::run(const std::string& name, const config::Hook& hook, const config::Hooks& limits,
                     const std::string& key, std::string input, std::vector<std::string> env, Done done) {
  HookOutcome early;
  early.hook = name;
  auto answer = [&](const char* result, std::string detail) {
    early.result = result;
    early.detail = std::move(detail);
    boost::asio::post(io_, [done = std::move(done), early = std::move(early), accepting = accepting_] {
      if (*accepting) {
        done(early);
      }
    });
  };
  const uint64_t now_us = monotonic_us_();
  // The warn hooks and the kill hooks have caps of their own: warnings (every domain past its warn level
  // warns at start-up) never use up what a kill's hooks may spend.
  const bool warn = name == "warn";
  auto& started_us = started_us_[warn ? 1 : 0];
  while (!started_us.empty() && now_us - started_us.front() >= 60'000'000) {
    started_us.pop_front();
  }
  if (runningFor(key)) {
    return answer("dropped", "a hook for the same victim is still running");
  }
  const auto in_pool = static_cast<size_t>(std::count_if(
      running_.begin(), running_.end(), [warn](const auto& entry) { return (entry.second->outcome.hook == "warn") == warn; }));
  const std::string kind = warn ? "warn hooks" : "kill hooks";
  if (in_pool >= limits.max_concurrent) {
    return answer("dropped", std::to_string(in_pool) + " " + kind + " running (hooks.max_concurrent)");
  }
  if (started_us.size() >= limits.max_per_minute) {
    return answer("dropped", std::to_string(started_us.size()) + " " + kind + " started in the last minute (hooks.max_per_minute)");
  }
  if (hook.argv.empty()) {
    return answer("spawn_failed", "no argv");
  }

  // stdin: the event, written whole before the spawn (it fits the pipe), then the write end closed, so
  // the hook reads it and then EOF. stdout and stderr: one pipe, read here without blocking.
  int input_pipe[2] = {-1, -1};
  int output_pipe[2] = {-1, -1};
  if (::pipe2(input_pipe, O_CLOEXEC) != 0) {
    return answer("spawn_failed", "pipe2: " + errnoText(errno));
  }
  cgroupfs::UniqueFd input_read(input_pipe[0]);
  cgroupfs::UniqueFd input_write(input_pipe[1]);
  if (::pipe2(output_pipe, O_CLOEXEC) != 0) {
    return answer("spawn_failed", "pipe2: " + errnoText(errno));
  }
  cgroupfs::UniqueFd output_read(output_pipe[0]);
  cgroupfs::UniqueFd output_write(output_pipe[1]);
  ::fcntl(input_write.get(), F_SETFL, O_NONBLOCK);
  ::fcntl(output_read.get(), F_SETFL, O_NONBLOCK);
  input.resize(std::min(input.size(), kMaxInputBytes));
  for (size_t written = 0; written < input.size();) {
    const ssize_t wrote = ::write(input_write.get(), input.data() + written, input.size() - written);
    if (wrote <= 0) {
      break;  // a full pipe (a smaller capacity than the default): the hook gets the start of the event
    }
    written += static_cast<size_t>(wrote);
  }
  input_write = cgroupfs::UniqueFd();

  SpawnSetup setup;
  // Each must hold, or the hook would get oomguard's descriptors (its log on stdout, say).
  int failed = ::posix_spawn_file_actions_adddup2(&setup.actions_, input_read.get(), STDIN_FILENO);
  failed = failed != 0 ? failed : ::posix_spawn_file_actions_adddup2(&setup.actions_, output_write.get(), STDOUT_FILENO);
  failed = failed != 0 ? failed : ::posix_spawn_file_actions_adddup2(&setup.actions_, output_write.get(), STDERR_FILENO);
  failed = failed != 0 ? failed : ::posix_spawn_file_actions_addclosefrom_np(&setup.actions_, 3);
  if (failed != 0) {
    return answer("spawn_failed", "posix_spawn_file_actions: " + errnoText(failed));
  }
  // Its own process group (the timeout kills the group: what the hook started too), every signal at its
  // default disposition and none blocked (the daemon's handlers and masks are not the hook's).
  sigset_t all;
  sigset_t none;
  ::sigfillset(&all);
  ::sigemptyset(&none);
  ::posix_spawnattr_setflags(&setup.attributes_,
                             POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);
  ::posix_spawnattr_setpgroup(&setup.attributes_, 0);
  ::posix_spawnattr_setsigdefault(&setup.attributes_, &all);
  ::posix_spawnattr_setsigmask(&setup.attributes_, &none);

  std::vector<std::string> environment{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"};
  for (auto& entry : env) {
    environment.push_back(std::move(entry));
  }
  std::vector<char*> argv;
  std::vector<char*> envp;
  argv.reserve(hook.argv.size() + 1);
  envp.reserve(environment.size() + 1);
  for (const auto& arg : hook.argv) {
    argv.push_back(const_cast<char*>(arg.c_str()));  // NOLINT(cppcoreguidelines-pro-type-const-cast): posix_spawn's type
  }
  argv.push_back(nullptr);
  for (const auto& entry : environment) {
    envp.push_back(const_cast<char*>(entry.c_str()));  // NOLINT(cppcoreguidelines-pro-type-const-cast)
  }
  envp.push_back(nullptr);

  pid_t pid = 0;
  const uint64_t spawn_us = monotonic_us_();
  // glibc's posix_spawn (clone with CLONE_VM|CLONE_VFORK) returns once the child has exec'ed or failed
  // to, and reports the exec's error: a missing executable is known here.
  const int spawned = ::posix_spawn(&pid, hook.argv.front().c_str(), &setup.actions_, &setup.attributes_,
                                    argv.data(), envp.data());
  if (spawned != 0) {
    return answer(spawned == ENOENT ? "missing" : "spawn_failed", hook.argv.front() + ": " + errnoText(spawned));
  }
  started_us.push_back(now_us);
  input_read = cgroupfs::UniqueFd();
  output_write = cgroupfs::UniqueFd();

  auto running = std::make_shared<Running>(io_, next_id_++);
  running->key = key;
  running->outcome.hook = name;
  running->outcome.pid = pid;
  running->max_output_bytes = hook.max_output_bytes;
  running->started_us = spawn_us;
  running->timeout_ms = hook.timeout_ms;
  running->done = std::move(done);
  running_[running->id] = running;

  // Its oom_score_adj, written at once (it starts with oomguard's own until then; raising it needs no
  // privilege). A failure is reported with the outcome and changes nothing else.
  {
    // /proc of oomguard's own pid namespace, where `pid` names the hook (never --proc-root's).
    std::ofstream adj("/proc/" + std::to_string(pid) + "/oom_score_adj");
    adj << limits.oom_score_adj;
    adj.flush();
    if (!adj) {
      running->outcome.detail = "oom_score_adj not set; ";
    }
  }

  running->output_pipe.assign(output_read.release());
  readOutput(running);
  // The child is not reaped until waitid below: its pid (and group id) cannot be reused before, so the
  // pidfd, the group kill and the reap all name this hook.
  const int pidfd = pidfdOpen(pid);
  if (pidfd >= 0) {
    running->exit_watch.assign(pidfd);
  }
  watchExit(running);
  running->deadline.expires_after(std::chrono::milliseconds(hook.timeout_ms));
  running->deadline.async_wait([this, running](const boost::system::error_code& error) {
    if (error || running->reaped) {
      return;  // (reaped: set by finish() and stop() too, so a group id that may be reused is never signalled)
    }
    running->timed_out = true;
    ::kill(-running->outcome.pid, SIGKILL);
    // The outcome now, not at the reap: a process in uninterruptible sleep (or tearing down a large
    // address space) dies late, and the kill waiting on a pre_kill hook waits its timeout, never longer.
    // It stays listed (and counted against max_concurrent) until it is reaped.
    deliver(running);
  });
}

void HookRunner::watchExit(const std::shared_ptr<Running>& hook) {
  auto reaped = [this, hook](const siginfo_t& info) {
    hook->reaped = true;
    hook->code = info.si_code;
    hook->status = info.si_status;
    finish(hook);
  };
  if (hook->exit_watch.is_open()) {
    hook->exit_watch.async_wait(boost::asio::posix::stream_descriptor::wait_read,
                                [hook, reaped](const boost::system::error_code& error) {
                                  if (error == boost::asio::error::operation_aborted) {
                                    return;
                                  }
                                  siginfo_t info{};
                                  if (::waitid(kWaitPidfd, static_cast<id_t>(hook->exit_watch.native_handle()),
                                               &info, WEXITED | WNOHANG) != 0) {
                                    reapNow(hook->outcome.pid, info);  // Linux 5.3: pidfds, no P_PIDFD
                                  }
                                  reaped(info);
                                });
    return;
  }
  // Without pidfds (Linux < 5.3): reaped with WNOHANG every 20 ms (the deadline above still kills it).
  hook->poll.expires_after(std::chrono::milliseconds(20));
  hook->poll.async_wait([this, hook, reaped](const boost::system::error_code& error) {
    if (error) {
      return;
    }
    if (siginfo_t info{}; reapNow(hook->outcome.pid, info)) {
      reaped(info);
      return;
    }
    watchExit(hook);
  });
}

void HookRunner::readOutput(const std::shared_ptr<Running>& hook) {
  hook->output_pipe.async_read_some(
      boost::asio::buffer(hook->buffer), [this, hook](const boost::system::error_code& error, size_t got) {
        if (error == boost::asio::error::operation_aborted) {
          return;
        }
        HookOutcome& outcome = hook->outcome;
        const size_t room = hook->max_output_bytes > outcome.output.size() ? hook->max_output_bytes - outcome.output.size() : 0;
        outcome.output.append(hook->buffer.data(), std::min(room, got));
        outcome.output_truncated = outcome.output_truncated || got > room;
        if (!error && hook->output_pipe.is_open()) {
          readOutput(hook);  // until EOF: the rest is read and dropped, so the hook never blocks on a full pipe
        }
      });
}

void HookRunner::deliver(const std::shared_ptr<Running>& hook) {
  if (hook->delivered) {
    return;
  }
  hook->delivered = true;
  HookOutcome& outcome = hook->outcome;
  outcome.duration_us = monotonic_us_() - hook->started_us;
  if (hook->output_pipe.is_open()) {
    // What it wrote so far (a process it left behind may hold the pipe open: not waited for).
    drain(hook->output_pipe.native_handle(), outcome, hook->max_output_bytes);
    boost::system::error_code ignored;
    hook->output_pipe.close(ignored);
  }
  if (hook->timed_out) {
    outcome.result = "timeout";
    outcome.detail += "killed (its process group) after " + std::to_string(outcome.duration_us / 1000) + " ms";
  } else if (hook->code == CLD_EXITED && hook->status == 0) {
    outcome.result = "ok";
    outcome.detail += "exit 0";
  } else if (hook->code == CLD_EXITED) {
    outcome.result = "failed";
    outcome.detail += "exit " + std::to_string(hook->status);
  } else if (hook->code == CLD_KILLED || hook->code == CLD_DUMPED) {
    outcome.result = "failed";
    outcome.detail += "signal " + std::to_string(hook->status);
  } else {
    outcome.result = "failed";
    outcome.detail += "exit status unknown";
  }
  Done done = std::move(hook->done);
  hook->done = nullptr;
  if (done) {
    done(outcome);
  }
}

void HookRunner::finish(const std::shared_ptr<Running>& hook) {
  reaped_.emplace_back(hook->outcome.pid, monotonic_us_());
  while (reaped_.size() > 64) {
    reaped_.pop_front();
  }
  boost::system::error_code ignored;
  hook->exit_watch.close(ignored);
  hook->deadline.cancel();
  hook->poll.cancel();
  running_.erase(hook->id);
  deliver(hook);  // unless the deadline did already
}

void HookRunner::stop() {
  *accepting_ = false;  // outcomes already posted by run() are not delivered
  accepting_ = std::make_shared<bool>(true);
  if (running_.empty()) {
    return;
  }
  for (const auto& [id, hook] : running_) {
    ::kill(-hook->outcome.pid, SIGKILL);
  }
  std::vector<pid_t> pending;
  for (const auto& [id, hook] : running_) {
    boost::system::error_code ignored;
    hook->exit_watch.close(ignored);
    hook->output_pipe.close(ignored);
    hook->deadline.cancel();
    hook->poll.cancel();
    hook->done = nullptr;
    hook->reaped = true;  // a deadline whose completion is already queued signals nothing now
    hook->delivered = true;
    pending.push_back(hook->outcome.pid);
  }
  running_.clear();
  for (int round = 0; round < 10 && !pending.empty(); ++round) {
    std::erase_if(pending, [](pid_t pid) {
      siginfo_t info{};
      return reapNow(pid, info);
    });
    if (!pending.empty()) {
      ::usleep(10'000);
    }
  }
}

}  // namespace oomguard::guardian::io
