#include "guardian/cli/oom_explanation.hpp"

#include <algorithm>
#include <array>

#include "cgroupfs/parse.hpp"
#include "guardian/text/format.hpp"

namespace oomguard::guardian::cli {
namespace {

using cgroupfs::OomReport;
using cgroupfs::OomTaskRow;

// A memcg limit at or above this (1 EiB) is PAGE_COUNTER_MAX: the cgroup has no limit ("max").
constexpr uint64_t kUnlimitedKb = uint64_t{1} << 50;
constexpr long kDefaultSwappiness = 60;

using detail::bounded;

std::string kb(uint64_t value) {
  return std::to_string(value) + " kB";
}
std::string pages(uint64_t value) {
  return std::to_string(value) + " pages";
}

struct PageSize {
  uint64_t bytes = 4096;
  std::string source;
};

// The page size from the victim's Killed process line (kB) against its task-table row (pages).
PageSize pageSize(const OomReport& report, const OomAssumptions& assumptions, const OomTaskRow* victim) {
  if (assumptions.page_size_bytes) {
    return {*assumptions.page_size_bytes, "given (--page-size)"};
  }
  const auto& killed = report.victim;
  if (victim != nullptr && killed.anon_rss_kb && killed.file_rss_kb && killed.shmem_rss_kb) {
    const uint64_t rss_kb =
        bounded(*killed.anon_rss_kb) + bounded(*killed.file_rss_kb) + bounded(*killed.shmem_rss_kb);
    const uint64_t rss_pages = victim->split_rss
                                   ? victim->rss_anon_pages + victim->rss_file_pages + victim->rss_shmem_pages
                                   : victim->rss_pages;
    std::vector<uint64_t> fits;
    for (const uint64_t size : {4096U, 16384U, 65536U}) {
      if (rss_pages > 0 && rss_kb * 1024 == rss_pages * size) {
        fits.push_back(size);
      }
    }
    if (fits.size() == 1) {
      return {fits.front(), "inferred: the victim's Killed process line gives " + kb(rss_kb) +
                                " of RSS for the " + std::to_string(rss_pages) +
                                " pages of its task-table row"};
    }
  }
  return {4096, "assumed (no report prints it, and the victim's kill line and row do not tell; --page-size)"};
}

std::string constraintWords(const OomReport& report) {
  const auto& summary = report.summary;
  const std::string inferred = report.kill_line_only ? " (inferred from the kill line's prefix)" : "";
  if (summary.constraint == "CONSTRAINT_MEMCG") {
    return (summary.oom_memcg ? "the memory cgroup " + text::printable(*summary.oom_memcg)
                              : std::string("a memory cgroup (the kill line does not say which)")) +
           " reached its limit; only the tasks of it and its descendants were candidates" + inferred;
  }
  if (summary.constraint == "CONSTRAINT_CPUSET") {
    return "the allocation's cpuset confined it to memory node(s) " +
           text::printable(report.mems_allowed.value_or("?")) +
           ", and they were full; the candidates were the tasks that may use those nodes";
  }
  if (summary.constraint == "CONSTRAINT_MEMORY_POLICY") {
    return "a memory policy (mbind, set_mempolicy) confined the allocation to node(s) " +
           text::printable(report.nodemask.value_or("?")) +
           ", and they were full; the candidates were the tasks that may use those nodes";
  }
  if (summary.constraint == "CONSTRAINT_NONE") {
    return "the whole machine was out of memory (no cgroup limit, cpuset or memory policy involved); every "
           "task "
           "was a candidate" +
           inferred;
  }
  return "an unknown constraint (" + text::printable(summary.constraint) + "); read as a host OOM";
}

// Host-wide swap: the report's "Total swap = NkB", else what was given, else 0.
uint64_t swapKb(const OomReport& report, const OomAssumptions& assumptions, OomDomainFacts& facts) {
  if (report.total_swap_kb) {
    return bounded(*report.total_swap_kb);
  }
  facts.missing.push_back(assumptions.total_swap_kb
                              ? "\"Total swap\" is not in the report: " + kb(*assumptions.total_swap_kb) +
                                    " as given"
                              : "\"Total swap\" is not in the report: assumed 0 kB (--total-swap-kb)");
  return bounded(assumptions.total_swap_kb.value_or(0));
}

void memcgDomain(const OomReport& report, const OomAssumptions& assumptions, uint64_t page,
                 OomDomainFacts& facts) {
  facts.scope = "memcg";
  facts.domain.kind = policies::DomainKind::kMemcg;
  facts.domain.cgroup = report.summary.oom_memcg.value_or(report.memcg_stats_cgroup.value_or("?"));
  if (!report.memory) {
    facts.missing.emplace_back(
        "the memcg's \"memory: usage .., limit ..\" line is not in the input: totalpages unknown");
    return;
  }
  const uint64_t limit_kb = bounded(report.memory->limit_kb);
  cgroupfs::LimitBytes swap_max_bytes = uint64_t{0};
  std::string swap_max_text = "0 kB";
  if (report.swap) {
    if (report.swap->limit_kb >= kUnlimitedKb) {
      swap_max_bytes.reset();
      swap_max_text = "max";
    } else {
      swap_max_bytes = report.swap->limit_kb * 1024;
      swap_max_text = kb(report.swap->limit_kb);
    }
  } else {
    facts.missing.emplace_back("no \"swap: usage .., limit ..\" line (cgroup v1, or cut): swap not counted");
  }
  const bool swap_matters = !swap_max_bytes || *swap_max_bytes > 0;
  const long swappiness = assumptions.vm_swappiness.value_or(kDefaultSwappiness);
  const uint64_t total_swap_kb = bounded(assumptions.total_swap_kb.value_or(0));
  if (!swap_matters) {
    facts.missing.emplace_back(
        "vm.swappiness and the host's total swap are not in a memcg report; with the cgroup's swap limit at "
        "0 "
        "they do not change totalpages");
  } else {
    facts.missing.push_back(
        assumptions.vm_swappiness
            ? "vm.swappiness is not in the report: " + std::to_string(swappiness) + " as given"
            : "vm.swappiness is not in the report: assumed 60 (the default), so swap counts (--swappiness)");
    if (assumptions.total_swap_kb) {
      facts.missing.push_back("the host's total swap is not in a memcg report: " + kb(total_swap_kb) +
                              " as given");
    } else {
      std::string text = "the host's total swap is not in a memcg report: assumed 0 kB (--total-swap-kb)";
      if (report.swap && report.swap->usage_kb > 0) {
        text += "; the cgroup uses " + kb(report.swap->usage_kb) + " of swap, so the host has some";
      }
      facts.missing.push_back(std::move(text));
    }
  }
  facts.domain.totalpages =
      policies::memcgTotalPages(limit_kb * 1024, swap_max_bytes, total_swap_kb * 1024, swappiness, page);
  facts.totalpages_known = true;
  const uint64_t memory_pages = limit_kb * 1024 / page;
  facts.formula = "memory.max " + kb(limit_kb) + " (" + pages(memory_pages) + ")";
  if (swappiness == 0 && swap_matters) {
    facts.formula += " + no swap (vm.swappiness 0)";
  } else {
    facts.formula += " + min(swap.max " + swap_max_text + ", total swap " + kb(total_swap_kb) + ") (" +
                     pages(facts.domain.totalpages - std::min(facts.domain.totalpages, memory_pages)) + ")";
  }
  facts.formula += " = " + pages(facts.domain.totalpages);
}

void hostDomain(const OomReport& report, const OomAssumptions& assumptions, uint64_t page,
                OomDomainFacts& facts) {
  facts.scope = "host";
  if (!report.ram_pages || !report.reserved_pages || *report.reserved_pages > *report.ram_pages) {
    facts.missing.emplace_back(
        "the Mem-Info dump (\"N pages RAM\", \"N pages reserved\") is not in the input: totalpages unknown");
    return;
  }
  const uint64_t page_kb = page / 1024;
  const uint64_t totalram = bounded(*report.ram_pages - *report.reserved_pages);  // pages: totalram_pages()
  const uint64_t swap_kb = swapKb(report, assumptions, facts);
  cgroupfs::MemInfo meminfo;
  meminfo.mem_total_kb = totalram * page_kb;
  meminfo.swap_total_kb = swap_kb;
  facts.domain.totalpages = policies::hostTotalPages(meminfo, page);
  facts.totalpages_known = true;
  facts.formula = "pages RAM " + std::to_string(*report.ram_pages) + " - pages reserved " +
                  std::to_string(*report.reserved_pages) + " = " + pages(totalram) +
                  " (totalram) + Total swap " + kb(swap_kb) + " (" + pages(swap_kb / page_kb) +
                  ") = " + pages(facts.domain.totalpages);
}

// CONSTRAINT_CPUSET and CONSTRAINT_MEMORY_POLICY (constrained_alloc()): the present pages of the allowed
// nodes plus all swap. The Mem-Info dump prints the zones of exactly those nodes.
void nodesDomain(const OomReport& report, const OomAssumptions& assumptions, uint64_t page,
                 OomDomainFacts& facts) {
  facts.scope = report.summary.constraint == "CONSTRAINT_CPUSET" ? "cpuset" : "mempolicy";
  if (report.zones.empty()) {
    facts.missing.emplace_back(
        "the Mem-Info zone lines (\"Node N ZONE ... present:NkB\") are not in the input: totalpages unknown");
    return;
  }
  const uint64_t page_kb = page / 1024;
  uint64_t present = 0;
  std::string zones;
  for (const auto& zone : report.zones) {
    present += bounded(zone.present_kb) / page_kb;
    zones += (zones.empty() ? "" : ", ") + ("Node " + std::to_string(zone.node) + " " +
                                            text::printable(zone.zone) + " " + kb(zone.present_kb));
  }
  const uint64_t swap_kb = swapKb(report, assumptions, facts);
  facts.domain.totalpages = present + swap_kb / page_kb;
  facts.totalpages_known = true;
  facts.formula = "present pages of the allowed nodes " + pages(present) + " (" + zones + ") + Total swap " +
                  kb(swap_kb) + " (" + pages(swap_kb / page_kb) + ") = " + pages(facts.domain.totalpages);
  if (report.invocation.gfp_mask.find("MOVABLE") == std::string::npos) {
    facts.missing.emplace_back(
        "the dump shows only the zones up to the allocation's highest one; a ZONE_MOVABLE (movablecore=) of "
        "these nodes would be missing from the sum");
  }
}

cgroupfs::ProcessSnapshot snapshotOf(const OomTaskRow& row, uint64_t page_kb) {
  cgroupfs::ProcessSnapshot process;
  process.pid = row.pid;
  process.status.comm = row.name;
  process.status.has_mm = true;  // the table lists only tasks with an mm (find_lock_task_mm())
  process.status.kthread = false;
  if (row.split_rss) {
    process.status.rss_anon_kb = row.rss_anon_pages * page_kb;
    process.status.rss_file_kb = row.rss_file_pages * page_kb;
    process.status.rss_shmem_kb = row.rss_shmem_pages * page_kb;
  } else {
    process.status.rss_anon_kb = row.rss_pages * page_kb;
  }
  process.status.swap_kb = row.swapents_pages * page_kb;
  process.status.pgtables_kb = row.pgtables_bytes / 1024;  // / page_kb in the model: bytes / PAGE_SIZE
  process.oom_score_adj = row.oom_score_adj;
  return process;
}

std::optional<size_t> firstKillable(const std::vector<policies::Candidate>& ranked) {
  if (ranked.empty() || !ranked.front().killable) {
    return std::nullopt;
  }
  return ranked.front().scan_index;
}

void rank(const OomReport& report, OomExplanation& out) {
  const uint64_t page = out.page_size_bytes;
  const uint64_t totalpages = out.domain.domain.totalpages;
  std::vector<cgroupfs::ProcessSnapshot> scan;
  for (const auto& row : report.tasks) {
    scan.push_back(snapshotOf(row, page / 1024));
  }
  const auto kernel = cgroupfs::parseKernelRelease(report.kernel_release.value_or("0.0"));
  const cgroupfs::KernelVersion version = kernel ? kernel.value() : cgroupfs::KernelVersion{};
  const auto ranked = policies::rankDomain({scan, totalpages, totalpages, version, page});
  size_t killable_rank = 0;
  std::vector<size_t> index_of_scan(scan.size());
  for (const auto& candidate : ranked) {
    OomCandidate row;
    row.rank = candidate.killable ? ++killable_rank : 0;
    row.scan_index = candidate.scan_index;
    row.row = report.tasks[candidate.scan_index];
    row.terms = policies::badnessTerms(scan[candidate.scan_index], totalpages, page);
    index_of_scan[candidate.scan_index] = out.ranking.size();
    if (row.killable() && !out.model_first) {
      out.model_first = out.ranking.size();
    }
    if (row.row.pid == report.victim.pid) {
      out.victim = out.ranking.size();
    }
    out.ranking.push_back(std::move(row));
  }
  for (size_t i = 0; i < out.ranking.size(); ++i) {
    if (out.ranking[i].killable() && i != out.victim) {
      out.runner_up = i;
      break;
    }
  }
  // The same tasks with every oom_score_adj but -1000 at 0: what oom_score_adj changed.
  bool adjusted = false;
  std::optional<int> first_adj;
  for (auto& process : scan) {
    if (process.oom_score_adj != policies::kOomScoreAdjMin) {
      out.ranking_depends_on_totalpages =
          out.ranking_depends_on_totalpages || (first_adj && *first_adj != process.oom_score_adj);
      first_adj = first_adj.value_or(process.oom_score_adj);
      adjusted = adjusted || process.oom_score_adj != 0;
      process.oom_score_adj = 0;
    }
  }
  if (adjusted) {
    if (auto first = firstKillable(policies::rankDomain({scan, totalpages, totalpages, version, page}))) {
      out.first_without_adj = index_of_scan[*first];
      out.adj_changed_choice = out.first_without_adj != out.model_first;
    }
  }
}

}  // namespace

namespace detail {

std::string describeTask(pid_t pid, std::string_view name) {
  return "pid " + std::to_string(pid) + " \"" + text::printable(name) + "\"";
}

}  // namespace detail

OomExplanation explainOomReport(const OomReport& report, const OomAssumptions& assumptions) {
  OomExplanation out;
  out.report = &report;
  const OomTaskRow* victim_row = nullptr;
  for (const auto& row : report.tasks) {
    victim_row = row.pid == report.victim.pid ? &row : victim_row;
  }
  auto page = pageSize(report, assumptions, victim_row);
  out.page_size_bytes = page.bytes;
  out.page_size_source = std::move(page.source);
  out.constraint = constraintWords(report);
  const auto& constraint = report.summary.constraint;
  if (constraint == "CONSTRAINT_MEMCG") {
    memcgDomain(report, assumptions, out.page_size_bytes, out.domain);
  } else if (constraint == "CONSTRAINT_CPUSET" || constraint == "CONSTRAINT_MEMORY_POLICY") {
    nodesDomain(report, assumptions, out.page_size_bytes, out.domain);
  } else {
    hostDomain(report, assumptions, out.page_size_bytes, out.domain);
  }
  // Whatever the input holds (a million zone lines), adj * totalpages / 1000 stays far from overflow.
  out.domain.domain.totalpages = std::min(out.domain.domain.totalpages, detail::kMostKb);
  if (!report.kill_line_only) {
    rank(report, out);
  }
  detail::judgeOomReport(report, out);
  return out;
}

}  // namespace oomguard::guardian::cli
