// The operator's hooks (config::Hook), run off the event loop: each is spawned (posix_spawn, no shell)
// into a process group of its own with a minimal environment, the event as JSON on its stdin and its
// stdout and stderr read through one pipe; it is watched and reaped through a pidfd, and its whole group
// gets SIGKILL at its timeout. Nothing here blocks the loop beyond the spawn itself.
#pragma once

#include <sys/types.h>

#include <boost/asio/io_context.hpp>
#include <cstdint>
#include <array>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "guardian/config/config.hpp"

namespace oomguard::guardian::io {

// How one hook ended.
struct HookOutcome {
  std::string hook;    // pre_kill | post_kill
  // ok (exit 0) | failed (another exit status, or a signal) | timeout (killed at its timeout) |
  // missing (argv[0] does not exist) | spawn_failed (another reason it could not start) |
  // dropped (a cap, or a hook of the same key still running: it never started)
  std::string result;
  std::string detail;  // "exit 3", "signal 9", "killed after 500 ms", the spawn's error, why it was dropped
  pid_t pid = 0;       // 0 when it never started
  uint64_t duration_us = 0;  // from the spawn to the reap
  std::string output;        // the first max_output_bytes of stdout and stderr, as written
  bool output_truncated = false;
};

class HookRunner {
 public:
  using MonotonicUs = std::function<uint64_t()>;
  using Done = std::function<void(const HookOutcome&)>;
  // The event written to a hook's stdin is cut at this size (the pipe's capacity: writing it never blocks).
  static constexpr size_t kMaxInputBytes = size_t{60} * 1024;

  HookRunner(boost::asio::io_context& io, MonotonicUs monotonic_us);
  // stop().
  ~HookRunner();
  HookRunner(const HookRunner&) = delete;
  HookRunner& operator=(const HookRunner&) = delete;

  // Starts `hook` as `name` for `key` (a victim; at most one hook per key runs at a time), with `input` on
  // its stdin and `env` ("NAME=value" each) beside PATH=/usr/sbin:/usr/bin:/sbin:/bin as its environment,
  // and limits.oom_score_adj. `done` is called exactly once, on the loop and never from within run():
  // dropped, missing and spawn_failed soon after, the others once the hook has been reaped. The caps
  // (limits.max_concurrent, max_per_minute) count the "warn" hooks and the kill hooks apart.
  void run(const std::string& name, const config::Hook& hook, const config::Hooks& limits, const std::string& key,
           std::string input, std::vector<std::string> env, Done done);
  // Hooks started and not yet reaped (a timed-out one stays until it dies).
  [[nodiscard]] size_t running() const { return running_.size(); }
  // Whether `pid` is a hook this runner started: running, or reaped within the last 10 s (the kernel's
  // report of a hook it killed may be read after the reap).
  [[nodiscard]] bool isHook(pid_t pid) const;
  // Whether a hook of `key` is running and has not had its outcome (a timed-out hook that is slow to
  // die no longer runs for its victim).
  [[nodiscard]] bool runningFor(const std::string& key) const;
  // SIGKILL to every running hook's process group; reaps those that are gone within 100 ms (at exit the
  // others are left to init). No `done` is called after it.
  void stop();

  struct Running;

 private:
  // The outcome to `done`, once (at the reap, or at the deadline).
  void deliver(const std::shared_ptr<Running>& hook);
  // Reaped: closes its watches, drops it from running_, and delivers unless the deadline did.
  void finish(const std::shared_ptr<Running>& hook);
  void watchExit(const std::shared_ptr<Running>& hook);
  void readOutput(const std::shared_ptr<Running>& hook);

  boost::asio::io_context& io_;
  MonotonicUs monotonic_us_;
  std::map<uint64_t, std::shared_ptr<Running>> running_;
  // The starts of the last minute, for max_per_minute: the kill hooks' [0] and the warn hooks' [1].
  std::array<std::deque<uint64_t>, 2> started_us_;
  std::deque<std::pair<pid_t, uint64_t>> reaped_;  // hooks reaped in the last 10 s (at most 64), for isHook
  // The outcomes posted by run() (dropped, missing, spawn_failed) check it: stop() turns it off, so that
  // none is delivered after it.
  std::shared_ptr<bool> accepting_ = std::make_shared<bool>(true);
  uint64_t next_id_ = 1;
};

}  // namespace oomguard::guardian::io
