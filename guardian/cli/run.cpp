#include "guardian/cli/run.hpp"

#include <malloc.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <cstdlib>
#include <ostream>

#include "guardian/cli/commands.hpp"
#include "guardian/io/actuator.hpp"
#include "guardian/io/features.hpp"
#include "guardian/daemon/daemon.hpp"
#include "guardian/config/address.hpp"
#include "guardian/text/format.hpp"
#include "guardian/exporter/metrics_prometheus.hpp"
#include "oomguard/version.hpp"

namespace oomguard::guardian::cli {

namespace {

std::string kernelRelease() {
  utsname names{};
  return ::uname(&names) == 0 ? std::string(names.release) : std::string("unknown");
}

}  // namespace

int runDaemon(const RunOptions& options, std::ostream& out, std::ostream& err) {
  // One malloc arena: the decisions run on one thread and the metrics server's few threads share it,
  // instead of each getting an arena of its own (locked in memory by mlockall).
  ::mallopt(M_ARENA_MAX, 1);
  // A scrape's text (megabytes on a big node) is allocated and freed each time: a fixed mmap threshold
  // (setting it turns off glibc's dynamic raise after the first free) gives such buffers back at once
  // instead of leaving them in the heap, locked by mlockall.
  ::mallopt(M_MMAP_THRESHOLD, 256 * 1024);
  config::Config config;
  if (options.config_path) {
    try {
      config = config::loadConfigFile(*options.config_path);
    } catch (const config::ConfigError& error) {
      err << "oomguard: " << text::printable(error.what()) << "\n";
      return kExitUsage;
    }
  }
  // Without the node's facts (kernel release, MemTotal) every point would be computed against
  // totalpages 0: refuse a --proc-root that is not a procfs rather than run blind.
  if (auto facts = io::Node(options.proc_root, options.cgroup_root).readFacts(); !facts) {
    err << "oomguard: " << text::printable(options.proc_root) << " does not look like /proc: "
        << text::printable(facts.error().describe()) << "\n";
    return kExitFailure;
  }
  // Acting signals this pid namespace's processes: only on its live /proc and a real cgroup2 tree.
  if (config.mode == config::Mode::kAct && !options.dry_run) {
    if (const auto refusal = io::SystemActuator::rootsRefusal(options.proc_root, options.cgroup_root)) {
      err << "oomguard: mode act refused: " << text::printable(*refusal) << " (--dry-run decides without acting)\n";
      return kExitUsage;
    }
    // The capabilities the kills need, checked before anything is armed: a daemon that would decide
    // and then fail every kill with EPERM is refused, and says which capability is missing.
    if (const auto effective = io::ownEffectiveCapabilities()) {
      const auto check = io::checkActCapabilities(*effective);
      if (!check.refused.empty()) {
        err << "oomguard: mode act refused: this process has not got ";
        for (size_t i = 0; i < check.refused.size(); ++i) {
          err << (i > 0 ? ", " : "") << check.refused[i];
        }
        err << ". Under systemd, grant it in the unit (/usr/share/doc/oomguard/act.conf is the drop-in for "
               "mode act); in a container, add it to the container's capabilities. --dry-run decides without "
               "acting.\n";
        return kExitUsage;
      }
      for (const auto& line : check.degraded) {
        err << "oomguard: mode act: " << line << "\n";
      }
    }
  }
  boost::asio::io_context io(1);
  io::EventLog log(out, [] { return std::chrono::system_clock::now(); });
  daemon::DaemonOptions daemon_options;
  daemon_options.proc_root = options.proc_root;
  daemon_options.cgroup_root = options.cgroup_root;
  daemon_options.config_path = options.config_path;
  daemon_options.dry_run = options.dry_run;
  daemon_options.metrics_listen = options.metrics_listen;
  daemon_options.notify = io::notifySettingsFromEnvironment(::getpid());
  if (options.metrics_listen) {
    config.metrics_listen = *options.metrics_listen;
  }
  // The exporter serves from its own threads, started before the daemon so that an address already in
  // use stops oomguard at once, before it has watched or armed anything.
  if (const auto address = config::parseListenAddress(config.metrics_listen); !address) {
    err << "oomguard: metrics listen address " << text::printable(address.error().message) << "\n";
    return kExitUsage;
  }
  exporter::PrometheusMetrics metrics(config.metrics_top_k, kVersion, kernelRelease());
  // /healthz fails when the decision loop has not turned (a refresh) for exporter::loopStallLimit; the
  // daemon sets it again at each refresh (a reload may change the interval).
  metrics.setLoopStallLimit(exporter::loopStallLimit(config.refresh_interval_s));
  try {
    metrics.serve(config.metrics_listen);
    if (!config.health_listen.empty()) {
      metrics.serveHealth(config.health_listen);
    }
  } catch (const std::exception& error) {
    err << "oomguard: " << text::printable(error.what()) << "\n";
    return kExitFailure;
  }
  const auto ports = metrics.listeningPorts();
  log.write("metrics_listening", nlohmann::ordered_json{{"listen", config.metrics_listen},
                                                        {"port", ports.empty() ? 0 : ports.front()}});
  // The kill path's kernel features, probed once; each fallback is said with its reason.
  std::string fallbacks;
  const auto features = io::SystemActuator::probe(options.cgroup_root, fallbacks);
  if (!fallbacks.empty()) {
    err << "oomguard: kill path fallbacks: " << fallbacks << "\n";
  }
  io::SystemActuator system_actuator(io, options.proc_root, options.cgroup_root, features);
  io::DryRunActuator dry_run_actuator(options.proc_root);
  io::Actuator& actuator = options.dry_run ? static_cast<io::Actuator&>(dry_run_actuator) : system_actuator;
  daemon::Daemon daemon(io, std::move(config), daemon_options, log, metrics, actuator, err);
  daemon.start();
  io.run();
  log.write("stopped", nlohmann::ordered_json{{"decisions", daemon.stats().decisions},
                                              {"kernel_oom_kills", daemon.stats().kernel_oom_kills}});
  // Everything is disarmed and the log is flushed. The metrics server's shutdown (civetweb) waits out a
  // poll timeout of up to 2 s; SIGTERM must end us within 1 s, so leave now and let the kernel close
  // its sockets.
  out.flush();
  err.flush();
  std::_Exit(kExitOk);
}

}  // namespace oomguard::guardian::cli
