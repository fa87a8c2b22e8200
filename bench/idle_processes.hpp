// Idle child processes for benchmarks: each sleeps until killed and dies with the benchmark
// (PR_SET_PDEATHSIG), so none outlives it.
#pragma once

#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <vector>

namespace oomguard::bench {

inline std::vector<pid_t> spawnIdle(size_t count) {
  std::vector<pid_t> pids;
  pids.reserve(count);
  const pid_t parent = ::getpid();
  for (size_t i = 0; i < count; ++i) {
    const pid_t pid = ::fork();
    if (pid < 0) {
      std::fprintf(stderr, "fork failed after %zu processes: %s\n", i, std::strerror(errno));
      break;
    }
    if (pid == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != parent) {
        ::_exit(0);
      }
      for (;;) {
        ::pause();
      }
    }
    pids.push_back(pid);
  }
  return pids;
}

inline void reap(const std::vector<pid_t>& pids) {
  for (const pid_t pid : pids) {
    ::kill(pid, SIGKILL);
  }
  for (const pid_t pid : pids) {
    ::waitpid(pid, nullptr, 0);
  }
}

}  // namespace oomguard::bench
