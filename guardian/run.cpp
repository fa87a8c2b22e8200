#include "guardian/run.hpp"

#include <boost/asio/io_context.hpp>
#include <ostream>

#include "guardian/commands.hpp"
#include "guardian/daemon.hpp"

namespace oomguard::guardian {

int runDaemon(const RunOptions& options, std::ostream& out, std::ostream& err) {
  Config config;
  if (options.config_path) {
    try {
      config = loadConfigFile(*options.config_path);
    } catch (const ConfigError& error) {
      err << "oomguard: " << error.what() << "\n";
      return kExitUsage;
    }
  }
  boost::asio::io_context io(1);
  EventLog log(out, [] { return std::chrono::system_clock::now(); });
  DaemonOptions daemon_options;
  daemon_options.proc_root = options.proc_root;
  daemon_options.cgroup_root = options.cgroup_root;
  daemon_options.config_path = options.config_path;
  daemon_options.dry_run = options.dry_run;
  Daemon daemon(io, std::move(config), daemon_options, log, err);
  daemon.start();
  io.run();
  log.write("stopped", nlohmann::ordered_json{{"decisions", daemon.stats().decisions},
                                              {"kernel_oom_kills", daemon.stats().kernel_oom_kills}});
  return kExitOk;
}

}  // namespace oomguard::guardian
