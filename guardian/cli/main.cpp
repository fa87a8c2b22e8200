// The `oomguard` command. CLI11 parses the command line (Debian's libcli11-dev): subcommands, typed
// options, validation and help text without hand-written parsing.
#include <chrono>
#include <CLI/CLI.hpp>
#include <iostream>

#include "guardian/cli/commands.hpp"
#include "guardian/config/address.hpp"
#include "guardian/config/config.hpp"
#include "guardian/text/format.hpp"
#include "guardian/exporter/metrics_prometheus.hpp"
#include "guardian/kube_client/loader.hpp"
#include "guardian/cli/run.hpp"
#include "oomguard/version.hpp"

namespace oomguard::guardian::cli {
namespace {

int runMain(int argc, char** argv) {
  CLI::App app{"oomguard: the kernel's OOM victim model, exactly, for the host and every cgroup with a limit"};
  app.set_version_flag("--version", [] {
    // The Kubernetes client is a module loaded by `run` only when kubernetes.enabled: say whether it loads.
    const auto tls = kube_client::loadTlsClient();
    return std::string(kVersion) + "\nkubernetes client: " +
           (tls.client != nullptr ? tls.path : "cannot be loaded: " + tls.error);
  });
  app.fallthrough();
  app.require_subcommand(1);
  std::string proc_root = "/proc";
  std::string cgroup_root = "/sys/fs/cgroup";
  // A root that does not exist is bad usage (exit 2), never an empty node that looks fine.
  app.add_option("--proc-root", proc_root, "Where /proc is (e.g. /host/proc in a container)")
      ->check(CLI::ExistingDirectory)
      ->capture_default_str();
  app.add_option("--cgroup-root", cgroup_root, "Where the cgroup v2 hierarchy is mounted")
      ->check(CLI::ExistingDirectory)
      ->capture_default_str();

  TopOptions top_options;
  bool top_all = false;
  std::string top_by = "process";
  auto* top = app.add_subcommand("top", "The victim ranking of one OOM domain, the kernel's next victim first");
  top->add_flag("--json", top_options.json, "JSON output (see DESIGN.md section 4)");
  auto* limit = top->add_option("--limit", top_options.limit, "Show the first N killable candidates")
                    ->check(CLI::PositiveNumber)
                    ->capture_default_str();
  top->add_flag("--all", top_all, "Show every process of the domain, unkillable ones last")->excludes(limit);
  top->add_flag("--kernel-scores", top_options.kernel_scores,
                "With --all: show each process's oom_score as the kernel computes it (/proc/<pid>/oom_score, a third "
                "read per process), not the model's");
  top->add_option("--domain", top_options.domain, "\"host\" or a cgroup path with a memory.max, e.g. /pods/a")
      ->capture_default_str();
  top->add_option("--by", top_by, "Rank processes, or cgroups (the unit a kill takes)")
      ->check(CLI::IsMember({"process", "cgroup"}))
      ->capture_default_str();

  ExplainOptions explain_options;
  auto* explain = app.add_subcommand("explain", "How each term of a process's score arises, in every domain it is in");
  explain->add_option("pid", explain_options.pid, "The process")->required()->check(CLI::PositiveNumber);
  explain->add_flag("--json", explain_options.json, "JSON output");
  explain->add_option("--config", explain_options.config_path,
                      "Also say which of this config's rules (processes, cgroups) apply to the process");

  ExplainOomOptions explain_oom_options;
  auto* explain_oom = app.add_subcommand(
      "explain-oom", "Replay a kernel OOM report (dmesg, journalctl -k, /dev/kmsg): why the kernel killed what it killed");
  explain_oom->add_option("file", explain_oom_options.input, "The kernel log, or - for standard input")
      ->required()
      ->check([](std::string value) { return value == "-" ? std::string() : CLI::ExistingFile(value); });
  explain_oom->add_flag("--json", explain_oom_options.json, "JSON output");
  explain_oom->add_option("--swappiness", explain_oom_options.vm_swappiness,
                          "vm.swappiness of the reporting machine (a memcg report lacks it; default: assumed 60)")
      ->check(CLI::Range(0L, 200L));
  explain_oom->add_option("--total-swap-kb", explain_oom_options.total_swap_kb,
                          "SwapTotal of the reporting machine in kB (a memcg report lacks it; default: assumed 0)");
  explain_oom->add_option("--page-size", explain_oom_options.page_size_bytes,
                          "Page size of the reporting machine in bytes (default: inferred from the report, else 4096)")
      ->check(CLI::IsMember({4096UL, 16384UL, 65536UL}));

  HistoryOptions history_options;
  auto* history = app.add_subcommand("history", "Every OOM kill the daemon has journaled (the kernel's and its own), also while it is down");
  auto* history_dir = history->add_option("--dir", history_options.dir, "The daemon's history.dir")->capture_default_str();
  std::optional<std::string> history_config;
  history->add_option("--config", history_config, "Take the directory from this config's history.dir")
      ->excludes(history_dir);
  history->add_flag("--json", history_options.json, "JSON lines, as journaled");
  history->add_option("--since", history_options.since, "Only the kills of the last DURATION (e.g. 90s, 15m, 2h, 7d)");

  DoctorOptions doctor_options;
  auto* doctor = app.add_subcommand("doctor", "This node's OOM behaviour in plain words, with warnings");
  doctor->add_flag("--json", doctor_options.json, "JSON output");

  std::optional<std::string> config_path;
  bool dry_run = false;
  auto* run = app.add_subcommand("run", "The event-driven daemon; with no config it only observes and logs");
  run->add_option("--config", config_path, "JSON config file (see examples/oomguard.json)");
  run->add_flag("--dry-run", dry_run, "Decide and log as configured, but act on nothing");
  std::optional<std::string> metrics_listen;
  run->add_option("--metrics-listen", metrics_listen,
                  "Serve /metrics and /healthz on ADDR:PORT (default: the config's metrics.listen, 127.0.0.1:9743)")
      ->check([](const std::string& value) {
        const auto address = config::parseListenAddress(value);
        return address ? std::string() : address.error().message;
      });

  HealthOptions health_options;
  auto* health = app.add_subcommand("health", "Ask a running daemon's /healthz (for an exec probe); exit 0 when healthy");
  health->add_option("--address", health_options.address, "ADDR:PORT of metrics.health_listen or metrics.listen")
      ->capture_default_str();
  health->add_option("--timeout-ms", health_options.timeout_ms, "Give up after this long")
      ->capture_default_str()
      ->check(CLI::Range(1, 60000));

  std::string check_path;
  auto* check = app.add_subcommand("check-config", "Validate a config file; errors name the JSON path");
  check->add_option("file", check_path, "The config file")->required();

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& help) {
    return app.exit(help);
  } catch (const CLI::CallForAllHelp& help) {
    return app.exit(help);
  } catch (const CLI::CallForVersion& version) {
    return app.exit(version);
  } catch (const CLI::ParseError& error) {
    app.exit(error);
    return kExitUsage;
  }

