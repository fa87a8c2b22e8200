// `oomguard explain-oom FILE|-`: kernel OOM reports replayed through the project's model and explained.
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <istream>
#include <nlohmann/json.hpp>
#include <ostream>

#include "cgroupfs/kernel_log.hpp"
#include "cgroupfs/oom_report.hpp"
#include "guardian/cli/commands.hpp"
#include "guardian/cli/oom_explanation.hpp"
#include "guardian/text/format.hpp"

namespace oomguard::guardian::cli {
namespace {

using Json = nlohmann::ordered_json;
using cgroupfs::OomReport;

// A kernel log of more than this is not one somebody means to replay whole.
constexpr size_t kMostInputBytes = size_t{256} << 20;
constexpr size_t kShownRows = 10;
constexpr size_t kLabelWidth = 14;

template <class T>
Json orNull(const std::optional<T>& value) {
  return value ? Json(*value) : Json(nullptr);
}

std::string who(pid_t pid, std::string_view name) {
  return detail::describeTask(pid, name);
}

// --- JSON ----------------------------------------------------------------------------------------

Json candidateJson(const OomCandidate& candidate, const OomReport& report) {
  const auto& row = candidate.row;
  const auto& terms = candidate.terms;
  return Json{{"rank", candidate.killable() ? Json(candidate.rank) : Json(nullptr)},
              {"pid", row.pid},
              {"name", row.name},
              {"killable", candidate.killable()},
              {"points", candidate.killable() ? Json(terms.points) : Json(nullptr)},
              {"rss_pages", terms.rss_pages},
              {"rss_anon_pages", row.split_rss ? Json(row.rss_anon_pages) : Json(nullptr)},
              {"rss_file_pages", row.split_rss ? Json(row.rss_file_pages) : Json(nullptr)},
              {"rss_shmem_pages", row.split_rss ? Json(row.rss_shmem_pages) : Json(nullptr)},
              {"swap_pages", terms.swap_pages},
              {"pgtables_pages", terms.pgtables_pages},
              {"oom_score_adj", row.oom_score_adj},
              {"adj_points", terms.adj_points},
              {"scan_index", candidate.scan_index},
              {"kernel_victim", row.pid == report.victim.pid}};
}

Json taskRef(const OomExplanation& explanation, const std::optional<size_t>& index) {
  if (!index) {
    return nullptr;
  }
  const auto& candidate = explanation.ranking[*index];
  return Json{{"pid", candidate.row.pid},
              {"name", candidate.row.name},
              {"points", candidate.killable() ? Json(candidate.terms.points) : Json(nullptr)},
              {"oom_score_adj", candidate.row.oom_score_adj},
              {"adj_points", candidate.terms.adj_points}};
}

Json reportJson(size_t number, const OomExplanation& explanation) {
  const auto& report = *explanation.report;
  const auto& killed = report.victim;
  const auto& domain = explanation.domain;
  Json candidates = Json::array();
  for (const auto& candidate : explanation.ranking) {
    candidates.push_back(candidateJson(candidate, report));
  }
  Json group = nullptr;
  if (report.group_cgroup) {
    Json members = Json::array();
    for (const auto& member : report.group_killed) {
      members.push_back(
          Json{{"pid", member.pid}, {"name", member.comm}, {"oom_score_adj", orNull(member.oom_score_adj)}});
    }
    group = Json{{"cgroup", *report.group_cgroup}, {"killed", std::move(members)}};
  }
  const auto* victim = explanation.victim ? &explanation.ranking[*explanation.victim] : nullptr;
  return Json{
      {"report", number},
      {"first_line", report.first_line},
      {"last_line", report.last_line},
      {"kmsg_sequence", orNull(report.first_sequence)},
      {"timestamp_us", orNull(report.started_us)},
      {"kill_line_only", report.kill_line_only},
      {"kernel", orNull(report.kernel_release)},
      {"invocation", report.invocation_seen ? Json{{"comm", report.invocation.comm},
                                                   {"pid", orNull(report.invoking_pid)},
                                                   {"cpu", orNull(report.cpu)},
                                                   {"gfp_mask", report.invocation.gfp_mask},
                                                   {"order", orNull(report.invocation.order)},
                                                   {"oom_score_adj", orNull(report.invocation.oom_score_adj)}}
                                            : Json(nullptr)},
      {"constraint", report.summary.constraint},
      {"constraint_words", explanation.constraint},
      {"domain",
       Json{{"kind", policies::toString(domain.domain.kind)},
            {"scope", domain.scope},
            {"cgroup", domain.domain.cgroup},
            {"task_memcg", orNull(report.summary.task_memcg)},
            {"totalpages", domain.totalpages_known ? Json(domain.domain.totalpages) : Json(nullptr)},
            {"formula", domain.formula},
            {"missing", domain.missing}}},
      {"page_size_bytes", explanation.page_size_bytes},
      {"page_size_source", explanation.page_size_source},
      {"task_table", report.task_table_seen},
      {"candidates", std::move(candidates)},
      {"victim",
       Json{{"pid", killed.pid},
            {"name", killed.comm},
            {"reason", killed.reason},
            {"allocating_task", killed.allocating_task},
            {"anon_rss_kb", orNull(killed.anon_rss_kb)},
            {"file_rss_kb", orNull(killed.file_rss_kb)},
            {"shmem_rss_kb", orNull(killed.shmem_rss_kb)},
            {"pgtables_kb", orNull(killed.pgtables_kb)},
            {"oom_score_adj", orNull(killed.oom_score_adj)},
            {"rank", victim != nullptr && victim->killable() ? Json(victim->rank) : Json(nullptr)},
            {"points", victim != nullptr && victim->killable() ? Json(victim->terms.points) : Json(nullptr)},
            {"kill_line_points", orNull(explanation.kill_line_points)}}},
      {"model_choice", taskRef(explanation, explanation.model_first)},
      {"verdict", toString(explanation.verdict)},
      {"match", explanation.verdict == OomVerdict::kMatch},
      {"why", explanation.why},
      {"drift_cpus", orNull(explanation.drift_cpus)},
      {"runner_up", taskRef(explanation, explanation.runner_up)},
      {"oom_score_adj_effect", explanation.adj_effect},
      {"first_without_adj", taskRef(explanation, explanation.first_without_adj)},
      {"group_kill", std::move(group)},
      {"reaped", report.reaped},
      {"notes", explanation.notes}};
}

// --- text ----------------------------------------------------------------------------------------

void line(std::ostream& out, std::string_view label, const std::string& words) {
  out << "  " << text::column(label, kLabelWidth) << words << "\n";
}

std::string kbOrUnknown(const std::optional<uint64_t>& kb) {
  return kb ? std::to_string(*kb) + " kB" : "?";
}

void printRanking(const OomExplanation& explanation, std::ostream& out) {
  const auto& domain = explanation.domain;
  line(out, "Ranking",
       "rebuilt from the task table (" + std::to_string(explanation.ranking.size()) +
           (explanation.ranking.size() == 1 ? " task" : " tasks") + "): points = rss + swapents + " +
           "pgtables_bytes / " + std::to_string(explanation.page_size_bytes) + " + oom_score_adj x (" +
           (domain.totalpages_known ? std::to_string(domain.domain.totalpages) : std::string("?")) +
           " / 1000)");
  out << "    " << text::rightColumn("RANK", 4) << text::rightColumn("PID", 8) << "  "
      << text::column("NAME", 16) << text::rightColumn("POINTS", 10) << text::rightColumn("RSS", 9)
      << text::rightColumn("SWAP", 8) << text::rightColumn("PTE", 7) << text::rightColumn("ADJ", 6)
      << text::rightColumn("ADJ_POINTS", 12) << "\n";
  size_t shown = 0;
  for (size_t i = 0; i < explanation.ranking.size(); ++i) {
    const bool marked = i == explanation.victim || i == explanation.model_first;
    if (shown >= kShownRows && !marked) {
      continue;
    }
    ++shown;
    const auto& candidate = explanation.ranking[i];
    const auto& terms = candidate.terms;
    std::string mark;
    if (i == explanation.victim) {
      mark = "  <- killed";
    } else if (i == explanation.model_first) {
      mark = "  <- the model's choice";
    }
    out << "    " << text::rightColumn(candidate.killable() ? std::to_string(candidate.rank) : "-", 4)
        << text::rightColumn(std::to_string(candidate.row.pid), 8) << "  "
        << text::column(candidate.row.name, 16)
        << text::rightColumn(candidate.killable() ? std::to_string(terms.points) : "never", 10)
        << text::rightColumn(std::to_string(terms.rss_pages), 9)
        << text::rightColumn(std::to_string(terms.swap_pages), 8)
        << text::rightColumn(std::to_string(terms.pgtables_pages), 7)
        << text::rightColumn(std::to_string(candidate.row.oom_score_adj), 6)
        << text::rightColumn(std::to_string(terms.adj_points), 12) << mark << "\n";
  }
  if (shown < explanation.ranking.size()) {
    out << "    ... " << explanation.ranking.size() - shown << " more (--json lists every task)\n";
  }
}

void printReport(size_t number, const OomExplanation& explanation, std::ostream& out) {
  const auto& report = *explanation.report;
  const auto& killed = report.victim;
  out << "\nReport " << number << ": line" << (report.first_line == report.last_line ? " " : "s ")
      << report.first_line;
  if (report.last_line != report.first_line) {
    out << "-" << report.last_line;
  }
  if (report.first_sequence) {
    out << ", kmsg seq " << *report.first_sequence;
  }
  if (report.started_us) {
    char seconds[48];
    std::snprintf(seconds, sizeof seconds, "%llu.%06llu",
                  static_cast<unsigned long long>(*report.started_us / 1000000),
                  static_cast<unsigned long long>(*report.started_us % 1000000));
    out << ", at " << seconds << " s";
  }
  out << (report.kill_line_only ? ": the kill line alone\n" : "\n");
  if (report.invocation_seen) {
    const int order = report.invocation.order.value_or(0);
    line(out, "Invoked by",
         (report.invoking_pid ? who(*report.invoking_pid, report.invocation.comm)
                              : "\"" + text::printable(report.invocation.comm) + "\"") +
             ": an order-" + std::to_string(order) + " allocation (" +
             (order == 0                ? std::string("1 page")
              : order > 0 && order < 20 ? std::to_string(1UL << static_cast<unsigned>(order)) + " pages"
                                        : std::string("? pages")) +
             "), gfp_mask=" + text::printable(report.invocation.gfp_mask) + ", its oom_score_adj " +
             (report.invocation.oom_score_adj ? std::to_string(*report.invocation.oom_score_adj)
                                              : std::string("?")) +
             (report.kernel_release ? "; kernel " + text::printable(*report.kernel_release) : std::string()));
  }
  line(out, "Constraint", text::printable(report.summary.constraint) + ": " + explanation.constraint);
  const auto& domain = explanation.domain;
  if (!report.kill_line_only) {
    line(
        out, "Domain",
        (domain.domain.kind == policies::DomainKind::kMemcg ? "memcg " + text::printable(domain.domain.cgroup)
         : domain.scope == "host"                           ? std::string("the host")
                                                            : domain.scope + " nodes") +
            ", totalpages " +
            (domain.totalpages_known
                 ? std::to_string(domain.domain.totalpages) + " (" +
                       text::humanBytes(domain.domain.totalpages * explanation.page_size_bytes) + ")"
                 : std::string("unknown")));
    if (!domain.formula.empty()) {
      line(out, "", "= " + domain.formula);
    }
    for (const auto& missing : domain.missing) {
      line(out, "", missing);
    }
    line(out, "Page size",
         std::to_string(explanation.page_size_bytes) + " bytes, " + explanation.page_size_source);
  }
  if (!explanation.ranking.empty()) {
    printRanking(explanation, out);
  }
  line(out, "Victim",
       who(killed.pid, killed.comm) + " (\"" + text::printable(killed.reason) + "\"): anon-rss " +
           kbOrUnknown(killed.anon_rss_kb) + ", file-rss " + kbOrUnknown(killed.file_rss_kb) +
           ", shmem-rss " + kbOrUnknown(killed.shmem_rss_kb) + ", pgtables " +
           kbOrUnknown(killed.pgtables_kb) + ", oom_score_adj " +
           (killed.oom_score_adj ? std::to_string(*killed.oom_score_adj) : std::string("?")));
  if (explanation.model_first) {
    const auto& first = explanation.ranking[*explanation.model_first];
    line(out, "Model",
         "first choice " + detail::describeTask(first.row.pid, first.row.name) + " with " +
             std::to_string(first.terms.points) + " points: " + toString(explanation.verdict));
  } else {
    line(out, "Model", std::string("no ranking to compare with (") + toString(explanation.verdict) + ")");
  }
  line(out, "Why", explanation.why);
  if (explanation.kill_line_points && explanation.victim) {
    const long table = explanation.ranking[*explanation.victim].terms.points;
    line(out, "Kill line",
         std::to_string(*explanation.kill_line_points) + " points from the victim's Killed process line " +
             (*explanation.kill_line_points == table ? "(as in the table)"
                                                     : "(the table: " + std::to_string(table) + ")"));
  }
  if (!explanation.ranking.empty()) {
    if (explanation.runner_up) {
      const auto& next = explanation.ranking[*explanation.runner_up];
      line(out, "Next",
           detail::describeTask(next.row.pid, next.row.name) + " with " + std::to_string(next.terms.points) +
               " points");
    } else {
      line(out, "Next", "none: no other task could be killed");
    }
  }
  if (!explanation.adj_effect.empty()) {
    line(out, "oom_score_adj", explanation.adj_effect);
  }
  if (report.group_cgroup) {
    std::string members;
    for (const auto& member : report.group_killed) {
      members += (members.empty() ? "" : ", ") + who(member.pid, member.comm) +
                 (member.pid == killed.pid ? " (the victim, again)" : "");
    }
    line(out, "Group kill",
         "memory.oom.group is set on " + text::printable(*report.group_cgroup) +
             ": the kernel killed every task in it: " +
             (members.empty() ? "(no kill lines follow)" : members));
  } else if (!report.kill_line_only) {
    line(out, "Group kill", "none (no \"Tasks in ... memory.oom.group set\" line)");
  }
  for (const auto& note : explanation.notes) {
    line(out, "Note", note);
  }
}

std::string formsText(const cgroupfs::OomReportScan& scan) {
  std::string words;
  const auto add = [&](size_t count, const char* form) {
    if (count > 0) {
      words += (words.empty() ? "" : ", ") + std::to_string(count) + " " + form;
    }
  };
  add(scan.kmsg_messages, "as /dev/kmsg records");
  add(scan.dmesg_messages, "as dmesg lines");
  add(scan.journal_messages, "as journalctl lines");
  add(scan.bare_messages, "as bare messages");
  return words;
}

// A kill whose report the kernel rate-limited away (10 reports in 5 s): the last whole report before it,
// when it is of the same constraint and within that window, tells which domain it probably was.
void relateKillLinesOnly(std::vector<OomExplanation>& explanations) {
  constexpr uint64_t kRateLimitWindowUs = 5000000;
  std::optional<size_t> last_whole;
  for (size_t i = 0; i < explanations.size(); ++i) {
    auto& explanation = explanations[i];
    const auto& report = *explanation.report;
    if (!report.kill_line_only) {
      last_whole = i;
      continue;
    }
    if (!last_whole) {
      continue;
    }
    const auto& whole = *explanations[*last_whole].report;
    const auto& domain = explanations[*last_whole].domain;
    if (!report.started_us || !whole.started_us || *report.started_us < *whole.started_us ||
        *report.started_us - *whole.started_us > kRateLimitWindowUs ||
        whole.summary.constraint != report.summary.constraint) {
      continue;
    }
    char seconds[32];
    std::snprintf(seconds, sizeof seconds, "%.3f",
                  static_cast<double>(*report.started_us - *whole.started_us) / 1e6);
    explanation.notes.push_back(
        "report " + std::to_string(*last_whole + 1) + ", " + seconds +
        " s before, is whole and of the same constraint, in " +
        (domain.domain.kind == policies::DomainKind::kMemcg ? "memcg " + text::printable(domain.domain.cgroup)
                                                            : domain.scope) +
        ": within the kernel's rate-limit window, this kill was likely in the same domain");
  }
}

bool readInput(const ExplainOomOptions& options, std::istream& in, std::string& content, std::ostream& err) {
  std::ifstream file;
  std::istream* source = &in;
  if (options.input != "-") {
    file.open(options.input, std::ios::binary);
    if (!file) {
      err << "oomguard: cannot read " << text::printable(options.input) << ": " << std::strerror(errno)
          << "\n";
      return false;
    }
    source = &file;
  }
  char buffer[65536];
  while (*source) {
    source->read(buffer, sizeof buffer);
    content.append(buffer, static_cast<size_t>(source->gcount()));
    if (content.size() > kMostInputBytes) {
      err << "oomguard: the input is larger than " << (kMostInputBytes >> 20)
          << " MiB; pass the part of the log around the OOM\n";
      return false;
    }
  }
  if (source->bad()) {
    err << "oomguard: cannot read "
        << text::printable(options.input == "-" ? "standard input" : options.input) << "\n";
    return false;
  }
  return true;
}

}  // namespace

int runExplainOom(const ExplainOomOptions& options, std::istream& in, std::ostream& out, std::ostream& err) {
  std::string content;
  if (!readInput(options, in, content, err)) {
    return kExitFailure;
  }
  const auto messages = cgroupfs::splitKernelLog(content);
  const auto scan = cgroupfs::scanOomReports(messages);
  const std::string name = options.input == "-" ? "standard input" : text::printable(options.input);
  if (scan.reports.empty() && scan.incomplete.empty()) {
    err << "oomguard: no kernel OOM report in " << name << " (" << scan.messages << " message"
        << (scan.messages == 1 ? "" : "s")
        << ", no \"invoked oom-killer\", \"oom-kill:\" or \"Killed process\" line)\n";
    return kExitFailure;
  }
  const OomAssumptions assumptions{options.vm_swappiness, options.total_swap_kb, options.page_size_bytes};
  std::vector<OomExplanation> explanations;
  explanations.reserve(scan.reports.size());
  for (const auto& report : scan.reports) {
    explanations.push_back(explainOomReport(report, assumptions));
  }
  relateKillLinesOnly(explanations);
  if (options.json) {
    Json reports = Json::array();
    for (size_t i = 0; i < explanations.size(); ++i) {
      reports.push_back(reportJson(i + 1, explanations[i]));
    }
    Json incomplete = Json::array();
    for (const auto& cut : scan.incomplete) {
      incomplete.push_back(Json{{"first_line", cut.first_line},
                                {"last_line", cut.last_line},
                                {"invoking_comm", cut.invoking_comm},
                                {"reason", cut.reason}});
    }
    out << text::jsonText(Json{{"input", Json{{"name", options.input},
                                              {"messages", scan.messages},
                                              {"kmsg", scan.kmsg_messages},
                                              {"dmesg", scan.dmesg_messages},
                                              {"journal", scan.journal_messages},
                                              {"bare", scan.bare_messages}}},
                               {"reports", std::move(reports)},
                               {"incomplete", std::move(incomplete)}})
        << "\n";
  } else if (!scan.reports.empty()) {
    out << scan.reports.size() << " OOM kill report" << (scan.reports.size() == 1 ? "" : "s") << " in "
        << name << " (" << scan.messages << " messages: " << formsText(scan) << ")\n";
    for (size_t i = 0; i < explanations.size(); ++i) {
      printReport(i + 1, explanations[i], out);
    }
  }
  for (const auto& cut : scan.incomplete) {
    err << "oomguard: " << name << ", lines " << cut.first_line << "-" << cut.last_line << ": a report"
        << (cut.invoking_comm.empty() ? "" : " invoked by \"" + text::printable(cut.invoking_comm) + "\"")
        << " is incomplete: " << cut.reason << "\n";
  }
  return scan.incomplete.empty() ? kExitOk : kExitFailure;
}

}  // namespace oomguard::guardian::cli
