#include "policies/ranking.hpp"

#include <algorithm>

#include "cgroupfs/paths.hpp"
#include "policies/badness.hpp"

namespace oomguard::policies {

const char* toString(DomainKind kind) { return kind == DomainKind::kHost ? "host" : "memcg"; }

uint64_t hostTotalPages(const cgroupfs::MemInfo& meminfo, uint64_t page_size_bytes) {
  const uint64_t page_kb = page_size_bytes / 1024;
  return meminfo.mem_total_kb / page_kb + meminfo.swap_total_kb / page_kb;
}

uint64_t memcgTotalPages(uint64_t memory_max_bytes, const cgroupfs::LimitBytes& swap_max_bytes,
                         uint64_t swap_total_bytes, long vm_swappiness, uint64_t page_size_bytes) {
  uint64_t pages = memory_max_bytes / page_size_bytes;
  if (vm_swappiness != 0) {
    const uint64_t swap_total_pages = swap_total_bytes / page_size_bytes;
    const uint64_t swap_max_pages = swap_max_bytes ? *swap_max_bytes / page_size_bytes : swap_total_pages;
    pages += std::min(swap_max_pages, swap_total_pages);
  }
  return pages == 0 ? 1 : pages;
}

OomDomain hostDomain(const cgroupfs::MemInfo& meminfo, uint64_t page_size_bytes) {
  return OomDomain{DomainKind::kHost, "/", hostTotalPages(meminfo, page_size_bytes)};
}

std::vector<OomDomain> memcgDomains(std::span<const cgroupfs::CgroupSnapshot> cgroups,
                                    const cgroupfs::MemInfo& meminfo, long vm_swappiness,
                                    uint64_t page_size_bytes) {
  std::vector<OomDomain> domains;
  for (const auto& cgroup : cgroups) {
    if (cgroup.path != "/" && cgroup.memory_max_bytes) {
      domains.push_back(OomDomain{DomainKind::kMemcg, cgroup.path,
                                  memcgTotalPages(*cgroup.memory_max_bytes, cgroup.swap_max_bytes,
                                                  meminfo.swap_total_kb * 1024, vm_swappiness,
                                                  page_size_bytes)});
    }
  }
  return domains;
}

std::vector<pid_t> memcgScanOrder(std::span<const cgroupfs::CgroupSnapshot> subtree) {
  std::vector<pid_t> pids;
  for (const auto& cgroup : subtree) {
    pids.insert(pids.end(), cgroup.procs.begin(), cgroup.procs.end());
  }
  return pids;
}

std::vector<Candidate> rankDomain(const RankingInput& input) {
  std::vector<Candidate> candidates;
  candidates.reserve(input.processes_in_scan_order.size());
  for (size_t i = 0; i < input.processes_in_scan_order.size(); ++i) {
    const auto& process = input.processes_in_scan_order[i];
    Candidate candidate;
    candidate.pid = process.pid;
    candidate.points = oomBadness(process, input.totalpages, input.page_size_bytes);
    candidate.killable = candidate.points != kUnkillablePoints;
    // oom_score is always computed against the host's totalpages, whatever the domain.
    const long host_points = input.totalpages == input.host_totalpages
                                 ? candidate.points
                                 : oomBadness(process, input.host_totalpages, input.page_size_bytes);
    candidate.oom_score = procOomScore(host_points, input.host_totalpages, input.kernel);
    candidate.scan_index = i;
    candidates.push_back(candidate);
  }
  std::sort(candidates.begin(), candidates.end(), [](const Candidate& a, const Candidate& b) {
    if (a.killable != b.killable) {
      return a.killable;
    }
    if (!a.killable) {
      return a.scan_index < b.scan_index;
    }
    if (a.points != b.points) {
      return a.points > b.points;
    }
    return a.scan_index > b.scan_index;
  });
  return candidates;
}

std::optional<std::string> oomGroupCgroup(std::string_view victim_cgroup, const OomDomain& domain,
                                          const std::function<bool(std::string_view)>& oom_group_set) {
  if (victim_cgroup.empty() || victim_cgroup == "/" || !cgroupfs::isSameOrBelow(victim_cgroup, domain.cgroup)) {
    return std::nullopt;
  }
  std::optional<std::string> highest;
  for (std::string cgroup(victim_cgroup); !cgroup.empty(); cgroup = cgroupfs::parentCgroup(cgroup)) {
    if (cgroup != "/" && oom_group_set(cgroup)) {
      highest = cgroup;
    }
    if (cgroup == domain.cgroup) {
      break;
    }
  }
  return highest;
}

}  // namespace oomguard::policies