  if (history->parsed()) {
    history_options.now_epoch_s =
        std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
    if (history_config) {
      try {
        const auto config = config::loadConfigFile(*history_config);
        if (!config.history) {
          std::cerr << "oomguard history: " << text::printable(*history_config) << ": history is null (no journal)\n";
          return kExitFailure;
        }
        history_options.dir = config.history->dir;
      } catch (const config::ConfigError& error) {
        std::cerr << "oomguard history: " << text::printable(error.what()) << "\n";
        return kExitUsage;
      }
    }
    return runHistory(history_options, std::cout, std::cerr);
  }
  if (explain_oom->parsed()) {
    return runExplainOom(explain_oom_options, std::cin, std::cout, std::cerr);
  }
  io::Node node(proc_root, cgroup_root);
  if (top->parsed()) {
    top_options.by_cgroup = top_by == "cgroup";
    if (top_all) {
      top_options.limit = 0;
    }
    return runTop(node, top_options, std::cout, std::cerr);
  }
  if (explain->parsed()) {
    return runExplain(node, explain_options, std::cout, std::cerr);
  }
  if (doctor->parsed()) {
    return runDoctor(node, doctor_options, std::cout, std::cerr);
  }
  if (health->parsed()) {
    return runHealth(health_options, std::cout, std::cerr);
  }
  if (check->parsed()) {
    try {
      const config::Config config = config::loadConfigFile(check_path);
      std::cout << text::printable(check_path) << ": valid (mode " << config::toString(config.mode) << ", " << config.cgroups.size() << " cgroup rules)\n";
      return kExitOk;
    } catch (const config::ConfigError& error) {
      std::cerr << "oomguard: " << text::printable(error.what()) << "\n";
      return kExitUsage;
    }
  }
  if (run->parsed()) {
    return runDaemon(RunOptions{proc_root, cgroup_root, config_path, dry_run, metrics_listen}, std::cout, std::cerr);
  }
  return kExitUsage;
}

}  // namespace
}  // namespace oomguard::guardian::cli

int main(int argc, char** argv) {
  try {
    return oomguard::guardian::cli::runMain(argc, argv);
  } catch (const std::exception& error) {
    std::cerr << "oomguard: " << oomguard::guardian::text::printable(error.what()) << "\n";
    return oomguard::guardian::cli::kExitFailure;
  }
}
