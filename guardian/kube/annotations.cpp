#include "guardian/kube/annotations.hpp"


#include <algorithm>
#include <charconv>
#include <cmath>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>

#include "cgroupfs/parse.hpp"

namespace oomguard::guardian::kube {
namespace {

using cgroupfs::trim;

template <typename Int>
std::optional<Int> parseInteger(std::string_view text) {
  if (text.empty() || text.front() == '+') {
    return std::nullopt;
  }
  Int value{};
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (error != std::errc() || end != text.data() + text.size()) {
    return std::nullopt;
  }
  return value;
}

// A plain decimal: digits, optionally '.' and digits. No sign, exponent, or hex.
std::optional<double> parseDecimal(std::string_view text) {
  const size_t dot = text.find('.');
  const std::string_view whole = text.substr(0, dot);
  const std::string_view fraction = dot == std::string_view::npos ? std::string_view() : text.substr(dot + 1);
  const auto digits = [](std::string_view part) {
    return std::all_of(part.begin(), part.end(), [](char c) { return c >= '0' && c <= '9'; });
  };
  if (whole.empty() || !digits(whole) ||
      (dot != std::string_view::npos && (fraction.empty() || !digits(fraction))) || whole.size() > 9 ||
      fraction.size() > 6) {
    return std::nullopt;
  }
  double value = 0;
  for (const char c : whole) {
    value = value * 10 + (c - '0');
  }
  double scale = 0.1;
  for (const char c : fraction) {
    value += (c - '0') * scale;
    scale /= 10;
  }
  return value;
}

// RFC 1123 label, as container names are.
bool isContainerName(std::string_view name) {
  if (name.empty() || name.size() > 63 || name.front() == '-' || name.back() == '-') {
    return false;
  }
  return std::all_of(name.begin(), name.end(),
                     [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'; });
}

// Built by appending: GCC 12 at -O2/-O3 reports a false -Werror=restrict for '"' + std::string
// inlined into memcpy (GCC bug 105329), and the Release image build treats it as an error.
std::string inQuotes(std::string_view text) {
  std::string quoted;
  quoted.reserve(text.size() + 2);
  quoted.push_back('"');
  quoted.append(text);
  quoted.push_back('"');
  return quoted;
}

constexpr std::string_view kKnownNames =
    "protection, oom-score-adj, oom-group, oom-group.<container>, preference, pressure-limit, "
    "pressure-action, "
    "sigterm-grace-seconds";

class Parser {
 public:
  explicit Parser(ParsedAnnotations& out) : out_(out) {}

  void annotation(const std::string& key, const std::string& raw_value) {
    std::string_view name = key;
    name.remove_prefix(kAnnotationDomain.size());
    const std::string_view value = trim(raw_value);
    const size_t dot = name.find('.');
    const std::string_view version = name.substr(0, dot);
    if (dot == std::string_view::npos || version.size() < 2 || version[0] != 'v' ||
        !parseInteger<unsigned>(version.substr(1))) {
      invalid(key, raw_value,
              "no version: annotations are named oomguard.io/" + std::string(kAnnotationVersion) + ".<name>" +
                  (dot == std::string_view::npos
                       ? " (did you mean oomguard.io/" + std::string(kAnnotationVersion) + "." +
                             std::string(name) + "?)"
                       : std::string()) +
                  "; ignored");
      return;
    }
    if (version != kAnnotationVersion) {
      invalid(key, raw_value,
              "version " + std::string(version) + " is not understood by this oomguard (it reads " +
                  std::string(kAnnotationVersion) + "); ignored");
      return;
    }
    name.remove_prefix(dot + 1);
    if (name == "protection") {
      protection(key, value);
    } else if (name == "oom-score-adj") {
      oomScoreAdj(key, value);
    } else if (name == "oom-group") {
      if (const auto flag = boolean(key, value, "kubelet's memory.oom.group is left as it is")) {
        out_.policy.oom_group = *flag;
      }
    } else if (name.substr(0, 10) == "oom-group.") {
      const std::string_view container = name.substr(10);
      if (!isContainerName(container)) {
        invalid(key, raw_value,
                inQuotes(container) +
                    " is not a container name (lowercase letters, digits and '-', at most 63); ignored");
      } else if (const auto flag = boolean(key, value, "kubelet's memory.oom.group is left as it is")) {
        out_.policy.container_oom_group[std::string(container)] = *flag;
      }
    } else if (name == "preference") {
      preference(key, value);
    } else if (name == "pressure-limit") {
      pressureLimit(key, value);
    } else if (name == "pressure-action") {
      pressureAction(key, value);
    } else if (name == "sigterm-grace-seconds") {
      const auto seconds = parseInteger<uint32_t>(value);
      if (!seconds || *seconds > config::kMaxSigtermGraceSeconds) {
        invalid(key, raw_value,
                inQuotes(value) + " is not a whole number of seconds from 0 to " +
                    std::to_string(config::kMaxSigtermGraceSeconds) + "; keeping the daemon's default");
      } else {
        out_.policy.sigterm_grace_seconds = *seconds;
      }
    } else {
      invalid(key, raw_value,
              "unknown annotation (" + std::string(kAnnotationVersion) + " has " + std::string(kKnownNames) +
                  "); ignored");
    }
  }

  void finish() {
    if (saw_pressure_action_ && !out_.policy.pressure_limit) {
      invalid(action_key_, action_value_,
              "has no effect without oomguard.io/" + std::string(kAnnotationVersion) + ".pressure-limit");
      out_.policy.pressure_action = PressureAction::kKillWorst;
    }
  }

 private:
  void invalid(const std::string& key, const std::string& value, std::string reason) {
    out_.invalid.push_back(AnnotationIssue{key, value, std::move(reason)});
  }

  std::optional<bool> boolean(const std::string& key, std::string_view value, std::string_view fallback) {
    if (value == "true") {
      return true;
    }
    if (value == "false") {
      return false;
    }
    invalid(key, std::string(value),
            inQuotes(value) + " is not \"true\" or \"false\"; " + std::string(fallback));
    return std::nullopt;
  }

  void protection(const std::string& key, std::string_view value) {
    if (const auto protection = policies::parseProtectionClass(value)) {
      out_.policy.protection = *protection;
      return;
    }
    invalid(key, std::string(value),
            inQuotes(value) + " is not one of critical, high, normal, low, sacrificial; keeping normal");
  }

  void oomScoreAdj(const std::string& key, std::string_view value) {
    const auto adj = parseInteger<int>(value);
    if (!adj || *adj < kMinAnnotationOomScoreAdj || *adj > kMaxAnnotationOomScoreAdj) {
      std::string reason = inQuotes(value) + " is not a whole number from " +
                           std::to_string(kMinAnnotationOomScoreAdj) + " to " +
                           std::to_string(kMaxAnnotationOomScoreAdj);
      if (adj && *adj < kMinAnnotationOomScoreAdj && *adj >= -1000) {
        reason +=
            " (-999 is kubelet's and the runtime's, -1000 makes a process unkillable and can leave the "
            "kernel nothing to kill but the node)";
      }
      invalid(key, std::string(value), reason + "; keeping kubelet's value");
      return;
    }
    out_.policy.oom_score_adj = *adj;
  }

  void preference(const std::string& key, std::string_view value) {
    if (const auto preference = policies::parsePreference(value)) {
      out_.policy.preference = *preference;
    } else {
      invalid(key, std::string(value), inQuotes(value) + " is not one of prefer, none, avoid, omit; ignored");
    }
  }

  void pressureLimit(const std::string& key, std::string_view value) {
    std::istringstream words{std::string(value)};
    std::string kind;
    std::string percent;
    std::string duration;
    std::string extra;
    words >> kind >> percent >> duration >> extra;
    const std::string expected =
        "expected \"<some|full> <percent>% <seconds>s\", e.g. \"full 20% 5s\"; no limit";
    PressureLimit limit;
    if (kind == "some") {
      limit.kind = PressureKind::kSome;
    } else if (kind == "full") {
      limit.kind = PressureKind::kFull;
    } else {
      invalid(key, std::string(value), inQuotes(kind) + " is not some or full: " + expected);
      return;
    }
    if (!extra.empty() || percent.size() < 2 || percent.back() != '%' || duration.size() < 2 ||
        duration.back() != 's') {
      invalid(key, std::string(value), expected);
      return;
    }
    const auto share = parseDecimal(std::string_view(percent).substr(0, percent.size() - 1));
    if (!share || *share < kMinPressureLimitPercent || *share > 100) {
      invalid(key, std::string(value),
              "the share " + inQuotes(percent) + " must be at least 1% and at most 100% (below, any stall at "
              "all would trip it); no limit");
      return;
    }
    const auto seconds = parseInteger<uint32_t>(std::string_view(duration).substr(0, duration.size() - 1));
    if (!seconds || *seconds < 1 || *seconds > kMaxPressureDurationSeconds) {
      invalid(key, std::string(value),
              "the duration " + inQuotes(duration) + " must be whole seconds from 1s to " +
                  std::to_string(kMaxPressureDurationSeconds) + "s; no limit");
      return;
    }
    limit.percent = *share;
    limit.duration_s = *seconds;
    out_.policy.pressure_limit = limit;
  }

  void pressureAction(const std::string& key, std::string_view value) {
    saw_pressure_action_ = true;
    action_key_ = key;
    action_value_ = std::string(value);
    if (value == "kill-worst") {
      out_.policy.pressure_action = PressureAction::kKillWorst;
    } else if (value == "kill-group") {
      out_.policy.pressure_action = PressureAction::kKillGroup;
    } else if (value == "observe") {
      out_.policy.pressure_action = PressureAction::kObserve;
    } else {
      saw_pressure_action_ = false;  // reported here, once
      invalid(key, std::string(value),
              inQuotes(value) + " is not one of kill-worst, kill-group, observe; keeping kill-worst");
    }
  }

  ParsedAnnotations& out_;
  bool saw_pressure_action_ = false;
  std::string action_key_;
  std::string action_value_;
};

std::string formatPercent(double percent) {
  std::ostringstream text;
  text.precision(6);
  text << percent;
  return text.str();
}

}  // namespace

std::string_view toString(PressureKind kind) {
  return kind == PressureKind::kFull ? "full" : "some";
}

std::string_view toString(PressureAction action) {
  switch (action) {
    case PressureAction::kKillWorst:
      return "kill-worst";
    case PressureAction::kKillGroup:
      return "kill-group";
    case PressureAction::kObserve:
      return "observe";
  }
  return "kill-worst";
}

std::string PressureLimit::text() const {
  return std::string(toString(kind)) + " " + formatPercent(percent) + "% " + std::to_string(duration_s) + "s";
}

std::optional<std::string> PressureLimit::triggerText() const {
  if (duration_s > 10) {
    return std::nullopt;  // the kernel's trigger windows end at 10 s
  }
  const uint64_t window_us = uint64_t{duration_s} * 1000000;
  const auto stall_us = static_cast<uint64_t>(std::llround(static_cast<double>(window_us) * percent / 100.0));
  return std::string(toString(kind)) + " " + std::to_string(std::max<uint64_t>(stall_us, 1)) + " " +
         std::to_string(window_us);
}

ParsedAnnotations parseAnnotations(const std::map<std::string, std::string>& annotations) {
  ParsedAnnotations out;
  Parser parser(out);
  for (const auto& [key, value] : annotations) {
    if (key.size() > kAnnotationDomain.size() &&
        key.compare(0, kAnnotationDomain.size(), kAnnotationDomain) == 0) {
      parser.annotation(key, value);
    }
  }
  parser.finish();
  return out;
}

AnnotationKey classifyAnnotationKey(std::string_view key) {
  if (key.substr(0, kAnnotationDomain.size()) != kAnnotationDomain) {
    return AnnotationKey::kOther;
  }
  std::string_view name = key.substr(kAnnotationDomain.size());
  const std::string version_prefix = std::string(kAnnotationVersion) + ".";
  if (name.substr(0, version_prefix.size()) != version_prefix) {
    return AnnotationKey::kUnknown;
  }
  name.remove_prefix(version_prefix.size());
  for (const std::string_view known : {"protection", "oom-score-adj", "oom-group", "preference", "pressure-limit",
                                       "pressure-action", "sigterm-grace-seconds"}) {
    if (name == known) {
      return AnnotationKey::kKnown;
    }
  }
  return name.substr(0, 10) == "oom-group." ? AnnotationKey::kContainerGroup : AnnotationKey::kUnknown;
}

std::string boundedAnnotationValue(std::string_view value) {
  if (value.size() <= kMaxAnnotationValueBytes) {
    return std::string(value);
  }
  std::string cut(value.substr(0, kMaxAnnotationValueBytes - 3));
  cut += "...";
  return cut;
}

EffectivePolicy effectivePolicy(const std::map<std::string, std::string>& annotations,
                                std::string_view namespace_name, const config::TenantPolicy& tenant,
                                int baseline_oom_score_adj) {
  ParsedAnnotations parsed = parseAnnotations(annotations);
  EffectivePolicy effective{std::move(parsed.policy), std::move(parsed.invalid), {}};
  if (mayEscalate(tenant, namespace_name)) {
    return effective;
  }
  WorkloadPolicy& policy = effective.policy;
  const std::string prefix = std::string(kAnnotationDomain) + std::string(kAnnotationVersion) + ".";
  const std::string where = "namespace " + inQuotes(namespace_name) + " is not allowed to raise protection";
  const auto refuse = [&](std::string_view name, std::string value, std::string reason) {
    effective.refused.push_back(
        AnnotationIssue{prefix + std::string(name), std::move(value), std::move(reason)});
  };
  if (policy.protection == policies::ProtectionClass::kCritical || policy.protection == policies::ProtectionClass::kHigh) {
    refuse("protection", std::string(toString(policy.protection)),
           where + " above normal; the pod keeps normal (kubelet's oom_score_adj)");
    policy.protection = policies::ProtectionClass::kNormal;
  }
  if (policy.oom_score_adj && *policy.oom_score_adj < baseline_oom_score_adj) {
    refuse("oom-score-adj", std::to_string(*policy.oom_score_adj),
           where + ": " + std::to_string(*policy.oom_score_adj) + " is below kubelet's " +
               std::to_string(baseline_oom_score_adj) + "; the pod keeps kubelet's value");
    policy.oom_score_adj.reset();
  }
  if (policy.preference == policies::Preference::kAvoid || policy.preference == policies::Preference::kOmit) {
    refuse("preference", std::string(toString(policy.preference)),
           where + " (" + std::string(toString(policy.preference)) +
               " moves oomguard's kills onto other pods); the pod keeps no preference");
    policy.preference = policies::Preference::kNone;
  }
  if (policy.sigterm_grace_seconds &&
      *policy.sigterm_grace_seconds > tenant.tenant_max_sigterm_grace_seconds) {
    refuse("sigterm-grace-seconds", std::to_string(*policy.sigterm_grace_seconds),
           where + ": a SIGTERM grace above " + std::to_string(tenant.tenant_max_sigterm_grace_seconds) +
               " s keeps the node under pressure longer; the pod keeps the daemon's default");
    policy.sigterm_grace_seconds.reset();
  }
  // kubelet puts each container's processes in one memory.oom.group: an OOM kill takes the whole
  // container. "false" would undo that for the pod, so that later OOM kills can land on single
  // processes of containers next to the leak: a decision about the node, not only the pod.
  if (policy.oom_group == false) {
    refuse("oom-group", "false", where + ": \"false\" undoes kubelet's per-container group kill; left as it is");
    policy.oom_group.reset();
  }
  for (auto it = policy.container_oom_group.begin(); it != policy.container_oom_group.end();) {
    if (!it->second) {
      refuse("oom-group." + it->first, "false",
             where + ": \"false\" undoes kubelet's group kill of the container; left as it is");
      it = policy.container_oom_group.erase(it);
    } else {
      ++it;
    }
  }
  return effective;
}

int containerOomScoreAdj(const WorkloadPolicy& policy, int kubelet_oom_score_adj) {
  if (policy.oom_score_adj) {
    return *policy.oom_score_adj;
  }
  switch (policy.protection) {
    case policies::ProtectionClass::kCritical:
      return std::min(kubelet_oom_score_adj, policies::oomScoreAdjFor(policies::ProtectionClass::kCritical));
    case policies::ProtectionClass::kHigh:
      return std::min(kubelet_oom_score_adj, policies::oomScoreAdjFor(policies::ProtectionClass::kHigh));
    case policies::ProtectionClass::kNormal:
      return kubelet_oom_score_adj;
    case policies::ProtectionClass::kLow:
      return std::max(kubelet_oom_score_adj, policies::oomScoreAdjFor(policies::ProtectionClass::kLow));
    case policies::ProtectionClass::kSacrificial:
      return policies::oomScoreAdjFor(policies::ProtectionClass::kSacrificial);
  }
  return kubelet_oom_score_adj;
}

std::optional<bool> podOomGroup(const WorkloadPolicy& policy) {
  return policy.oom_group;
}

std::optional<bool> containerOomGroup(const WorkloadPolicy& policy, std::string_view container_name) {
  const auto found = policy.container_oom_group.find(std::string(container_name));
  if (found != policy.container_oom_group.end()) {
    return found->second;
  }
  if (policy.oom_group == false) {
    return false;  // single-process kills for the whole pod: undo kubelet's per-container group kill
  }
  return std::nullopt;
}

int kubeletOomScoreAdj(const KubeletOomInput& input) {
  if (input.node_critical) {
    return kGuaranteedOomScoreAdj;
  }
  switch (input.qos) {
    case QosClass::kGuaranteed:
      return kGuaranteedOomScoreAdj;
    case QosClass::kBestEffort:
      return kBestEffortOomScoreAdj;
    case QosClass::kBurstable:
    case QosClass::kUnknown:
      break;
  }
  if (input.memory_capacity_bytes <= 0) {
    return kBestEffortOomScoreAdj - 1;  // kubelet never runs without a capacity; the burstable maximum
  }
  // Go's int64 arithmetic: the multiplication first, then a division that truncates toward zero.
  int64_t adj = 1000 - (1000 * (input.memory_request_bytes + input.pod_level_extra_request_bytes)) /
                           input.memory_capacity_bytes;
  if (input.sidecar) {
    const int64_t regular =
        1000 - (1000 * (input.min_regular_memory_request_bytes + input.pod_level_extra_request_bytes)) /
                   input.memory_capacity_bytes;
    adj = std::min(adj, regular);
  }
  if (adj < 1000 + kGuaranteedOomScoreAdj) {
    return 1000 + kGuaranteedOomScoreAdj;  // 3: above every Guaranteed pod
  }
  if (adj == kBestEffortOomScoreAdj) {
    return kBestEffortOomScoreAdj - 1;  // 999: below every BestEffort pod
  }
  return static_cast<int>(adj);
}

}  // namespace oomguard::guardian::kube
