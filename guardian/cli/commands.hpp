// The read-only commands: `top`, `explain`, `doctor`, `explain-oom`, `history`. Each returns the process exit code
// (0 success, 1 runtime failure, 2 bad usage) and writes only to the streams it is given.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <iosfwd>
#include <optional>
#include <string>

#include "guardian/io/node.hpp"

namespace oomguard::guardian::cli {

inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;
inline constexpr int kExitUsage = 2;

struct TopOptions {
  bool json = false;
  size_t limit = 10;  // 0 = all
  std::string domain = "host";  // "host" or a cgroup path
  bool by_cgroup = false;
  // With every process (limit 0): each one's /proc/<pid>/oom_score too, the kernel's own number (a third
  // file per process: about 0.3 times the cost of the ranking's reads). A limited listing reads it for
  // the rows it shows anyway.
  bool kernel_scores = false;
};
int runTop(io::Node& node, const TopOptions& options, std::ostream& out, std::ostream& err);

struct ExplainOptions {
  pid_t pid = 0;
  bool json = false;
  // With a config: which of its rules apply to the process (a process rule, a cgroup rule), and the
  // preference and protection they give it (explain_rules.cpp).
  std::optional<std::string> config_path;
};
int runExplain(io::Node& node, const ExplainOptions& options, std::ostream& out, std::ostream& err);

struct ExplainOomOptions {
  std::string input = "-";  // a file, or "-" for `in`
  bool json = false;
  // What a report does not print (see OomAssumptions): unset means assumed, and the output says what.
  std::optional<long> vm_swappiness;
  std::optional<uint64_t> total_swap_kb;
  std::optional<uint64_t> page_size_bytes;
};
// Replays the kernel OOM reports in a kernel log (dmesg, journalctl -k, /dev/kmsg records or bare
// messages, mixed as they come) and explains each with the project's model. 0 when every report found
// is whole; 1 when there is none, when one is cut short (the others are still explained), or when the
// input cannot be read.
int runExplainOom(const ExplainOomOptions& options, std::istream& in, std::ostream& out, std::ostream& err);

struct HistoryOptions {
  std::string dir = "/var/lib/oomguard";  // the daemon's history.dir
  bool json = false;
  std::optional<std::string> since;  // a duration: N, Ns, Nm, Nh, Nd
  int64_t now_epoch_s = 0;           // the wall clock, injected
};
// The kill journal the daemon keeps (every OOM kill, the kernel's and oomguard's), oldest first. 0 (an
// empty history too), 1 when the journal cannot be read, 2 for a --since that is not a duration.
int runHistory(const HistoryOptions& options, std::ostream& out, std::ostream& err);
// "90", "90s", "15m", "2h", "7d" -> seconds; nullopt otherwise.
std::optional<int64_t> parseDurationSeconds(const std::string& text);

struct DoctorOptions {
  bool json = false;
};
int runDoctor(io::Node& node, const DoctorOptions& options, std::ostream& out, std::ostream& err);

struct HealthOptions {
  std::string address = "127.0.0.1:9743";  // the daemon's metrics.health_listen (or metrics.listen)
  uint32_t timeout_ms = 2000;               // for the whole exchange
};
// GET http://ADDRESS/healthz: 0 and the body on HTTP 200; 1 otherwise (the status or the error on
// `err`); 2 for an address that is not a numeric ADDRESS:PORT.
int runHealth(const HealthOptions& options, std::ostream& out, std::ostream& err);

}  // namespace oomguard::guardian::cli
