// `oomguard run`: loads the config, builds the daemon on one io_context and runs it until a signal.
#pragma once

#include <iosfwd>
#include <optional>
#include <string>

namespace oomguard::guardian::cli {

struct RunOptions {
  std::string proc_root = "/proc";
  std::string cgroup_root = "/sys/fs/cgroup";
  std::optional<std::string> config_path;
  bool dry_run = false;
  std::optional<std::string> metrics_listen;  // --metrics-listen: overrides the config's metrics.listen
};

// Returns the exit code: 0 after SIGTERM/SIGINT, 2 for a bad config (nothing started then).
int runDaemon(const RunOptions& options, std::ostream& out, std::ostream& err);

}  // namespace oomguard::guardian::cli
