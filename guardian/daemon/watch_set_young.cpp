// The watch set's young cgroups: a cgroup made after oomguard started has its memory.max probed at a
// few ages in its first seconds (a runtime writes the limit just after mkdir), so that a new domain is
// watched long before the next refresh.
#include <algorithm>
#include <array>

#include "guardian/daemon/watch_set.hpp"

namespace oomguard::guardian::daemon {

namespace {
// The ages of a young cgroup at which its limit is probed: most runtimes write it within milliseconds
// of mkdir; the last probe comes before the first refresh could (the default refresh is 5 s).
constexpr std::array<uint64_t, 5> kYoungProbeAgesUs = {50'000, 200'000, 600'000, 1'500'000, 3'000'000};
}  // namespace

std::optional<uint64_t> WatchSet::youngProbeAgeUs(const WatchedCgroup& watched) {
  if (watched.preexisting || watched.limited || watched.young_probes >= kYoungProbeAgesUs.size()) {
    return std::nullopt;
  }
  return kYoungProbeAgesUs[watched.young_probes];
}

std::vector<std::string> WatchSet::probeYoungLimits(uint64_t now_us) {
  std::vector<std::string> limited;
  std::erase_if(young_, [&](const std::string& path) {
    auto found = cgroups_.find(path);
    if (found == cgroups_.end()) {
      return true;  // removed
    }
    WatchedCgroup& watched = found->second;
    const auto age_us = youngProbeAgeUs(watched);
    if (!age_us) {
      return true;
    }
    if (now_us < watched.added_us + *age_us) {
      return false;
    }
    // Every probe past its age is done now: one read, then the next age.
    while (watched.young_probes < kYoungProbeAgesUs.size() &&
           now_us >= watched.added_us + kYoungProbeAgesUs[watched.young_probes]) {
      ++watched.young_probes;
    }
    if (readLimit(path, watched)) {
      applyRule(path, watched);
    }
    if (watched.limited) {
      limited.push_back(path);
    }
    return !youngProbeAgeUs(watched).has_value();
  });
  for (const auto& path : limited) {
    listener_.onDomainFound(path);
  }
  return limited;
}

std::optional<uint64_t> WatchSet::nextYoungProbeUs() const {
  std::optional<uint64_t> next;
  for (const auto& path : young_) {
    const auto found = cgroups_.find(path);
    if (found == cgroups_.end()) {
      continue;
    }
    if (const auto age_us = youngProbeAgeUs(found->second)) {
      const uint64_t due = found->second.added_us + *age_us;
      next = next ? std::min(*next, due) : due;
    }
  }
  return next;
}

}  // namespace oomguard::guardian::daemon
