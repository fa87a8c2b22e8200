#include "process_population.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>

namespace oomguard::testing {
namespace {

[[noreturn]] void runChild(const ChildSpec& spec, int ready_fd) {
  char ok = 0;
  char text[16];
  const int length = std::snprintf(text, sizeof text, "%d\n", spec.oom_score_adj);
  const int adj_fd = ::open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
  if (adj_fd < 0 || ::write(adj_fd, text, static_cast<size_t>(length)) != length) {
    (void)::write(ready_fd, &ok, 1);
    ::_exit(1);
  }
  ::close(adj_fd);
  if (spec.anon_bytes > 0) {
    void* anon = ::mmap(nullptr, spec.anon_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (anon == MAP_FAILED) {
      ::_exit(1);
    }
    std::memset(anon, 0x5a, spec.anon_bytes);
  }
  if (spec.shmem_bytes > 0) {
    const int fd = ::memfd_create("population", MFD_CLOEXEC);
    if (fd < 0 || ::ftruncate(fd, static_cast<off_t>(spec.shmem_bytes)) != 0) {
      ::_exit(1);
    }
    void* shared = ::mmap(nullptr, spec.shmem_bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (shared == MAP_FAILED) {
      ::_exit(1);
    }
    std::memset(shared, 0x3c, spec.shmem_bytes);
  }
  ok = 1;
  (void)::write(ready_fd, &ok, 1);
  ::close(ready_fd);
  for (;;) {
    ::pause();
  }
}

}  // namespace

pid_t ProcessPopulation::spawn(const ChildSpec& spec) {
  int pipe_fds[2];
  if (::pipe2(pipe_fds, O_CLOEXEC) != 0) {
    return -1;
  }
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) {
    ::close(pipe_fds[0]);
    ::close(pipe_fds[1]);
    return -1;
  }
  if (pid == 0) {
    // A test process that crashes never reaps its children: they die with it, rather than hold the
    // output pipe ctest waits on (a segfaulting test once held the suite for 16 minutes).
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) {
      ::_exit(1);  // the parent died before the prctl
    }
    ::close(pipe_fds[0]);
    runChild(spec, pipe_fds[1]);
  }
  ::close(pipe_fds[1]);
  pids_.push_back(pid);
  char ok = 0;
  const ssize_t got = ::read(pipe_fds[0], &ok, 1);
  ::close(pipe_fds[0]);
  return got == 1 && ok == 1 ? pid : -1;
}

void ProcessPopulation::killAll() {
  for (const pid_t pid : pids_) {
    ::kill(pid, SIGKILL);
  }
  for (const pid_t pid : pids_) {
    ::waitpid(pid, nullptr, 0);
  }
  pids_.clear();
}

ProcessPopulation::~ProcessPopulation() { killAll(); }

}  // namespace oomguard::testing
