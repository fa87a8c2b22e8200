// The second half of explainOomReport(): the kernel's victim against the model's choice, in words.
#include <algorithm>

#include "cgroupfs/parse.hpp"
#include "guardian/cli/oom_explanation.hpp"
#include "guardian/text/format.hpp"

namespace oomguard::guardian::cli {
namespace {

using cgroupfs::OomReport;
using detail::bounded;

std::string who(pid_t pid, std::string_view name) {
  return detail::describeTask(pid, name);
}
std::string who(const OomCandidate& candidate) {
  return who(candidate.row.pid, candidate.row.name);
}

// The smallest machine (CPUs) whose per-CPU counter drift covers `gap` pages; none beyond 65536 CPUs.
// The drift grows with the CPUs, so a binary search finds it.
std::optional<int> driftCpus(long gap) {
  int low = 1;
  int high = 65536;
  if (policies::perCpuCounterDriftPages(high) < gap) {
    return std::nullopt;
  }
  while (low < high) {
    const int middle = low + (high - low) / 2;
    if (policies::perCpuCounterDriftPages(middle) >= gap) {
      high = middle;
    } else {
      low = middle + 1;
    }
  }
  return low;
}

std::string adjWords(const std::string& whose, const OomCandidate& candidate, uint64_t totalpages) {
  const auto& terms = candidate.terms;
  const int adj = candidate.row.oom_score_adj;
  if (adj == 0) {
    return whose + " oom_score_adj is 0: it added nothing";
  }
  return whose + " oom_score_adj " + std::to_string(adj) + (adj > 0 ? " added " : " removed ") +
         std::to_string(terms.adj_points < 0 ? -terms.adj_points : terms.adj_points) + " points (" +
         std::to_string(adj) + " x (" + std::to_string(totalpages) +
         " / 1000 = " + std::to_string(terms.adj_unit) + "))";
}

void adjEffect(OomExplanation& out) {
  const uint64_t totalpages = out.domain.domain.totalpages;
  std::vector<std::string> parts;
  if (out.victim && out.ranking[*out.victim].killable()) {
    parts.push_back(adjWords("the victim's", out.ranking[*out.victim], totalpages));
  }
  if (out.runner_up) {
    parts.push_back(adjWords("the runner-up's", out.ranking[*out.runner_up], totalpages));
  }
  if (out.adj_changed_choice && out.first_without_adj) {
    const auto& other = out.ranking[*out.first_without_adj];
    parts.push_back("without any oom_score_adj the first choice would have been " + who(other) + " (" +
                    std::to_string(other.terms.points - other.terms.adj_points) + " points)");
  } else if (out.first_without_adj) {
    parts.push_back("without any oom_score_adj the first choice would have been the same");
  }
  if (!out.domain.totalpages_known && out.ranking_depends_on_totalpages) {
    parts.emplace_back(
        "totalpages is unknown, so oom_score_adj counts 0 points here and this ranking may differ from the "
        "kernel's");
  }
  for (const auto& part : parts) {
    out.adj_effect += (out.adj_effect.empty() ? "" : "; ") + part;
  }
}

void judge(const OomReport& report, OomExplanation& out) {
  const auto& killed = report.victim;
  if (report.kill_line_only) {
    out.verdict = OomVerdict::kKillLineOnly;
    out.why =
        "only the kernel's Killed process line is here: the kernel prints the rest of a report at most 10 "
        "times "
        "in 5 s (the kill line always), or the input does not hold it; without the task table the ranking "
        "cannot be rebuilt";
    return;
  }
  const std::string invoker = who(report.invoking_pid.value_or(0), report.invocation.comm);
  const std::string allocating =
      "vm.oom_kill_allocating_task is 1 on that machine: on an OOM that is not a memcg's, the kernel skips "
      "the scan and "
      "kills the task whose allocation failed (" +
      invoker + ") when it may";
  if (out.ranking.empty()) {
    out.verdict = killed.allocating_task ? OomVerdict::kAllocatingTask : OomVerdict::kNoTaskTable;
    out.why = report.task_table_seen
                  ? "the task table has no rows (cut from the input?): the ranking cannot be rebuilt"
                  : "the report has no task table: vm.oom_dump_tasks is 0 on that machine (1 makes the "
                    "kernel print "
                    "it), or it was cut from the input; the ranking cannot be rebuilt";
    if (killed.allocating_task) {
      out.why = allocating + "; " + out.why;
    }
    return;
  }
  const OomCandidate* first = out.model_first ? &out.ranking[*out.model_first] : nullptr;
  const OomCandidate* victim = out.victim ? &out.ranking[*out.victim] : nullptr;
  const OomCandidate* runner = out.runner_up ? &out.ranking[*out.runner_up] : nullptr;
  if (killed.allocating_task) {
    out.verdict = OomVerdict::kAllocatingTask;
    out.why = allocating + ". ";
    if (first != nullptr && first == victim) {
      out.why += "A scan would have chosen it too (" + std::to_string(first->terms.points) + " points)";
    } else if (first != nullptr) {
      out.why += "A scan would have chosen " + who(*first) + " with " + std::to_string(first->terms.points) +
                 " points" +
                 (victim != nullptr && victim->killable()
                      ? "; the victim had " + std::to_string(victim->terms.points)
                      : "");
    }
    return;
  }
  if (victim == nullptr) {
    out.verdict = OomVerdict::kVictimNotInTable;
    out.why = "the kernel's victim " + who(killed.pid, killed.comm) +
              " is not in the dumped table, which the kernel prints after its choice and which lists only "
              "tasks that "
              "still have memory: it was probably exiting by then";
    if (first != nullptr) {
      out.why += "; among the listed tasks the model's first choice is " + who(*first);
    }
    return;
  }
  if (first == nullptr || !victim->killable()) {
    out.verdict = OomVerdict::kMismatch;
    out.why =
        "the table shows the victim with oom_score_adj -1000, which the kernel never selects: its "
        "oom_score_adj "
        "changed between the choice and the dump";
    return;
  }
  if (first == victim) {
    out.verdict = OomVerdict::kMatch;
    if (runner == nullptr) {
      out.why = "it was the only task the kernel could kill in this domain";
    } else if (runner->terms.points == victim->terms.points) {
      out.why = "it tied with the runner-up " + who(*runner) + " at " + std::to_string(victim->terms.points) +
                " points; of equal tasks the kernel keeps the last one of its scan, and the table (in scan "
                "order) lists "
                "the victim later";
    } else {
      out.why = "it had the most points, " + std::to_string(victim->terms.points) + ", " +
                std::to_string(victim->terms.points - runner->terms.points) + " more than the runner-up " +
                who(*runner) + " (" + std::to_string(runner->terms.points) + ")";
    }
    return;
  }
  const long gap = first->terms.points - victim->terms.points;
  const int smallest_machine = report.cpu ? *report.cpu + 1 : 1;
  out.drift_cpus = driftCpus(gap);
  out.verdict = gap <= policies::perCpuCounterDriftPages(smallest_machine) ? OomVerdict::kWithinDrift
                                                                           : OomVerdict::kMismatch;
  out.why = "the model's first choice is " + who(*first) + " with " + std::to_string(first->terms.points) +
            " points, " + std::to_string(gap) + " more than the victim's " +
            std::to_string(victim->terms.points) +
            ". The kernel reads the mm counters approximately (per-CPU counters since 6.2) and prints this "
            "table after "
            "its choice, so tasks this close can swap places";
  if (out.drift_cpus) {
    out.why += ": the counters' drift reaches " + std::to_string(gap) + " pages on a machine with " +
               std::to_string(*out.drift_cpus) +
               " or more CPUs (the report shows only that it has at least " +
               std::to_string(smallest_machine) + ")";
  }
}

void killLinePoints(const OomReport& report, OomExplanation& out) {
  const auto& killed = report.victim;
  if (!out.victim || !out.ranking[*out.victim].killable() || !killed.anon_rss_kb || !killed.file_rss_kb ||
      !killed.shmem_rss_kb || !killed.pgtables_kb) {
    return;
  }
  const auto& victim = out.ranking[*out.victim];
  const uint64_t page_kb = out.page_size_bytes / 1024;
  const uint64_t rss =
      (bounded(*killed.anon_rss_kb) + bounded(*killed.file_rss_kb) + bounded(*killed.shmem_rss_kb)) / page_kb;
  const long adj = std::clamp(killed.oom_score_adj.value_or(victim.row.oom_score_adj), -1000, 1000);
  out.kill_line_points =
      static_cast<long>(rss + victim.row.swapents_pages + bounded(*killed.pgtables_kb) / page_kb) +
      adj * victim.terms.adj_unit;
}

void addNotes(const OomReport& report, OomExplanation& out) {
  const auto& summary = report.summary;
  if (summary.oom_memcg && summary.task_memcg && *summary.task_memcg != *summary.oom_memcg) {
    out.notes.push_back("the victim was in " + text::printable(*summary.task_memcg) + ", below the limited " +
                        text::printable(*summary.oom_memcg) + ": every task below that was a candidate");
  }
  if (report.kernel_release) {
    const auto version = cgroupfs::parseKernelRelease(*report.kernel_release);
    if (version && !version.value().atLeast(4, 17)) {
      out.notes.push_back(
          "kernel " + text::printable(*report.kernel_release) +
          " is older than 4.17: it also gave CAP_SYS_ADMIN tasks a 3% bonus, which this model leaves out");
    }
  }
  if (report.malformed_task_rows > 0) {
    out.notes.push_back(std::to_string(report.malformed_task_rows) +
                        " task-table row(s) could not be read and are left out");
  }
  if (out.kill_line_points && out.victim && *out.kill_line_points != out.ranking[*out.victim].terms.points) {
    out.notes.push_back("the victim's Killed process line gives " + std::to_string(*out.kill_line_points) +
                        " points, its table row " + std::to_string(out.ranking[*out.victim].terms.points) +
                        ": its counters moved between the two lines");
  }
  for (const pid_t pid : report.reaped) {
    out.notes.push_back("the oom_reaper freed the memory of pid " + std::to_string(pid));
  }
}

}  // namespace

const char* toString(OomVerdict verdict) {
  switch (verdict) {
    case OomVerdict::kMatch:
      return "match";
    case OomVerdict::kAllocatingTask:
      return "allocating_task";
    case OomVerdict::kWithinDrift:
      return "within_counter_drift";
    case OomVerdict::kMismatch:
      return "mismatch";
    case OomVerdict::kVictimNotInTable:
      return "victim_not_in_table";
    case OomVerdict::kNoTaskTable:
      return "no_task_table";
    case OomVerdict::kKillLineOnly:
      return "kill_line_only";
  }
  return "mismatch";
}

namespace detail {

void judgeOomReport(const OomReport& report, OomExplanation& out) {
  judge(report, out);
  killLinePoints(report, out);
  adjEffect(out);
  addNotes(report, out);
}

}  // namespace detail
}  // namespace oomguard::guardian::cli
