// The daemon's own timers beside the refresh: the level watch's (with the warnings and decisions its
// readings bring), the service manager's watchdog, and the limit probes of young cgroups, with the
// domains they find. Also the real clocks (context.hpp).
#include <time.h>
#include <unistd.h>

#include <boost/asio/post.hpp>
#include <chrono>
#include <nlohmann/json.hpp>

#include "guardian/daemon/daemon.hpp"

namespace oomguard::guardian::daemon {
namespace {
using Json = nlohmann::ordered_json;
}  // namespace

uint64_t monotonicNowUs() {
  timespec now{};
  ::clock_gettime(CLOCK_MONOTONIC, &now);
  return static_cast<uint64_t>(now.tv_sec) * 1000000U + static_cast<uint64_t>(now.tv_nsec) / 1000U;
}

uint64_t bootTicksNow() {
  timespec now{};
  ::clock_gettime(CLOCK_BOOTTIME, &now);
  const long ticks_per_second = ::sysconf(_SC_CLK_TCK);
  return static_cast<uint64_t>(now.tv_sec) * static_cast<uint64_t>(ticks_per_second) +
         static_cast<uint64_t>(now.tv_nsec) * static_cast<uint64_t>(ticks_per_second) / 1'000'000'000U;
}

void Daemon::notifyManager(const std::string& state) {
  const std::string error = notifier_.send(state);
  if (!error.empty() && !notify_failed_) {
    notify_failed_ = true;
    log_.write("service_notify", Json{{"result", "failed"}, {"error", error}});
  }
}

void Daemon::scheduleWatchdog() {
  const auto timeout_us = notifier_.watchdogUs();
  if (stopped_ || !notifier_.enabled() || !timeout_us) {
    return;
  }
  // From a timer on the loop, not a thread of its own: when the loop is stuck, the pings stop.
  watchdog_timer_.expires_after(std::chrono::microseconds(*timeout_us / 2));
  watchdog_timer_.async_wait([this](const boost::system::error_code& error) {
    if (error || stopped_) {
      return;
    }
    notifyManager("WATCHDOG=1");
    scheduleWatchdog();
  });
}

void Daemon::onYoungCgroup() { scheduleYoungProbe(); }

void Daemon::scheduleYoungProbe() {
  const auto due = watch_set_.nextYoungProbeUs();
  if (stopped_ || !due || (young_due_us_ && *young_due_us_ <= *due)) {
    return;  // nothing waits, or the timer set already comes first
  }
  young_due_us_ = due;
  const uint64_t now = clock_.monotonic_us();
  young_timer_.expires_after(std::chrono::microseconds(*due > now ? *due - now : 0));
  young_timer_.async_wait([this](const boost::system::error_code& error) {
    if (error || stopped_) {
      return;
    }
    young_due_us_.reset();
    watch_set_.probeYoungLimits(clock_.monotonic_us());  // the domains it finds come to onDomainFound
    scheduleYoungProbe();
  });
}

void Daemon::onDomainFound(const std::string& cgroup) {
  if (stopped_ || rankings_.find(cgroup) != nullptr) {
    return;
  }
  // Ranked now, so that the level watch reads it on the loop's next turn (a new domain's first reading
  // is due on sight) instead of at the next refresh. Posted: this runs inside the watch set's own walk.
  if (rankings_.rerankMemcg(facts_, cgroup)) {
    log_.write("domain_added", Json{{"cgroup", cgroup}});
    decider_.domainsChanged();  // watched from the next tick, with its rule
    boost::asio::post(io_, [this] {
      if (!stopped_) {
        checkLevels(clock_.monotonic_us(), false);
      }
    });
  }
}

void Daemon::checkLevels(uint64_t now_us, bool all) {
  auto checks = decider_.checkLevels(now_us, all);
  for (const auto& warned : checks.warned) {
    warn(warned);
  }
  for (auto& [path, observation] : checks.crossed) {
    event_arrived_us_ = clock_.monotonic_us();
    decide(policies::Trigger{policies::Trigger::Kind::kThreshold, path, {}, {}, {}, {}}, observation);
  }
  scheduleLevels();
}

void Daemon::scheduleLevels() {
  const auto due = decider_.nextLevelDueUs();
  if (stopped_ || !due) {
    return;
  }
  const uint64_t now = clock_.monotonic_us();
  level_timer_.expires_after(std::chrono::microseconds(*due > now ? *due - now : 0));
  level_timer_.async_wait([this](const boost::system::error_code& error) {
    if (error || stopped_) {
      return;
    }
    checkLevels(clock_.monotonic_us(), false);
  });
}

}  // namespace oomguard::guardian::daemon
