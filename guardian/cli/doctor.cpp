// `oomguard doctor`: what this node will do when memory runs out, from its real settings.
#include <nlohmann/json.hpp>
#include <ostream>

#include "cgroupfs/parse.hpp"
#include "guardian/cli/commands.hpp"
#include "guardian/io/features.hpp"
#include "guardian/text/format.hpp"

namespace oomguard::guardian::cli {
namespace {

using Json = nlohmann::ordered_json;

struct Finding {
  std::string severity;  // "critical", "warning", "info"
  std::string message;
};

struct Settings {
  std::map<std::string, std::optional<long>> sysctls;
  [[nodiscard]] std::optional<long> get(const std::string& name) const {
    const auto found = sysctls.find(name);
    return found == sysctls.end() ? std::nullopt : found->second;
  }
};

std::string valueOr(const std::optional<long>& value, const char* missing = "unknown") {
  return value ? std::to_string(*value) : std::string(missing);
}

}  // namespace

int runDoctor(io::Node& node, const DoctorOptions& options, std::ostream& out, std::ostream& err) {
  auto& procfs = node.procfs();
  auto& cgroups = node.cgroupfs();
  auto facts_result = node.readFacts();
  if (!facts_result) {
    err << "oomguard: " << text::printable(facts_result.error().describe()) << "\n";
    return kExitFailure;
  }
  const auto& facts = facts_result.value();
  const auto& mem = facts.meminfo;

  Settings settings;
  for (const char* name : {"vm/panic_on_oom", "kernel/panic", "vm/oom_kill_allocating_task", "vm/oom_dump_tasks",
                           "vm/overcommit_memory", "vm/overcommit_ratio", "vm/overcommit_kbytes", "vm/swappiness",
                           "vm/min_free_kbytes", "kernel/core_pipe_limit"}) {
    auto value = procfs.readSysctl(name);
    settings.sysctls[name] = value ? std::optional<long>(value.value()) : std::nullopt;
  }
  const auto panic_on_oom = settings.get("vm/panic_on_oom");
  const auto kernel_panic = settings.get("kernel/panic");
  const auto allocating = settings.get("vm/oom_kill_allocating_task");
  const auto dump_tasks = settings.get("vm/oom_dump_tasks");
  const auto overcommit = settings.get("vm/overcommit_memory");
  const auto overcommit_ratio = settings.get("vm/overcommit_ratio");
  auto core_pattern = procfs.readText("sys/kernel/core_pattern");

  // PSI.
  auto psi = procfs.readPressure("memory");
  // cgroup v2 and its controllers.
  auto controllers = cgroups.readControllers("/");
  const bool cgroup2 = controllers.ok();
  const bool memory_controller =
      cgroup2 && std::find(controllers.value().begin(), controllers.value().end(), "memory") != controllers.value().end();
  cgroupfs::ReadCounters tree_counters;
  const auto domains = memory_controller ? node.listMemcgDomains(facts, tree_counters) : std::vector<policies::OomDomain>{};
  // Swap accounting and the per-cgroup files are visible on any child with the memory controller.
  bool swap_accounting = false;
  bool oom_group_file = false;
  bool cgroup_kill_file = false;
  if (cgroup2) {
    if (auto children = cgroups.listChildren("/")) {
      for (const auto& child : children.value()) {
        swap_accounting = swap_accounting || cgroups.hasFile(child, "memory.swap.max");
        oom_group_file = oom_group_file || cgroups.hasFile(child, "memory.oom.group");
        cgroup_kill_file = cgroup_kill_file || cgroups.hasFile(child, "cgroup.kill");
      }
    }
  }
  const auto features = io::probeKernelFeatures();
  auto buddy = procfs.readBuddyInfo();

  // The host's next victim, for the plain-words flow.
  auto host = node.rankHost(facts, false);
  std::optional<policies::Candidate> next_victim;
  if (!host.candidates.empty() && host.candidates.front().killable) {
    next_victim = host.candidates.front();
  }

  std::vector<std::string> flow;
  std::vector<Finding> findings;
  // Host OOM flow: panic_on_oom -> oom_kill_allocating_task -> badness scan.
  if (panic_on_oom.value_or(0) >= 1) {
    flow.push_back(std::string("When the host runs out of memory, the kernel panics (vm.panic_on_oom=") +
                   std::to_string(*panic_on_oom) + ") " +
                   (kernel_panic.value_or(0) > 0 ? "and reboots " + std::to_string(*kernel_panic) + " s later (kernel.panic)."
                    : kernel_panic.value_or(0) < 0 ? "and reboots at once (kernel.panic < 0)."
                                                   : "and then hangs forever: kernel.panic=0 means no reboot."));
  } else if (allocating.value_or(0) == 1) {
    flow.push_back(
        "When the host runs out of memory, the kernel kills the task whose allocation failed "
        "(vm.oom_kill_allocating_task=1), whoever it is, without comparing badness; it scans only if that task "
        "is unkillable.");
  } else {
    std::string line =
        "When the host runs out of memory, the kernel scans every task and kills the one with the highest "
        "badness (rss + swap + page tables + oom_score_adj * totalpages/1000)";
    if (next_victim) {
      const auto& victim = host.processOf(*next_victim);
      line += "; right now that is pid " + std::to_string(victim.pid) + " (" + victim.status.comm + ", " +
              std::to_string(next_victim->points) + " points, oom_score " + std::to_string(next_victim->oom_score) + ")";
    }
    flow.push_back(line + ".");
  }
  if (memory_controller) {
    flow.push_back(panic_on_oom.value_or(0) == 2
                       ? "When a cgroup hits its memory.max, the kernel panics the whole node (vm.panic_on_oom=2)."
                       : "When a cgroup hits its memory.max, the kernel kills the worst task inside that cgroup's "
                         "subtree (oom_kill_allocating_task does not apply there); memory.oom.group=1 turns that into "
                         "killing the whole cgroup. " + std::to_string(domains.size()) +
                             " cgroups have a memory.max here (see `oomguard top --domain <cgroup>`).");
  }
  flow.push_back(dump_tasks.value_or(1) != 0
                     ? "Each kernel OOM kill is reported in the kernel log with a task dump (vm.oom_dump_tasks=1)."
                     : "Kernel OOM reports carry no task list (vm.oom_dump_tasks=0): only the victim line.");

  if (panic_on_oom.value_or(0) >= 1 && kernel_panic.value_or(0) == 0) {
    findings.push_back({"critical", "vm.panic_on_oom=" + std::to_string(*panic_on_oom) +
                                        " with kernel.panic=0: an OOM hangs this node forever instead of rebooting it. "
                                        "Set kernel.panic to a number of seconds."});
  }
  if (panic_on_oom.value_or(0) == 2) {
    findings.push_back({"critical", "vm.panic_on_oom=2 panics the node on every memcg OOM: any container reaching "
                                    "its memory limit takes the whole node down."});
  }
  if (allocating.value_or(0) == 1) {
    findings.push_back({"warning", "vm.oom_kill_allocating_task=1: host OOM victims are whoever allocates last, often "
                                   "a small innocent task; the badness ranking (and oom_score_adj protections) are "
                                   "ignored for host OOMs."});
  }
  if (overcommit.value_or(0) == 2) {
    const auto limit = mem.commit_limit_kb.value_or(0);
    const auto committed = mem.committed_as_kb.value_or(0);
    const uint64_t in_use_kb = mem.mem_total_kb - mem.mem_available_kb.value_or(mem.mem_free_kb);
    if (limit < in_use_kb || committed * 10 > limit * 9) {
      findings.push_back({"warning", "vm.overcommit_memory=2 (strict) with CommitLimit " + text::humanBytes(limit * 1024) +
                                         " against Committed_AS " + text::humanBytes(committed * 1024) + " and " +
                                         text::humanBytes(in_use_kb * 1024) +
                                         " in use: allocations will fail with ENOMEM before the OOM killer runs. "
                                         "vm.overcommit_ratio=" + valueOr(overcommit_ratio) + "."});
    }
  } else if (overcommit.value_or(0) == 1) {
    findings.push_back({"info", "vm.overcommit_memory=1: the kernel never refuses an allocation; the OOM killer is "
                                "the only brake."});
  }
  if (mem.swap_total_kb == 0) {
    findings.push_back({"info", "No swap: memory pressure turns into OOM kills quickly; PSI 'full' stalls come from "
                                "page-cache thrashing only."});
  } else if (memory_controller && !swap_accounting) {
    findings.push_back({"warning", "Swap is on but cgroup swap accounting is off (no memory.swap.max): containers "
                                   "can fill swap without limit."});
  }
  if (!psi) {
    findings.push_back({"warning", "PSI is unavailable (" + psi.error().describe() +
                                       "): boot with psi=1 for pressure triggers."});
  }
  if (!cgroup2) {
    findings.push_back({"warning", "No cgroup v2 hierarchy at " + cgroups.root() + ": memcg OOM domains are invisible."});
  } else if (!memory_controller) {
    findings.push_back({"warning", "The cgroup v2 hierarchy at " + cgroups.root() +
                                       " has no memory controller (it may be on cgroup v1): memcg OOM domains are "
                                       "not visible to oomguard."});
  }
  if (dump_tasks.value_or(1) == 0) {
    findings.push_back({"info", "vm.oom_dump_tasks=0: kernel OOM reports lack the task table."});
  }
  if (!features.pidfd_open || !features.pidfd_send_signal) {
    findings.push_back({"warning", "pidfd kills unavailable (" + features.pidfd_open_reason +
                                       features.pidfd_send_signal_reason + "): kills fall back to kill(2) by pid."});
  }
  if (!features.process_mrelease) {
    findings.push_back({"info", "process_mrelease unavailable (" + features.process_mrelease_reason +
                                    "): a victim's memory is freed only as it exits."});
  }
  if (core_pattern && core_pattern.value().starts_with('|')) {
    findings.push_back({"info", "Core dumps are piped to a program (" +
                                    core_pattern.value().substr(0, core_pattern.value().find('\n')) +
                                    "): a large process dumping core during memory pressure adds to it."});
  }
  // Fragmentation: the share of free memory in blocks of order >= 3 (PAGE_ALLOC_COSTLY_ORDER) per zone.
  Json fragmentation = Json::array();
  if (buddy) {
    for (const auto& zone : buddy.value()) {
      uint64_t free_pages = 0;
      uint64_t high_order_pages = 0;
      for (size_t order = 0; order < zone.free_blocks_by_order.size(); ++order) {
        const uint64_t pages = zone.free_blocks_by_order[order] << order;
        free_pages += pages;
        high_order_pages += order >= 3 ? pages : 0;
      }
      const double high_order_ratio = free_pages == 0 ? 0.0 : static_cast<double>(high_order_pages) / static_cast<double>(free_pages);
      fragmentation.push_back(Json{{"node", zone.node}, {"zone", zone.zone}, {"free_pages", free_pages},
                                   {"order3_plus_ratio", high_order_ratio}});
      constexpr uint64_t kMinFreePagesWorthWarning = 1024;
      if (zone.zone == "Normal" && free_pages > kMinFreePagesWorthWarning && high_order_ratio < 0.05) {
        findings.push_back({"warning", "Zone Normal (node " + std::to_string(zone.node) +
                                           ") is fragmented: under 5% of its free memory is in blocks of order >= 3; "
                                           "high-order allocations may stall or OOM while memory looks free."});
      }
    }
  }

  if (options.json) {
    Json sysctls = Json::object();
    for (const auto& [name, value] : settings.sysctls) {
      std::string key = name;
      std::replace(key.begin(), key.end(), '/', '.');
      sysctls[key] = value ? Json(*value) : Json(nullptr);
    }
    Json warnings = Json::array();
    for (const auto& finding : findings) {
      warnings.push_back(Json{{"severity", finding.severity}, {"message", finding.message}});
    }
    out << text::jsonText(Json{{"kernel", facts.kernel.release},
                {"sysctls", std::move(sysctls)},
                {"core_pattern", core_pattern ? Json(core_pattern.value().substr(0, core_pattern.value().find('\n')))
                                              : Json(nullptr)},
                {"memory", Json{{"mem_total_kb", mem.mem_total_kb},
                                {"mem_available_kb", mem.mem_available_kb ? Json(*mem.mem_available_kb) : Json(nullptr)},
                                {"swap_total_kb", mem.swap_total_kb},
                                {"swap_free_kb", mem.swap_free_kb},
                                {"commit_limit_kb", mem.commit_limit_kb ? Json(*mem.commit_limit_kb) : Json(nullptr)},
                                {"committed_as_kb", mem.committed_as_kb ? Json(*mem.committed_as_kb) : Json(nullptr)},
                                {"host_totalpages", facts.host_totalpages}}},
                {"psi", psi ? Json{{"available", true}, {"some_avg10", psi.value().some.avg10},
                                   {"full_avg10", psi.value().full ? Json(psi.value().full->avg10) : Json(nullptr)}}
                            : Json{{"available", false}}},
                {"cgroup", Json{{"v2", cgroup2},
                                {"controllers", cgroup2 ? Json(controllers.value()) : Json::array()},
                                {"memory_controller", memory_controller},
                                {"swap_accounting", swap_accounting},
                                {"memcg_domains", domains.size()}}},
                {"features", Json{{"pidfd_open", features.pidfd_open},
                                  {"pidfd_send_signal", features.pidfd_send_signal},
                                  {"process_mrelease", features.process_mrelease},
                                  {"cgroup_kill", cgroup_kill_file || facts.kernel.atLeast(5, 14)},
                                  {"memory_oom_group", oom_group_file || (memory_controller && facts.kernel.atLeast(4, 19))}}},
                {"fragmentation", std::move(fragmentation)},
                {"flow", flow},
                {"warnings", std::move(warnings)}})
        << "\n";
    return kExitOk;
  }

  out << "Kernel " << facts.kernel.release << "; " << text::humanBytes(mem.mem_total_kb * 1024) << " RAM, "
      << text::humanBytes(mem.mem_available_kb.value_or(0) * 1024) << " available, swap "
      << text::humanBytes(mem.swap_total_kb * 1024) << " (" << text::humanBytes(mem.swap_free_kb * 1024) << " free)\n\n";
  out << "What happens on OOM here:\n";
  for (const auto& line : flow) {
    out << "  - " << text::printable(line) << "\n";
  }
  out << "\nSettings:\n";
  for (const auto& [name, value] : settings.sysctls) {
    std::string key = name;
    std::replace(key.begin(), key.end(), '/', '.');
    out << "  " << text::column(key, 30) << text::printable(valueOr(value)) << "\n";
  }
  if (mem.commit_limit_kb && mem.committed_as_kb) {
    out << "  " << text::column("CommitLimit / Committed_AS", 30) << text::humanBytes(*mem.commit_limit_kb * 1024) << " / "
        << text::humanBytes(*mem.committed_as_kb * 1024) << "\n";
  }
  out << "  " << text::column("core_pattern", 30)
      << text::printable(core_pattern ? core_pattern.value().substr(0, core_pattern.value().find('\n')) : std::string("unknown"))
      << "\n";
  out << "\nCapabilities:\n";
  out << "  PSI (/proc/pressure/memory)     " << (psi ? "yes" : "no") << "\n";
  out << "  cgroup v2 at " << text::printable(cgroups.root()) << "   " << (cgroup2 ? "yes" : "no");
  if (cgroup2) {
    out << " (controllers:";
    for (const auto& controller : controllers.value()) {
      out << " " << text::printable(controller);
    }
    out << ")";
  }
  out << "\n  memory controller              " << (memory_controller ? "yes" : "no") << "\n";
  out << "  swap accounting                " << (swap_accounting ? "yes" : "no") << "\n";
  out << "  pidfd_open / pidfd_send_signal " << (features.pidfd_open ? "yes" : "no") << " / "
      << (features.pidfd_send_signal ? "yes" : "no") << "\n";
  out << "  process_mrelease               " << (features.process_mrelease ? "yes" : "no") << "\n";
  out << "  cgroup.kill                    " << (cgroup_kill_file || facts.kernel.atLeast(5, 14) ? "yes" : "no") << "\n";
  out << "  memory.oom.group               " << (oom_group_file ? "yes" : memory_controller ? "yes (kernel)" : "no")
      << "\n";
  if (buddy) {
    out << "\nFree memory in blocks of order >= 3, per zone:";
    for (const auto& zone : fragmentation) {
      char ratio[16];
      std::snprintf(ratio, sizeof ratio, "%.0f%%", zone["order3_plus_ratio"].get<double>() * 100.0);
      out << "  " << zone["zone"].get<std::string>() << " " << ratio;
    }
    out << "\n";
  }
  out << "\n" << (findings.empty() ? "No warnings.\n" : "Findings:\n");
  for (const auto& finding : findings) {
    out << "  [" << finding.severity << "] " << text::printable(finding.message) << "\n";
  }
  return kExitOk;
}

}  // namespace oomguard::guardian::cli
