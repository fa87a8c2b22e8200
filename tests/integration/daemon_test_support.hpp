// What the daemon-level tests share: an actuator that records instead of acting, the files of a fake
// cgroup tree (a plain directory stands in for cgroupfs), and the daemon's JSON log lines read back.
#pragma once

#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "guardian/io/actuator.hpp"

namespace oomguard::testing {

// Pins for real (pidfd_open), and records every action as one line ("kill <pid> grace <ms>",
// "kill-cgroup <cgroup>", "adj <pid> <value>", "oom.group <cgroup> <0|1>", "sysctl <name> <value>",
// "memory.high <cgroup> <bytes|max>", "panic", "self-adj <value>", "kmsg <line>") without doing it.
class RecordingActuator final : public guardian::io::Actuator {
 public:
  std::vector<std::string> actions;
  std::vector<pid_t> released;

  cgroupfs::Result<std::shared_ptr<guardian::io::PinnedProcess>> pin(pid_t pid) override {
    const long fd = ::syscall(SYS_pidfd_open, pid, 0);
    if (fd < 0) {
      return cgroupfs::systemError(errno, "pid", "pidfd_open failed");
    }
    return std::make_shared<guardian::io::PinnedProcess>(pid, cgroupfs::UniqueFd(static_cast<int>(fd)));
  }
  guardian::io::ActionResult kill(const std::shared_ptr<guardian::io::PinnedProcess>& process,
                              uint32_t grace_ms) override {
    actions.push_back("kill " + std::to_string(process->pid()) + " grace " + std::to_string(grace_ms));
    return {true, "recorded"};
  }
  guardian::io::ActionResult release(const std::shared_ptr<guardian::io::PinnedProcess>& process) override {
    released.push_back(process->pid());  // not an action of its own: what follows a kill
    return {true, "released"};
  }
  guardian::io::ActionResult killCgroup(const std::string& cgroup) override {
    actions.push_back("kill-cgroup " + cgroup);
    return {true, "recorded"};
  }
  guardian::io::ActionResult setOomScoreAdj(const std::shared_ptr<guardian::io::PinnedProcess>& process,
                                            int adj) override {
    actions.push_back("adj " + std::to_string(process->pid()) + " " + std::to_string(adj));
    return {true, "recorded"};
  }
  guardian::io::ActionResult setOomGroup(const std::string& cgroup, bool on) override {
    actions.push_back("oom.group " + cgroup + (on ? " 1" : " 0"));
    return {true, "recorded"};
  }
  guardian::io::ActionResult setMemoryHigh(const std::string& cgroup, std::optional<uint64_t> bytes) override {
    actions.push_back("memory.high " + cgroup + " " + (bytes ? std::to_string(*bytes) : std::string("max")));
    return {true, "recorded"};
  }
  guardian::io::ActionResult writeSysctl(const std::string& name, long value) override {
    actions.push_back("sysctl " + name + " " + std::to_string(value));
    return {true, "recorded"};
  }
  guardian::io::ActionResult panic() override {
    actions.push_back("panic");
    return {false, "recorded"};
  }
  guardian::io::ActionResult setOwnOomScoreAdj(int adj) override {
    actions.push_back("self-adj " + std::to_string(adj));
    return {true, "recorded"};
  }
  guardian::io::ActionResult writeKernelLog(const std::string& /*kmsg_path*/, const std::string& line) override {
    actions.push_back("kmsg " + line);
    return {true, "recorded"};
  }
};

inline void writeFile(const std::filesystem::path& path, const std::string& text) {
  std::ofstream out(path);
  out << text;
}

// memory.events with `max` limit hits and nothing else.
inline std::string eventsText(uint64_t max) {
  return "low 0\nhigh 0\nmax " + std::to_string(max) + "\noom 0\noom_kill 0\noom_group_kill 0\n";
}

// The lines of an guardian::io::EventLog's output whose "event" is `event`, oldest first. Every line must be JSON (a
// line that is not throws).
inline std::vector<nlohmann::json> logLines(const std::string& log_text, const std::string& event) {
  std::vector<nlohmann::json> found;
  std::istringstream lines(log_text);
  std::string line;
  while (std::getline(lines, line)) {
    auto parsed = nlohmann::json::parse(line);
    if (parsed.value("event", "") == event) {
      found.push_back(std::move(parsed));
    }
  }
  return found;
}

// A cgroup directory of a plain-directory tree shaped as a 1 GiB OOM domain with no swap, nearly full
// (memory.current 1,070,000,000 bytes: within policies::kStaleEventDivisor of the limit, so a "max"
// event still stands), memory.oom.group off, memory.events all zero, no task of its own.
inline void writeLimitedCgroup(const std::filesystem::path& cgroup) {
  writeFile(cgroup / "cgroup.procs", "");
  writeFile(cgroup / "memory.max", "1073741824\n");
  writeFile(cgroup / "memory.swap.max", "0\n");
  writeFile(cgroup / "memory.current", "1070000000\n");
  writeFile(cgroup / "memory.oom.group", "0\n");
  writeFile(cgroup / "memory.events", eventsText(0));
}

}  // namespace oomguard::testing
