// /processes: process rules matched by comm, cmdline and uid (processes.hpp).
#include "guardian/config/processes.hpp"

#include <re2/re2.h>

#include "guardian/config/object_reader.hpp"

namespace oomguard::guardian::config {
namespace {

using detail::Json;
using detail::ObjectReader;

constexpr size_t kMaxRules = 256;
constexpr size_t kMaxPatternBytes = 1024;
// RE2's memory for one compiled pattern (its default is 8 MiB): a pattern that needs more is refused.
constexpr int64_t kMaxPatternMemoryBytes = int64_t{1} << 20;
constexpr size_t kMaxUids = 64;

std::shared_ptr<const re2::RE2> readPattern(ObjectReader& reader, const char* key, std::string& text) {
  const Json* value = reader.find(key);
  if (value == nullptr) {
    return nullptr;
  }
  const std::string pattern = reader.requiredString(key);
  if (pattern.empty() || pattern.size() > kMaxPatternBytes) {
    ObjectReader::fail(reader.pathOf(key),
                       "must be a pattern of 1 to " + std::to_string(kMaxPatternBytes) + " bytes");
  }
  re2::RE2::Options options;
  options.set_log_errors(false);
  // Bytes, not UTF-8: a name or a command line may hold any byte, and `.` or [^x] must match each one
  // (in UTF-8 mode they skip bytes that are not UTF-8). A pattern's UTF-8 letters match their bytes.
  options.set_encoding(re2::RE2::Options::EncodingLatin1);
  options.set_max_mem(kMaxPatternMemoryBytes);
  auto compiled = std::make_shared<const re2::RE2>(pattern, options);
  if (!compiled->ok()) {
    ObjectReader::fail(reader.pathOf(key), "is not an RE2 pattern: " + compiled->error());
  }
  text += std::string(text.empty() ? "" : ", ") + key + " " + Json(pattern).dump();
  return compiled;
}

ProcessRule readRule(const Json& value, const std::string& path) {
  ObjectReader reader(value, path);
  ProcessRule rule;
  rule.comm = readPattern(reader, "comm", rule.text);
  rule.cmdline = readPattern(reader, "cmdline", rule.text);
  if (const Json* uid = reader.find("uid")) {
    const Json list = uid->is_array() ? *uid : Json::array({*uid});
    if (list.empty() || list.size() > kMaxUids) {
      ObjectReader::fail(reader.pathOf("uid"),
                         "must be a uid or a list of 1 to " + std::to_string(kMaxUids) + " uids");
    }
    for (size_t i = 0; i < list.size(); ++i) {
      const std::string element =
          uid->is_array() ? reader.pathOf("uid") + "/" + std::to_string(i) : reader.pathOf("uid");
      if (!list[i].is_number_integer() || list[i].get<int64_t>() < 0 ||
          list[i].get<int64_t>() > UINT32_MAX - 1) {
        ObjectReader::fail(element, "must be a uid (an integer from 0 to 4294967294), got " + list[i].dump());
      }
      rule.uids.push_back(static_cast<uid_t>(list[i].get<int64_t>()));
    }
    rule.text += std::string(rule.text.empty() ? "" : ", ") + "uid " + list.dump();
  }
  if (!rule.comm && !rule.cmdline && rule.uids.empty()) {
    ObjectReader::fail(path, "matches nothing: give comm, cmdline or uid");
  }
  rule.oom_score_adj = detail::readProtection(reader);
  rule.preference =
      *policies::parsePreference(reader.string("preference", "none", {"prefer", "none", "avoid", "omit"}));
  if (!rule.oom_score_adj && rule.preference == policies::Preference::kNone) {
    ObjectReader::fail(path, "does nothing: give protection or preference");
  }
  reader.finish();
  return rule;
}

}  // namespace

std::vector<ProcessRule> parseProcessRules(const nlohmann::json& value) {
  if (!value.is_array()) {
    ObjectReader::fail("/processes", "must be an array, got " + detail::typeName(value));
  }
  if (value.size() > kMaxRules) {
    ObjectReader::fail("/processes", "has more than " + std::to_string(kMaxRules) + " rules");
  }
  std::vector<ProcessRule> rules;
  for (size_t i = 0; i < value.size(); ++i) {
    rules.push_back(readRule(value[i], "/processes/" + std::to_string(i)));
  }
  return rules;
}

std::string cmdlineText(std::string_view raw) {
  std::string text(raw);
  if (!text.empty() && text.back() == '\0') {
    text.pop_back();
  }
  std::replace(text.begin(), text.end(), '\0', ' ');
  return text;
}

RulesApplied rulesApplied(const ProcessRule* process_rule, const CgroupRule* cgroup_rule) {
  RulesApplied applied;
  if (cgroup_rule != nullptr) {
    applied.preference = cgroup_rule->preference;
    applied.preference_source = "cgroup rule";
    if (cgroup_rule->oom_score_adj) {
      applied.oom_score_adj = cgroup_rule->oom_score_adj;
      applied.protection_source = "cgroup rule";
    }
  }
  if (process_rule != nullptr && process_rule->preference != policies::Preference::kNone) {
    applied.preference = process_rule->preference;
    applied.preference_source = "process rule";
  }
  if (process_rule != nullptr && process_rule->oom_score_adj) {
    applied.oom_score_adj = process_rule->oom_score_adj;
    applied.protection_source = "process rule";
  }
  return applied;
}

const ProcessRule* processRuleFor(const std::vector<ProcessRule>& rules, std::string_view comm, uid_t uid,
                                  const CmdlineReader& read_cmdline, size_t* index) {
  std::optional<std::optional<std::string>> cmdline;  // read once, when first needed
  for (size_t i = 0; i < rules.size(); ++i) {
    const ProcessRule& rule = rules[i];
    if (!rule.uids.empty() && std::find(rule.uids.begin(), rule.uids.end(), uid) == rule.uids.end()) {
      continue;
    }
    if (rule.comm && !re2::RE2::PartialMatch(comm, *rule.comm)) {
      continue;
    }
    if (rule.cmdline) {
      if (!cmdline) {
        auto raw = read_cmdline ? read_cmdline() : std::nullopt;
        cmdline = raw ? std::optional<std::string>(cmdlineText(*raw)) : std::nullopt;
      }
      if (!*cmdline || !re2::RE2::PartialMatch(**cmdline, *rule.cmdline)) {
        continue;
      }
    }
    if (index != nullptr) {
      *index = i;
    }
    return &rule;
  }
  return nullptr;
}

}  // namespace oomguard::guardian::config
