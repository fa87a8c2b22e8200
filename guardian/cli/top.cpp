// `oomguard top` and `oomguard explain`.
#include <algorithm>
#include <map>
#include <nlohmann/json.hpp>
#include <ostream>

#include "cgroupfs/paths.hpp"
#include "guardian/cli/commands.hpp"
#include "guardian/cli/explain_rules.hpp"
#include "guardian/text/format.hpp"
#include "policies/badness.hpp"

namespace oomguard::guardian::cli {
namespace {

using Json = nlohmann::ordered_json;

uint64_t rssKb(const cgroupfs::ProcessSnapshot& process) {
  return process.status.rss_anon_kb + process.status.rss_file_kb + process.status.rss_shmem_kb;
}

Json domainJson(const policies::OomDomain& domain) {
  return Json{{"kind", policies::toString(domain.kind)}, {"cgroup", domain.cgroup}, {"totalpages", domain.totalpages}};
}

Json nullable(const std::optional<std::string>& text) { return text ? Json(*text) : Json(nullptr); }

void reportSkipped(const cgroupfs::ReadCounters& counters, std::ostream& err) {
  if (counters.malformed + counters.failed > 0) {
    err << "oomguard: skipped " << counters.malformed << " malformed and " << counters.failed
        << " unreadable entries";
    if (!counters.errors.empty()) {
      err << "; first: " << text::printable(counters.errors.front().describe());
    }
    err << "\n";
  }
}

cgroupfs::Result<io::DomainRanking> rankFor(io::Node& node, const io::NodeFacts& facts, const std::string& domain,
                                        bool with_cgroups, bool with_oom_scores) {
  if (domain == "host" || domain == "/") {
    return node.rankHost(facts, with_cgroups, with_oom_scores);
  }
  if (!domain.starts_with('/')) {
    return cgroupfs::parseError("--domain takes \"host\" or a cgroup path starting with /, got \"" + domain + "\"");
  }
  std::string path = domain;
  while (path.size() > 1 && path.ends_with('/')) {
    path.pop_back();
  }
  if (!cgroupfs::isCanonicalCgroupPath(path)) {
    return cgroupfs::parseError("--domain: \"" + domain +
                                "\" is not a cgroup path (no empty, \".\" or \"..\" segments: it must stay below the cgroup root)");
  }
  return node.rankMemcg(facts, path);
}

struct Row {
  size_t rank = 0;
  const policies::Candidate* candidate = nullptr;
  std::optional<std::string> group_kill_cgroup;
  long oom_score = 0;  // what /proc/<pid>/oom_score shows where it was read, else the model's value
};

void printDomainHeader(const policies::OomDomain& domain, const io::NodeFacts& facts, std::ostream& out) {
  const uint64_t total_bytes = domain.totalpages * facts.page_size_bytes;
  out << "OOM domain: " << (domain.kind == policies::DomainKind::kHost ? "host" : "memcg " + text::printable(domain.cgroup))
      << "   totalpages " << domain.totalpages << " (" << text::humanBytes(total_bytes) << ")   kernel "
      << facts.kernel.release << "\n";
}

int topByProcess(io::Node& node, const io::NodeFacts& facts, io::DomainRanking& ranking, const TopOptions& options,
                 std::ostream& out) {
  std::vector<Row> rows;
  const size_t shown = options.limit == 0 ? ranking.candidates.size() : std::min(options.limit, ranking.candidates.size());
  if (options.limit == 0) {
    // Every process: their cgroups from one walk of the tree, not one /proc/<pid>/cgroup each.
    node.indexCgroupsFromTree(ranking.counters);
  }
  for (size_t i = 0; i < shown; ++i) {
    const auto& candidate = ranking.candidates[i];
    if (options.limit != 0 && !candidate.killable) {
      break;  // a limited listing shows only what the kernel could pick
    }
    auto& process = ranking.processes[candidate.scan_index];
    Row row{i + 1, &candidate, std::nullopt, candidate.oom_score};
    // The kernel computes oom_score from approximate per-CPU counters (see perCpuCounterDriftPages), so
    // its own number is shown where it is read; oom_score_computed keeps the model's.
    if (process.kernel_oom_score) {
      row.oom_score = *process.kernel_oom_score;
    } else if (options.limit != 0 || options.kernel_scores) {
      if (auto kernel_score = node.procfs().readOomScore(process.pid)) {
        row.oom_score = kernel_score.value();
      }
    }
    node.ensureCgroup(process);
    if (candidate.killable) {
      row.group_kill_cgroup = node.groupKillCgroup(process, ranking.domain);
    }
    rows.push_back(std::move(row));
  }

  if (options.json) {
    // Written row by row, as text::jsonText would write the whole document (tests/unit/ranking_test
    // holds the two to the same bytes): `top --all` has a row per process, and building thousands of
    // JSON objects cost more than the reads behind them (bench/host_ranking).
    std::string text = "{\"domain\":" + text::jsonText(domainJson(ranking.domain)) + ",\"candidates\":[";
    auto number = [&text](const char* key, auto value) {
      text += key;
      text += std::to_string(value);
    };
    for (size_t i = 0; i < rows.size(); ++i) {
      const auto& row = rows[i];
      const auto& candidate = *row.candidate;
      const auto& process = ranking.processOf(candidate);
      text += i == 0 ? "{" : ",{";
      number("\"rank\":", row.rank);
      number(",\"pid\":", process.pid);
      text += ",\"comm\":" + text::jsonString(process.status.comm);
      text += ",\"cgroup\":" + (process.cgroup ? text::jsonString(*process.cgroup) : std::string("null"));
      number(",\"points\":", candidate.killable ? candidate.points : 0);
      number(",\"oom_score\":", row.oom_score);
      number(",\"oom_score_computed\":", candidate.oom_score);
      number(",\"oom_score_adj\":", process.oom_score_adj);
      number(",\"rss_kb\":", rssKb(process));
      number(",\"swap_kb\":", process.status.swap_kb);
      number(",\"pgtables_kb\":", process.status.pgtables_kb);
      text += candidate.killable ? ",\"killable\":true" : ",\"killable\":false";
      text += ",\"group_kill_cgroup\":" +
              (row.group_kill_cgroup ? text::jsonString(*row.group_kill_cgroup) : std::string("null")) + "}";
    }
    text += "]}\n";
    out << text;
    return kExitOk;
  }

  printDomainHeader(ranking.domain, facts, out);
  out << text::rightColumn("RANK", 4) << text::rightColumn("PID", 8) << "  " << text::column("COMM", 16) << " "
      << text::column("CGROUP", 40) << text::rightColumn("POINTS", 10) << text::rightColumn("SCORE", 6) << text::rightColumn("ADJ", 6)
      << text::rightColumn("RSS_MiB", 9) << text::rightColumn("SWAP_MiB", 9) << text::rightColumn("PTE_MiB", 8) << "  GROUP_KILL\n";
  for (const auto& row : rows) {
    const auto& candidate = *row.candidate;
    const auto& process = ranking.processOf(candidate);
    out << text::rightColumn(std::to_string(row.rank), 4) << text::rightColumn(std::to_string(process.pid), 8) << "  "
        << text::column(process.status.comm, 16) << " " << text::column(process.cgroup.value_or("?"), 40)
        << text::rightColumn(candidate.killable ? std::to_string(candidate.points) : "never", 10)
        << text::rightColumn(std::to_string(row.oom_score), 6)
        << text::rightColumn(std::to_string(process.oom_score_adj), 6) << text::rightColumn(text::mibFromKb(rssKb(process)), 9)
        << text::rightColumn(text::mibFromKb(process.status.swap_kb), 9) << text::rightColumn(text::mibFromKb(process.status.pgtables_kb), 8)
        << "  " << text::printable(row.group_kill_cgroup.value_or("-")) << "\n";
  }
  if (rows.empty()) {
    out << "(no killable process in this domain)\n";
  }
  return kExitOk;
}

// The cgroup view: candidates grouped by what a kill of their best task would take (the oom.group
// cgroup, or the task's own cgroup), ranked by that best task's points, as the kernel would reach them.
int topByCgroup(io::Node& node, const io::NodeFacts& facts, io::DomainRanking& ranking, const TopOptions& options,
                std::ostream& out) {
  struct Unit {
    std::string cgroup;
    bool group_kill = false;
    long points = 0;
    pid_t top_pid = 0;
    std::string top_comm;
    size_t tasks = 0;
    uint64_t rss_kb = 0;
    uint64_t swap_kb = 0;
    size_t first_rank = 0;
  };
  std::vector<Unit> units;
  std::map<std::string, size_t> index;
  for (size_t i = 0; i < ranking.candidates.size(); ++i) {
    const auto& candidate = ranking.candidates[i];
    if (!candidate.killable) {
      continue;
    }
    auto& process = ranking.processes[candidate.scan_index];
    auto group = node.groupKillCgroup(process, ranking.domain);
    const std::string key = group ? *group : process.cgroup.value_or("?");
    auto [where, inserted] = index.emplace(key, units.size());
    if (inserted) {
      units.push_back(Unit{key, group.has_value(), candidate.points, process.pid, process.status.comm, 0, 0, 0, i});
    }
    auto& unit = units[where->second];
    ++unit.tasks;
    unit.rss_kb += rssKb(process);
    unit.swap_kb += process.status.swap_kb;
  }
  const size_t shown = options.limit == 0 ? units.size() : std::min(options.limit, units.size());
  if (options.json) {
    Json rows = Json::array();
    for (size_t i = 0; i < shown; ++i) {
      const auto& unit = units[i];
      rows.push_back(Json{{"rank", i + 1},
                          {"cgroup", unit.cgroup},
                          {"group_kill", unit.group_kill},
                          {"points", unit.points},
                          {"top_pid", unit.top_pid},
                          {"top_comm", unit.top_comm},
                          {"tasks", unit.tasks},
                          {"rss_kb", unit.rss_kb},
                          {"swap_kb", unit.swap_kb}});
    }
    out << text::jsonText(Json{{"domain", domainJson(ranking.domain)}, {"cgroups", std::move(rows)}}) << "\n";
    return kExitOk;
  }
  printDomainHeader(ranking.domain, facts, out);
  out << text::rightColumn("RANK", 4) << "  " << text::column("CGROUP (kill unit)", 48) << text::rightColumn("POINTS", 10)
      << text::rightColumn("TOP_PID", 8) << "  " << text::column("TOP_COMM", 16) << text::rightColumn("TASKS", 6)
      << text::rightColumn("RSS_MiB", 10) << text::rightColumn("SWAP_MiB", 9) << "  GROUP\n";
  for (size_t i = 0; i < shown; ++i) {
    const auto& unit = units[i];
    out << text::rightColumn(std::to_string(i + 1), 4) << "  " << text::column(unit.cgroup, 48)
        << text::rightColumn(std::to_string(unit.points), 10) << text::rightColumn(std::to_string(unit.top_pid), 8) << "  "
        << text::column(unit.top_comm, 16) << text::rightColumn(std::to_string(unit.tasks), 6)
        << text::rightColumn(text::mibFromKb(unit.rss_kb), 10) << text::rightColumn(text::mibFromKb(unit.swap_kb), 9) << "  "
        << (unit.group_kill ? "oom.group" : "-") << "\n";
  }
  return kExitOk;
}

}  // namespace

int runTop(io::Node& node, const TopOptions& options, std::ostream& out, std::ostream& err) {
  auto facts = node.readFacts();
  if (!facts) {
    err << "oomguard: " << text::printable(facts.error().describe()) << "\n";
    return kExitFailure;
  }
  // Listing every process with --kernel-scores: the kernel's oom_score read with each.
  auto ranking = rankFor(node, facts.value(), options.domain, options.by_cgroup,
                         options.limit == 0 && !options.by_cgroup && options.kernel_scores);
  if (!ranking) {
    const auto& error = ranking.error();
    err << "oomguard: " << text::printable(error.path.empty() ? error.message : error.describe()) << "\n";
    return error.path.empty() ? kExitUsage : kExitFailure;
  }
  reportSkipped(ranking.value().counters, err);
  return options.by_cgroup ? topByCgroup(node, facts.value(), ranking.value(), options, out)
                           : topByProcess(node, facts.value(), ranking.value(), options, out);
}

int runExplain(io::Node& node, const ExplainOptions& options, std::ostream& out, std::ostream& err) {
  std::optional<config::Config> config;
  if (options.config_path) {
    try {
      config = config::loadConfigFile(*options.config_path);
    } catch (const config::ConfigError& error) {
      err << "oomguard explain: " << text::printable(error.what()) << "\n";
      return kExitUsage;
    }
  }
  auto facts_result = node.readFacts();
  if (!facts_result) {
    err << "oomguard: " << text::printable(facts_result.error().describe()) << "\n";
    return kExitFailure;
  }
  const auto& facts = facts_result.value();
  auto target = node.procfs().readProcess(options.pid, false);
  if (target) {
    if (auto place = node.readCgroupPath(options.pid)) {
      target.value().cgroup = std::move(place).value();  // a path of the tree, wherever oomguard runs
    }
  }
  if (!target) {
    err << "oomguard: no process " << options.pid << ": " << text::printable(target.error().describe()) << "\n";
    return kExitFailure;
  }
  const auto& process = target.value();
  const auto kernel_oom_score = node.procfs().readOomScore(options.pid);

  // The domains this process belongs to: the host, then every ancestor (outermost first) with a limit.
  std::vector<std::string> limited;
  cgroupfs::ReadCounters counters;
  for (std::string cgroup = process.cgroup.value_or("/"); !cgroup.empty() && cgroup != "/";
       cgroup = cgroupfs::parentCgroup(cgroup)) {
    auto snapshot = node.cgroupfs().readCgroup(cgroup);
    if (snapshot && snapshot.value().memory_max_bytes) {
      limited.insert(limited.begin(), cgroup);
    }
  }

  struct DomainReport {
    io::DomainRanking ranking;
    size_t rank = 0;  // 0 = not killable here
    policies::BadnessTerms terms;
    std::optional<std::string> group;
    std::vector<pid_t> group_pids;
  };
  std::vector<DomainReport> reports;
  auto add_report = [&](io::DomainRanking ranking) {
    DomainReport report;
    report.terms = policies::badnessTerms(process, ranking.domain.totalpages, facts.page_size_bytes);
    size_t killable_rank = 0;
    for (const auto& candidate : ranking.candidates) {
      if (candidate.killable) {
        ++killable_rank;
      }
      if (candidate.pid == options.pid) {
        report.rank = candidate.killable ? killable_rank : 0;
        break;
      }
    }
    auto copy = process;
    report.group = node.groupKillCgroup(copy, ranking.domain);
    if (report.group) {
      for (auto& member : ranking.processes) {
        node.ensureCgroup(member);
        if (member.cgroup && cgroupfs::isSameOrBelow(*member.cgroup, *report.group) && member.pid != 1 &&
            member.oom_score_adj != policies::kOomScoreAdjMin) {
          report.group_pids.push_back(member.pid);
        }
      }
    }
    report.ranking = std::move(ranking);
    reports.push_back(std::move(report));
  };
  add_report(node.rankHost(facts, false));
  for (const auto& cgroup : limited) {
    if (auto ranking = node.rankMemcg(facts, cgroup)) {
      add_report(std::move(ranking).value());
    }
  }

  const long computed_score = reports.front().ranking.candidates.empty()
                                  ? 0
                                  : policies::procOomScore(reports.front().terms.points, facts.host_totalpages, facts.kernel);
  if (options.json) {
    Json domains = Json::array();
    for (const auto& report : reports) {
      const auto& terms = report.terms;
      size_t killable = 0;
      for (const auto& candidate : report.ranking.candidates) {
        killable += candidate.killable ? 1 : 0;
      }
      domains.push_back(Json{
          {"domain", domainJson(report.ranking.domain)},
          {"terms", Json{{"rss_pages", terms.rss_pages},
                         {"swap_pages", terms.swap_pages},
                         {"pgtables_pages", terms.pgtables_pages},
                         {"adj_unit_pages", terms.adj_unit},
                         {"adj_points", terms.adj_points}}},
          {"points", terms.unkillable == policies::UnkillableReason::kNone ? Json(terms.points) : Json(nullptr)},
          {"rank", report.rank == 0 ? Json(nullptr) : Json(report.rank)},
          {"killable_tasks", killable},
          {"group_kill_cgroup", nullable(report.group)},
          {"group_kill_pids", report.group_pids}});
    }
    out << text::jsonText(Json{{"pid", process.pid},
                {"comm", process.status.comm},
                {"cgroup", nullable(process.cgroup)},
                {"oom_score_adj", process.oom_score_adj},
                {"oom_adj", policies::legacyOomAdjFromScoreAdj(process.oom_score_adj)},
                {"killable", reports.front().terms.unkillable == policies::UnkillableReason::kNone},
                {"unkillable_reason", reports.front().terms.unkillable == policies::UnkillableReason::kNone
                                          ? Json(nullptr)
                                          : Json(policies::describe(reports.front().terms.unkillable))},
                {"oom_score", computed_score},
                {"kernel_oom_score", kernel_oom_score ? Json(kernel_oom_score.value()) : Json(nullptr)},
                {"domains", std::move(domains)},
                {"rules", config ? rulesJson(*config, matchRules(*config, node, process)) : Json(nullptr)}})
        << "\n";
    return kExitOk;
  }

  const auto& status = process.status;
  out << "pid " << process.pid << " (" << text::printable(status.comm) << ") in cgroup " << text::printable(process.cgroup.value_or("?"))
      << "\n";
  out << "  memory: RssAnon " << status.rss_anon_kb << " kB + RssFile " << status.rss_file_kb << " kB + RssShmem "
      << status.rss_shmem_kb << " kB, VmSwap " << status.swap_kb << " kB, VmPTE " << status.pgtables_kb
      << " kB; page size " << facts.page_size_bytes << " B\n";
  out << "  oom_score_adj " << process.oom_score_adj << " (legacy oom_adj "
      << policies::legacyOomAdjFromScoreAdj(process.oom_score_adj) << ")\n";
  const auto reason = reports.front().terms.unkillable;
  if (reason != policies::UnkillableReason::kNone) {
    out << "  never selected by the OOM killer: " << policies::describe(reason) << "\n";
  }
  out << "  oom_score " << computed_score << " computed";
  if (kernel_oom_score) {
    out << ", kernel shows " << kernel_oom_score.value();
  }
  out << " (host domain, (1000 + points * 1000 / totalpages) * 2 / 3)\n";
  for (const auto& report : reports) {
    const auto& terms = report.terms;
    const auto& domain = report.ranking.domain;
    out << "\n" << (domain.kind == policies::DomainKind::kHost ? std::string("host domain") : "memcg domain " + text::printable(domain.cgroup))
        << ": totalpages " << domain.totalpages << " (" << text::humanBytes(domain.totalpages * facts.page_size_bytes) << ")\n";
    if (reason != policies::UnkillableReason::kNone) {
      out << "  not a candidate\n";
      continue;
    }
    out << "  points = rss " << terms.rss_pages << " + swap " << terms.swap_pages << " + pgtables " << terms.pgtables_pages
        << " pages + adj " << process.oom_score_adj << " * (" << domain.totalpages << " / 1000 = " << terms.adj_unit
        << ") = " << terms.points << "\n";
    size_t killable = 0;
    for (const auto& candidate : report.ranking.candidates) {
      killable += candidate.killable ? 1 : 0;
    }
    out << "  rank " << report.rank << " of " << killable << " killable tasks";
    if (report.rank == 1) {
      out << ": the kernel's next victim in this domain";
    } else if (report.rank > 1) {
      const auto& first = report.ranking.candidates.front();
      out << " (next victim: pid " << first.pid << " " << text::printable(report.ranking.processOf(first).status.comm) << ", "
          << first.points << " points, " << first.points - terms.points << " more)";
    }
    out << "\n";
    if (report.group) {
      out << "  memory.oom.group: killing it would kill all of " << text::printable(*report.group) << " (" << report.group_pids.size()
          << " tasks)\n";
    }
  }
  if (config) {
    printRules(*config, matchRules(*config, node, process), *options.config_path, out);
  }
  return kExitOk;
}

}  // namespace oomguard::guardian::cli
