#include "guardian/config/config.hpp"

#include "guardian/config/address.hpp"
#include "guardian/config/config_json.hpp"
#include "guardian/config/glob.hpp"
#include "guardian/config/object_reader.hpp"

#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

namespace oomguard::guardian::config {

const char* toString(Mode mode) { return mode == Mode::kAct ? "act" : "observe"; }

namespace {

using detail::Json;
using detail::ObjectReader;

PressureTrigger readPressure(const Json& value, const std::string& path) {
  ObjectReader reader(value, path);
  PressureTrigger trigger;
  trigger.resource = reader.string("resource", trigger.resource, {"memory", "cpu", "io"});
  trigger.kind = reader.string("kind", trigger.kind, {"some", "full"});
  // The kernel takes windows of 500 ms to 10 s, and a stall time that fits in the window.
  trigger.window_ms = static_cast<uint64_t>(reader.integer("window_ms", 1000, 500, 10000));
  trigger.stall_us = static_cast<uint64_t>(reader.integer("stall_us", 150000, 1, 10000000));
  if (trigger.stall_us > trigger.window_ms * 1000) {
    ObjectReader::fail(reader.pathOf("stall_us"), "must be <= window_ms * 1000 (" +
                                                      std::to_string(trigger.window_ms * 1000) + "), got " +
                                                      std::to_string(trigger.stall_us));
  }
  reader.finish();
  return trigger;
}

std::optional<PressureTrigger> readOptionalPressure(ObjectReader& parent, std::string_view key,
                                                    const std::optional<PressureTrigger>& fallback) {
  const Json* value = parent.find(key);
  if (value == nullptr) {
    return fallback;
  }
  if (value->is_null()) {
    return std::nullopt;  // explicitly off
  }
  return readPressure(*value, parent.pathOf(key));
}

// An act rule's "when" (or, `levels_only`, its warn stage's levels: no memory.events conditions).
policies::Thresholds readThresholds(const Json& value, const std::string& path, bool host, bool levels_only) {
  ObjectReader conditions(value, path);
  policies::Thresholds t;
  if (const Json* pressure = conditions.find("pressure")) {
    ObjectReader p(*pressure, conditions.pathOf("pressure"));
    t.pressure_kind = p.string("kind", "some", {"some", "full"});
    t.pressure_avg10 = p.number("avg10", 0.2, 0.0, 1.0);
    t.pressure_held_us = static_cast<uint64_t>(p.number("held_s", 0, 0, 3600) * 1e6);
    p.finish();
  }
  if (conditions.find("headroom_below") != nullptr) {
    if (host) {
      ObjectReader::fail(conditions.pathOf("headroom_below"), "applies to cgroups (memory.max); the host has mem_available_below");
    }
    t.headroom_below = conditions.number("headroom_below", 0, 0.0, 1.0);
  }
  if (conditions.find("mem_available_below") != nullptr || conditions.find("swap_free_below") != nullptr) {
    if (!host) {
      ObjectReader::fail(path, "mem_available_below and swap_free_below apply to the host only");
    }
    if (conditions.find("mem_available_below") != nullptr) {
      t.mem_available_below = conditions.number("mem_available_below", 0, 0.0, 1.0);
    }
    if (conditions.find("swap_free_below") != nullptr) {
      t.swap_free_below = conditions.number("swap_free_below", 0, 0.0, 1.0);
    }
  }
  if (levels_only) {
    for (const char* event : {"on_memory_max", "on_memory_high"}) {
      if (conditions.find(event) != nullptr) {
        ObjectReader::fail(conditions.pathOf(event), "is not a warn level: the kernel raises it at the limit, too late "
                                                     "to warn (use headroom_below)");
      }
    }
  } else {
    t.on_memory_max = conditions.boolean("on_memory_max", false);
    t.on_memory_high = conditions.boolean("on_memory_high", false);
  }
  conditions.finish();
  return t;
}

// The warn stage: levels before the act rule's (`act`), and the interval between two warnings.
WarnStage readWarn(const Json& value, const std::string& path, bool host, const policies::Thresholds& act) {
  WarnStage warn;
  ObjectReader reader(value, path);  // refuses what is not an object
  warn.interval_s = reader.number("interval_s", warn.interval_s, 1, 86400);
  Json levels = value;
  levels.erase("interval_s");
  warn.when = readThresholds(levels, path, host, /*levels_only=*/true);  // refuses unknown keys
  const auto& w = warn.when;
  if (!w.pressure_avg10 && !w.headroom_below && !w.mem_available_below && !w.swap_free_below) {
    ObjectReader::fail(path, "names no level (headroom_below, mem_available_below, swap_free_below or pressure)");
  }
  // Before the act level: more room left, or less pressure of the same kind.
  const auto number = [](double figure) {
    std::ostringstream text;
    text << figure;
    return text.str();
  };
  const auto before = [&](const char* key, const std::optional<double>& warn_at, const std::optional<double>& act_at) {
    if (warn_at && act_at && *warn_at <= *act_at) {
      ObjectReader::fail(path + "/" + key, "must be above when." + std::string(key) + " (" + number(*act_at) +
                                               "): a warning comes before the action");
    }
  };
  before("headroom_below", w.headroom_below, act.headroom_below);
  before("mem_available_below", w.mem_available_below, act.mem_available_below);
  before("swap_free_below", w.swap_free_below, act.swap_free_below);
  if (w.pressure_avg10 && act.pressure_avg10 && w.pressure_kind == act.pressure_kind) {
    if (*w.pressure_avg10 >= *act.pressure_avg10) {
      ObjectReader::fail(path + "/pressure/avg10", "must be below when.pressure.avg10 (" + number(*act.pressure_avg10) +
                                                      "; 0.2 when not given): a warning comes before the action");
    }
    if (w.pressure_held_us > act.pressure_held_us) {
      ObjectReader::fail(path + "/pressure/held_s", "must be at most when.pressure.held_s (" +
                                                      number(static_cast<double>(act.pressure_held_us) / 1e6) +
                                                      "): a warning comes before the action");
    }
  }
  return warn;
}

ActRule readAct(const Json& value, const std::string& path, bool host) {
  ObjectReader reader(value, path);
  ActRule act;
  const std::string action = reader.string("action", "observe", {"observe", "kill-worst", "kill-allocating", "panic"});
  act.action = *policies::parseAction(action);
  act.sigterm_grace_ms = static_cast<uint32_t>(reader.integer("sigterm_grace_ms", 0, 0, 600000));
  if (reader.find("memory_high_at_threshold") != nullptr && host) {
    ObjectReader::fail(reader.pathOf("memory_high_at_threshold"), "applies to cgroups (memory.high); the host has none");
  }
  act.memory_high_at_threshold = reader.boolean("memory_high_at_threshold", false);
  if (reader.find("memory_high_override") != nullptr && host) {
    ObjectReader::fail(reader.pathOf("memory_high_override"), "applies to cgroups (memory.high); the host has none");
  }
  act.memory_high_override = reader.boolean("memory_high_override", false);
  if (act.memory_high_override && !act.memory_high_at_threshold) {
    ObjectReader::fail(reader.pathOf("memory_high_override"), "needs memory_high_at_threshold: true");
  }
  if (const Json* when = reader.find("when")) {
    act.when = readThresholds(*when, reader.pathOf("when"), host, /*levels_only=*/false);
    const auto& t = act.when;
    if (!t.pressure_avg10 && !t.headroom_below && !t.mem_available_below && !t.swap_free_below && !t.on_memory_max &&
        !t.on_memory_high && act.action != policies::Action::kObserve) {
      ObjectReader::fail(reader.pathOf("when"), "names no condition: the action would never run");
    }
  } else if (act.action != policies::Action::kObserve) {
    ObjectReader::fail(reader.pathOf("when"), "is required for action \"" + action + "\"");
  }
  if (const Json* warn = reader.find("warn")) {
    act.warn = readWarn(*warn, reader.pathOf("warn"), host, act.when);
  }
  if (act.memory_high_at_threshold && !act.when.headroom_below) {
    ObjectReader::fail(reader.pathOf("memory_high_at_threshold"), "needs when.headroom_below: the threshold it is set at");
  }
  reader.finish();
  return act;
}

}  // namespace

CgroupRule defaultCgroupRule() {
  CgroupRule rule;
  rule.match = "/**";
  rule.pressure = PressureTrigger{"memory", "some", 100000, 1000};
  return rule;
}

std::string PressureTrigger::triggerText() const {
  return kind + " " + std::to_string(stall_us) + " " + std::to_string(window_ms * 1000);
}

namespace {

// Validates a parsed document into a Config; every refusal names the JSON path.
Config parseConfigDocument(const Json& document, const std::string& source) {
  try {
    Config config;
    ObjectReader root(document, "");
    const int64_t version = root.integer("version", 1, 1, 1);
    (void)version;
    config.mode = root.string("mode", "observe", {"observe", "act"}) == "act" ? Mode::kAct : Mode::kObserve;
    config.refresh_interval_s = root.number("refresh_interval_s", config.refresh_interval_s, 0.1, 3600);
    config.rescan_candidates = static_cast<size_t>(root.integer("rescan_candidates", 8, 1, 1000));
    config.log_candidates = static_cast<size_t>(root.integer("log_candidates", 5, 1, 100));
    config.read_kmsg = root.boolean("read_kmsg", config.read_kmsg);
    if (const Json* history = root.find("history"); history != nullptr && history->is_null()) {
      config.history = std::nullopt;
    } else if (history != nullptr) {
      ObjectReader reader(*history, "/history");
      config.history->dir = reader.string("dir", config.history->dir);
      if (config.history->dir.empty() || config.history->dir.front() != '/') {
        ObjectReader::fail("/history/dir", "must be an absolute path");
      }
      config.history->max_bytes = static_cast<uint64_t>(reader.integer("max_kib", 1024, 16, 16384)) * 1024U;
      reader.finish();
    }
    if (const Json* self = root.find("self")) {
      ObjectReader reader(*self, "/self");
      if (const Json* adj = reader.find("oom_score_adj"); adj != nullptr && adj->is_null()) {
        config.self.oom_score_adj = std::nullopt;
      } else {
        config.self.oom_score_adj = static_cast<int>(reader.integer("oom_score_adj", -1000, -1000, 1000));
      }
      config.self.mlock = reader.boolean("mlock", config.self.mlock);
      config.self.release_startup_pages =
          reader.boolean("release_startup_pages", config.self.release_startup_pages);
      reader.finish();
    }
    if (const Json* metrics = root.find("metrics")) {
      ObjectReader reader(*metrics, "/metrics");
      config.metrics_listen = reader.string("listen", config.metrics_listen);
      if (const auto address = parseListenAddress(config.metrics_listen); !address) {
        ObjectReader::fail("/metrics/listen", address.error().message);
      }
      config.metrics_top_k = static_cast<size_t>(reader.integer("top_k", 10, 1, 100));
      if (metrics->contains("health_listen")) {
        config.health_listen = reader.string("health_listen", "");
        if (const auto address = parseListenAddress(config.health_listen); !address) {
          ObjectReader::fail("/metrics/health_listen", address.error().message);
        }
      }
      reader.finish();
    }
    if (const Json* host = root.find("host")) {
      ObjectReader reader(*host, "/host");
      config.host_pressure = readOptionalPressure(reader, "pressure", config.host_pressure);
      if (const Json* act = reader.find("act")) {
        config.host_act = readAct(*act, "/host/act", true);
      }
      reader.finish();
    }
    if (const Json* sysctls = root.find("sysctls")) {
      ObjectReader reader(*sysctls, "/sysctls");
      struct Allowed {
        const char* name;
        long min;
        long max;
      };
      // The OOM-relevant ones, with the values the kernel accepts.
      constexpr Allowed kAllowed[] = {{"vm.panic_on_oom", 0, 2},          {"kernel.panic", -1, 86400},
                                      {"vm.oom_kill_allocating_task", 0, 1}, {"vm.oom_dump_tasks", 0, 1},
                                      {"vm.overcommit_memory", 0, 2},     {"vm.overcommit_ratio", 0, 100}};
      if (const Json* values = reader.find("values")) {
        ObjectReader names(*values, "/sysctls/values");
        for (const auto& allowed : kAllowed) {
          if (names.find(allowed.name) != nullptr) {
            config.sysctls[allowed.name] = names.integer(allowed.name, 0, allowed.min, allowed.max);
          }
        }
        names.finish();
      }
      config.enforce_sysctls = reader.boolean("enforce", false);
      reader.finish();
    }
    if (const Json* policy = root.find("policy")) {
      ObjectReader reader(*policy, "/policy");
      // cooldown_s (before 0.2): a fixed wait after each kill. It now means the same as victim_wait_s:
      // the longest wait on a victim that does not go; the wait ends as soon as it is gone.
      const bool has_wait = reader.find("victim_wait_s") != nullptr;
      if (has_wait && reader.find("cooldown_s") != nullptr) {
        ObjectReader::fail("/policy/cooldown_s", "give victim_wait_s only (cooldown_s is its old name)");
      }
      config.assumed_fill_rate_mib_s =
          reader.number("assumed_fill_rate_mib_s", config.assumed_fill_rate_mib_s, 1, 1'000'000);
      config.victim_wait_s = has_wait ? reader.number("victim_wait_s", config.victim_wait_s, 0.1, 600)
                                      : reader.number("cooldown_s", config.victim_wait_s, 0.1, 600);
      config.max_kills_per_minute = static_cast<size_t>(reader.integer("max_kills_per_minute", 6, 1, 1000));
      config.trend_window_s = reader.number("trend_window_s", config.trend_window_s, 1, 3600);
      config.panic_allowed = reader.boolean("allow_panic", false);
      reader.finish();
    }
    if (const Json* kubernetes = root.find("kubernetes")) {
      ObjectReader reader(*kubernetes, "/kubernetes");
      auto& k8s = config.kubernetes;
      k8s.enabled = reader.boolean("enabled", k8s.enabled);
      k8s.node_name = reader.string("node_name", k8s.node_name);
      k8s.api_server = reader.string("api_server", k8s.api_server);
      if (const auto url = parseHttpsUrl(k8s.api_server); !k8s.api_server.empty() && !url) {
        ObjectReader::fail("/kubernetes/api_server", url.error().message);
      }
      k8s.service_account_dir = reader.string("service_account_dir", k8s.service_account_dir);
      k8s.events = reader.boolean("events", k8s.events);
      k8s.annotations = reader.boolean("annotations", k8s.annotations);
      // Validated by the annotations' own reader, so both spell the rules the same way.
      Json tenant = Json::object();
      for (const char* key : {"protected_namespaces", "tenant_max_sigterm_grace_seconds"}) {
        if (const Json* value = reader.find(key)) {
          tenant[key] = *value;
        }
      }
      try {
        k8s.tenant = parseTenantPolicy(tenant);
      } catch (const std::invalid_argument& error) {
        throw ConfigError(std::string("/kubernetes") + error.what());
      }
      reader.finish();
    }
    if (const Json* hooks = root.find("hooks")) {
      config.hooks = parseHooks(*hooks);
    }
    if (const Json* processes = root.find("processes")) {
      config.processes = parseProcessRules(*processes);
    }
    if (const Json* cgroups = root.find("cgroups")) {
      if (!cgroups->is_array()) {
        ObjectReader::fail("/cgroups", "must be an array, got " + detail::typeName(*cgroups));
      }
      config.cgroups.clear();
      for (size_t i = 0; i < cgroups->size(); ++i) {
        const std::string path = "/cgroups/" + std::to_string(i);
        ObjectReader reader((*cgroups)[i], path);
        CgroupRule rule;
        rule.match = reader.requiredString("match");
        if (!rule.match.starts_with('/')) {
          ObjectReader::fail(reader.pathOf("match"), "must start with /, got \"" + rule.match + "\"");
        }
        rule.watch_events = reader.boolean("watch_events", true);
        rule.pressure = readOptionalPressure(reader, "pressure", std::nullopt);
        rule.pressure_only_if_limited = reader.boolean("pressure_only_if_limited", true);
        rule.oom_score_adj = detail::readProtection(reader);
        if (const Json* group = reader.find("oom_group"); group != nullptr) {
          rule.oom_group = reader.boolean("oom_group", false);
        }
        rule.preference = *policies::parsePreference(
            reader.string("preference", "none", {"prefer", "none", "avoid", "omit"}));
        if (const Json* act = reader.find("act")) {
          rule.act = readAct(*act, reader.pathOf("act"), false);
        }
        reader.finish();
        config.cgroups.push_back(std::move(rule));
      }
    }
    root.finish();
    auto check_panic = [&](const std::optional<ActRule>& act, const std::string& path) {
      if (act && act->action == policies::Action::kPanic && !config.panic_allowed) {
        ObjectReader::fail(path, "\"panic\" needs the second opt-in /policy/allow_panic: true");
      }
    };
    check_panic(config.host_act, "/host/act/action");
    for (size_t i = 0; i < config.cgroups.size(); ++i) {
      check_panic(config.cgroups[i].act, "/cgroups/" + std::to_string(i) + "/act/action");
    }
    return config;
  } catch (const ConfigError& error) {
    throw ConfigError(source + ": " + error.what());
  }
}

}  // namespace

Config parseConfig(std::string_view json_text, const std::string& source) {
  return parseConfigDocument(parseConfigJson(json_text, source), source);
}

Config loadConfigFile(const std::string& path) {
  const Json document = readConfigJson(path);
  return parseConfigDocument(document, path);
}

bool cgroupMatches(std::string_view pattern, std::string_view path) { return pathGlobMatch(pattern, path); }

const CgroupRule* ruleFor(const Config& config, std::string_view path) {
  for (const auto& rule : config.cgroups) {
    if (cgroupMatches(rule.match, path)) {
      return &rule;
    }
  }
  return nullptr;
}

std::string restartOnlyChanges(const Config& running, const Config& fresh) {
  const auto& old_k8s = running.kubernetes;
  const auto& new_k8s = fresh.kubernetes;
  const std::pair<bool, const char*> fixed[] = {
      {fresh.metrics_listen != running.metrics_listen, "/metrics/listen"},
      {fresh.health_listen != running.health_listen, "/metrics/health_listen"},
      {fresh.metrics_top_k != running.metrics_top_k, "/metrics/top_k"},
      {fresh.history != running.history, "/history"},
      {new_k8s.enabled != old_k8s.enabled, "/kubernetes/enabled"},
      {new_k8s.api_server != old_k8s.api_server, "/kubernetes/api_server"},
      {new_k8s.node_name != old_k8s.node_name, "/kubernetes/node_name"},
      {new_k8s.service_account_dir != old_k8s.service_account_dir, "/kubernetes/service_account_dir"},
  };
  std::string changed;
  for (const auto& [differs, path] : fixed) {
    if (differs) {
      changed += (changed.empty() ? "" : ", ") + std::string(path);
    }
  }
  return changed;
}

}  // namespace oomguard::guardian::config
