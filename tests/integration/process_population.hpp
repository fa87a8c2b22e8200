// Child processes with chosen memory footprints and oom_score_adj, for tests and benchmarks on the
// live /proc. Every child is killed and reaped when the population is destroyed.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <vector>

namespace oomguard::testing {

struct ChildSpec {
  size_t anon_bytes = 0;   // private anonymous memory, touched
  size_t shmem_bytes = 0;  // shared memory (memfd), touched
  int oom_score_adj = 0;
};

class ProcessPopulation {
 public:
  ProcessPopulation() = default;
  ProcessPopulation(const ProcessPopulation&) = delete;
  ProcessPopulation& operator=(const ProcessPopulation&) = delete;
  ~ProcessPopulation();

  // Forks a child that sets its oom_score_adj, touches its memory, reports ready, then sleeps until
  // killed. Returns its pid, or -1 when it could not be started or could not set its adj.
  pid_t spawn(const ChildSpec& spec);
  [[nodiscard]] const std::vector<pid_t>& pids() const { return pids_; }
  void killAll();

 private:
  std::vector<pid_t> pids_;
};

}  // namespace oomguard::testing
