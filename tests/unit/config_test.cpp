#include <gtest/gtest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <fstream>

#include "config_error_of.hpp"
#include "guardian/config/config.hpp"
#include "guardian/config/config_json.hpp"
#include "guardian/config/glob.hpp"
#include "test_util.hpp"

namespace oomguard::guardian::config {
namespace {

TEST(Config, EmptyObjectGivesTheDefaults) {
  const Config config = parseConfig("{}", "test.json");
  EXPECT_EQ(config.mode, Mode::kObserve);
  EXPECT_DOUBLE_EQ(config.refresh_interval_s, 5.0);
  EXPECT_EQ(config.self.oom_score_adj, std::optional<int>(-1000));
  EXPECT_TRUE(config.self.mlock);
  EXPECT_TRUE(config.self.release_startup_pages);
  ASSERT_TRUE(config.host_pressure.has_value());
  EXPECT_EQ(config.host_pressure->triggerText(), "some 150000 1000000");
  ASSERT_EQ(config.cgroups.size(), 1U);
  EXPECT_EQ(config.cgroups[0].match, "/**");
}

TEST(Config, TheExampleIsValid) {
  const Config config = loadConfigFile(std::string(OOMGUARD_SOURCE_DIR) + "/examples/oomguard.json");
  ASSERT_EQ(config.cgroups.size(), 4U);
  EXPECT_EQ(config.cgroups[0].pressure->kind, "full");
  EXPECT_FALSE(config.cgroups[1].pressure.has_value());
  EXPECT_EQ(config.metrics_listen, "127.0.0.1:9743");
  ASSERT_TRUE(config.hooks.pre_kill && config.hooks.post_kill);
  EXPECT_EQ(config.hooks.pre_kill->argv.front(), "/usr/bin/logger");
}

TEST(Config, TheRecommendedActingConfigIsValidAndActsWithTheDefaultRefresh) {
  const Config config = loadConfigFile(std::string(OOMGUARD_SOURCE_DIR) + "/examples/act-recommended.json");
  EXPECT_EQ(config.mode, Mode::kAct);
  EXPECT_DOUBLE_EQ(config.refresh_interval_s, 5.0) << "it must win with the default refresh";
  ASSERT_TRUE(config.host_act);
  EXPECT_EQ(config.host_act->action, policies::Action::kKillAllocating) << "the leak, not the largest bystander";
  EXPECT_EQ(config.host_act->when.mem_available_below, std::optional<double>(0.10));
  ASSERT_EQ(config.cgroups.size(), 1U);
  ASSERT_TRUE(config.cgroups[0].act);
  EXPECT_EQ(config.cgroups[0].act->action, policies::Action::kKillAllocating);
  EXPECT_EQ(config.cgroups[0].act->when.headroom_below, std::optional<double>(0.10));
  ASSERT_TRUE(config.cgroups[0].pressure) << "the default rule's PSI trigger is kept";
}

// systemd's layout (docs/service.md): the example's rules land on the cgroups systemd makes.
TEST(Config, TheSystemdHostExampleFitsSystemdsSlices) {
  const Config config = loadConfigFile(std::string(OOMGUARD_SOURCE_DIR) + "/examples/systemd-host.json");
  EXPECT_EQ(config.mode, Mode::kAct);
  auto rule = [&](std::string_view path) { return ruleFor(config, path); };
  ASSERT_NE(rule("/system.slice/ssh.service"), nullptr);
  EXPECT_EQ(rule("/system.slice/ssh.service")->oom_score_adj, std::optional<int>(-998));
  EXPECT_EQ(rule("/system.slice/ssh.service")->preference, policies::Preference::kOmit);
  EXPECT_EQ(rule("/system.slice/systemd-journald.service")->oom_score_adj, std::optional<int>(-998));
  EXPECT_EQ(rule("/init.scope")->preference, policies::Preference::kOmit);
  for (const char* session : {"/user.slice", "/user.slice/user-1000.slice/session-3.scope",
                              "/user.slice/user-1000.slice/user@1000.service/app.slice/firefox.scope"}) {
    ASSERT_NE(rule(session), nullptr) << session;
    EXPECT_EQ(rule(session)->preference, policies::Preference::kPrefer) << session;
  }
  // Any other service: watched, its own limit acted on, no protection and no preference.
  const CgroupRule* other = rule("/system.slice/postgresql.service");
  ASSERT_NE(other, nullptr);
  EXPECT_FALSE(other->oom_score_adj.has_value());
  EXPECT_EQ(other->preference, policies::Preference::kNone);
  ASSERT_TRUE(other->act);
  EXPECT_EQ(other->act->action, policies::Action::kKillAllocating);
}

TEST(Config, NullTurnsThingsOff) {
  const Config config = parseConfig(R"({"host":{"pressure":null},"self":{"oom_score_adj":null},"history":null})", "t");
  EXPECT_FALSE(config.host_pressure.has_value());
  EXPECT_FALSE(config.self.oom_score_adj.has_value());
  EXPECT_FALSE(config.history.has_value());
}

TEST(Config, StartupPagesCanBeKept) {
  EXPECT_FALSE(parseConfig(R"({"self":{"release_startup_pages":false}})", "t").self.release_startup_pages);
}

TEST(Config, TheKillHistoryIsOnByDefaultUnderVarLib) {
  const Config defaults = parseConfig("{}", "t");
  ASSERT_TRUE(defaults.history);
  EXPECT_EQ(defaults.history->dir, "/var/lib/oomguard");
  EXPECT_EQ(defaults.history->max_bytes, 1024U * 1024U);
  const Config set = parseConfig(R"({"history":{"dir":"/srv/og","max_kib":64}})", "t");
  EXPECT_EQ(set.history->dir, "/srv/og");
  EXPECT_EQ(set.history->max_bytes, 64U * 1024U);
}

struct BadConfig {
  const char* name;
  const char* json;
  const char* error;  // the whole message must contain this
};

void PrintTo(const BadConfig& value, std::ostream* out) { *out << value.name; }

class ConfigErrors : public ::testing::TestWithParam<BadConfig> {};

TEST_P(ConfigErrors, NameThePathAndTheReason) {
  const std::string message = errorOf(GetParam().json);
  EXPECT_NE(message.find(GetParam().error), std::string::npos) << message;
  EXPECT_EQ(message.rfind("test.json", 0), 0U) << message;
}

INSTANTIATE_TEST_SUITE_P(
    Cases, ConfigErrors,
    ::testing::Values(
        BadConfig{"history_relative_dir", R"({"history":{"dir":"state"}})", "/history/dir: must be an absolute path"},
        BadConfig{"history_tiny", R"({"history":{"max_kib":8}})", "/history/max_kib: must be between 16 and 16384"},
        BadConfig{"history_unknown_key", R"({"history":{"path":"/x"}})", "/history/path: unknown key"},
        BadConfig{"stall_above_window",
                  R"({"cgroups":[{"match":"/a"},{"match":"/b"},{"match":"/c","pressure":{"stall_us":2000000,"window_ms":1000}}]})",
                  "/cgroups/2/pressure/stall_us: must be <= window_ms * 1000 (1000000), got 2000000"},
        BadConfig{"missing_match", R"({"cgroups":[{"watch_events":true}]})", "/cgroups/0/match: is required"},
        BadConfig{"relative_match", R"({"cgroups":[{"match":"kubepods"}]})", "/cgroups/0/match: must start with /"},
        BadConfig{"unknown_key", R"({"cgroups":[{"match":"/a","colour":"red"}]})", "/cgroups/0/colour: unknown key"},
        BadConfig{"unknown_top_key", R"({"refresh":5})", "/refresh: unknown key"},
        BadConfig{"memory_high_on_host",
                  R"({"host":{"act":{"action":"kill-worst","when":{"mem_available_below":0.1},"memory_high_at_threshold":true}}})",
                  "/host/act/memory_high_at_threshold: applies to cgroups"},
        BadConfig{"memory_high_without_headroom",
                  R"({"cgroups":[{"match":"/a","act":{"action":"kill-worst","when":{"on_memory_max":true},"memory_high_at_threshold":true}}]})",
                  "/cgroups/0/act/memory_high_at_threshold: needs when.headroom_below"},
        BadConfig{"memory_high_override_alone",
                  R"({"cgroups":[{"match":"/a","act":{"action":"kill-worst","when":{"headroom_below":0.1},"memory_high_override":true}}]})",
                  "/cgroups/0/act/memory_high_override: needs memory_high_at_threshold"},
        BadConfig{"memory_high_override_host",
                  R"({"host":{"act":{"action":"kill-worst","when":{"mem_available_below":0.1},"memory_high_override":true}}})",
                  "/host/act/memory_high_override: applies to cgroups"},
        BadConfig{"wrong_type", R"({"refresh_interval_s":"5"})", "/refresh_interval_s: must be a number, got string"},
        BadConfig{"out_of_range", R"({"refresh_interval_s":0})", "/refresh_interval_s: must be between 0.1 and 3600"},
        BadConfig{"window_range", R"({"host":{"pressure":{"window_ms":200}}})",
                  "/host/pressure/window_ms: must be between 500 and 10000, got 200"},
        BadConfig{"fraction_for_integer", R"({"host":{"pressure":{"stall_us":1.5}}})",
                  "/host/pressure/stall_us: must be an integer, got a fraction"},
        BadConfig{"bad_kind", R"({"host":{"pressure":{"kind":"most"}}})",
                  "/host/pressure/kind: must be one of \"some\", \"full\", got \"most\""},
        BadConfig{"bad_resource", R"({"host":{"pressure":{"resource":"disk"}}})", "/host/pressure/resource: must be one of"},
        BadConfig{"bad_mode", R"({"mode":"kill-worst"})", "/mode: must be one of \"observe\", \"act\", got \"kill-worst\""},
        BadConfig{"bad_listen", R"({"metrics":{"listen":"9743"}})", "/metrics/listen: must be ADDRESS:PORT"},
        BadConfig{"bad_port", R"({"metrics":{"listen":"0.0.0.0:99999"}})", "/metrics/listen: port must be 0..65535"},
        BadConfig{"adj_range", R"({"self":{"oom_score_adj":-1001}})", "/self/oom_score_adj: must be between -1000 and 1000"},
        BadConfig{"cgroups_not_array", R"({"cgroups":{}})", "/cgroups: must be an array, got object"},
        BadConfig{"root_not_object", R"([1,2])", "/: must be an object, got array"},
        BadConfig{"version", R"({"version":2})", "/version: must be between 1 and 1, got 2"},
        BadConfig{"syntax_error_line_column", "{\n  \"mode\": \"observe\",\n  \"refresh_interval_s\": ,\n}",
                  "test.json:3:25: syntax error"},
        BadConfig{"truncated", "{\"cgroups\": [", "test.json:1:"},
        BadConfig{"panic_needs_second_opt_in", R"({"host":{"act":{"action":"panic","when":{"mem_available_below":0.01}}}})",
                  "/host/act/action: \"panic\" needs the second opt-in /policy/allow_panic: true"},
        BadConfig{"act_without_when", R"({"cgroups":[{"match":"/a","act":{"action":"kill-worst"}}]})",
                  "/cgroups/0/act/when: is required for action \"kill-worst\""},
        BadConfig{"act_when_empty", R"({"cgroups":[{"match":"/a","act":{"action":"kill-worst","when":{}}}]})",
                  "/cgroups/0/act/when: names no condition"},
        BadConfig{"bad_protection_class", R"({"cgroups":[{"match":"/a","protection":"vip"}]})",
                  "/cgroups/0/protection: must be critical, high, normal, low, sacrificial or an oom_score_adj"},
        BadConfig{"protection_range", R"({"cgroups":[{"match":"/a","protection":-2000}]})",
                  "/cgroups/0/protection: must be between -1000 and 1000"},
        BadConfig{"host_floor_on_cgroup", R"({"cgroups":[{"match":"/a","act":{"action":"kill-worst","when":{"mem_available_below":0.1}}}]})",
                  "/cgroups/0/act/when: mem_available_below and swap_free_below apply to the host only"},
        BadConfig{"headroom_on_host", R"({"host":{"act":{"action":"kill-worst","when":{"headroom_below":0.1}}}})",
                  "/host/act/when/headroom_below: applies to cgroups"},
        BadConfig{"unknown_sysctl", R"({"sysctls":{"values":{"vm.swappiness":10}}})", "/sysctls/values/vm.swappiness: unknown key"},
        BadConfig{"sysctl_range", R"({"sysctls":{"values":{"vm.panic_on_oom":3}}})",
                  "/sysctls/values/vm.panic_on_oom: must be between 0 and 2, got 3"},
        BadConfig{"bad_preference", R"({"cgroups":[{"match":"/a","preference":"never"}]})", "/cgroups/0/preference: must be one of"},
        BadConfig{"bad_action", R"({"host":{"act":{"action":"reboot"}}})", "/host/act/action: must be one of"},
        // A number beyond a double once escaped as a raw library error (exit 1) and stopped the daemon
        // on a reload; a repeated key was silently "last one wins".
        BadConfig{"number_overflow", R"({"refresh_interval_s":1e400})",
                  "test.json: /refresh_interval_s: number 1e400 is beyond the range of a double"},
        BadConfig{"number_overflow_in_array", R"({"cgroups":[{"match":"/a"},{"match":"/b","protection":-1e999}]})",
                  "/cgroups/1/protection: number -1e999 is beyond the range of a double"},
        BadConfig{"number_overflow_array_element", R"({"x":[1,2,1e400]})", "/x/2: number 1e400"},
        BadConfig{"duplicate_key", R"({"mode":"act","mode":"observe"})", "test.json: /mode: duplicate key"},
        BadConfig{"duplicate_nested_key", R"({"cgroups":[{"match":"/a"},{"match":"/b","act":{"action":"kill-worst","action":"panic"}}]})",
                  "/cgroups/1/act/action: duplicate key"},
        BadConfig{"pointer_escapes", R"({"a/b~c":{"k":1,"k":2}})", "/a~1b~0c/k: duplicate key"},
        BadConfig{"too_deep", "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]",
                  "nested deeper than 64 levels"},
        BadConfig{"bad_listen_octet", R"({"metrics":{"listen":"256.0.0.0:18090"}})",
                  "/metrics/listen: address must be a numeric IPv4 address"},
        BadConfig{"listen_host_name", R"({"metrics":{"listen":"localhost:9743"}})",
                  "/metrics/listen: address must be a numeric IPv4 address"},
        BadConfig{"bad_api_server", R"({"kubernetes":{"api_server":"https://api.example:0"}})",
                  "/kubernetes/api_server: port must be 1..65535"},
        BadConfig{"both_wait_names", R"({"policy":{"cooldown_s":5,"victim_wait_s":2}})",
                  "/policy/cooldown_s: give victim_wait_s only"},
        BadConfig{"pressure_ratio_range", R"({"host":{"act":{"action":"kill-worst","when":{"pressure":{"avg10":20}}}}})",
                  "/host/act/when/pressure/avg10: must be between 0 and 1"}),
    [](const auto& test_info) { return std::string(test_info.param.name); });

TEST(Config, ActRulesAndProtections) {
  const Config config = parseConfig(R"({"mode": "act",
    "policy": {"cooldown_s": 5, "max_kills_per_minute": 3, "trend_window_s": 20, "allow_panic": true},
    "host": {"act": {"action": "panic", "when": {"mem_available_below": 0.02, "pressure": {"kind": "full", "avg10": 0.5, "held_s": 3}}}},
    "cgroups": [{"match": "/k/**", "protection": "critical", "oom_group": true, "preference": "avoid",
                 "act": {"action": "kill-allocating", "sigterm_grace_ms": 500, "when": {"headroom_below": 0.05, "on_memory_max": true}}},
                {"match": "/batch/*", "protection": 700}]})",
                                    "t");
  EXPECT_EQ(config.mode, Mode::kAct);
  EXPECT_DOUBLE_EQ(config.victim_wait_s, 5) << "cooldown_s is victim_wait_s's old name";
  EXPECT_TRUE(config.panic_allowed);
  ASSERT_TRUE(config.host_act);
  EXPECT_EQ(config.host_act->action, policies::Action::kPanic);
  EXPECT_EQ(config.host_act->when.pressure_held_us, 3000000U);
  EXPECT_EQ(config.host_act->when.pressure_kind, std::optional<std::string>("full"));
  const auto& k = config.cgroups[0];
  EXPECT_EQ(k.oom_score_adj, std::optional<int>(-998));
  EXPECT_EQ(k.oom_group, std::optional<bool>(true));
  EXPECT_EQ(k.preference, policies::Preference::kAvoid);
  ASSERT_TRUE(k.act);
  EXPECT_EQ(k.act->action, policies::Action::kKillAllocating);
  EXPECT_EQ(k.act->sigterm_grace_ms, 500U);
  EXPECT_TRUE(k.act->when.on_memory_max);
  EXPECT_EQ(config.cgroups[1].oom_score_adj, std::optional<int>(700));
  EXPECT_FALSE(config.cgroups[1].oom_group.has_value());
}

TEST(Config, Sysctls) {
  const Config config =
      parseConfig(R"({"sysctls": {"values": {"vm.panic_on_oom": 0, "kernel.panic": 10}, "enforce": true}})", "t");
  EXPECT_EQ(config.sysctls.at("vm.panic_on_oom"), 0);
  EXPECT_EQ(config.sysctls.at("kernel.panic"), 10);
  EXPECT_TRUE(config.enforce_sysctls);
}

TEST(CgroupGlob, SegmentsAndDoubleStar) {
  EXPECT_TRUE(cgroupMatches("/**", "/"));
  EXPECT_TRUE(cgroupMatches("/**", "/a/b/c"));
  EXPECT_TRUE(cgroupMatches("/", "/"));
  EXPECT_FALSE(cgroupMatches("/", "/a"));
  EXPECT_TRUE(cgroupMatches("/kubepods.slice/**", "/kubepods.slice"));
  EXPECT_TRUE(cgroupMatches("/kubepods.slice/**", "/kubepods.slice/kubepods-burstable.slice/x.scope"));
  EXPECT_FALSE(cgroupMatches("/kubepods.slice/**", "/kubepods.slicex"));
  EXPECT_TRUE(cgroupMatches("/system.slice/*.service", "/system.slice/ssh.service"));
  EXPECT_FALSE(cgroupMatches("/system.slice/*.service", "/system.slice/ssh.service/child"));
  EXPECT_FALSE(cgroupMatches("/system.slice/*.service", "/system.slice/ssh.socket"));
  EXPECT_TRUE(cgroupMatches("/a/**/leaf", "/a/leaf"));
  EXPECT_TRUE(cgroupMatches("/a/**/leaf", "/a/x/y/leaf"));
  EXPECT_FALSE(cgroupMatches("/a/**/leaf", "/a/x/y/leaf2"));
  EXPECT_TRUE(cgroupMatches("/pod*/c?", "/pod123/c?"));
  EXPECT_TRUE(cgroupMatches("/*", "/anything"));
  EXPECT_FALSE(cgroupMatches("/*", "/"));
}

TEST(CgroupGlob, ManyDoubleStarsOnADeepTreeStayFast) {
  // 40 "**" against a 12-deep path: the backtracking matcher this replaced took exponential time here
  // (20 of them delayed start-up by 8.6 s; 40 never finished). The segment DP does 41 x 13 steps.
  std::string pattern;
  for (int i = 0; i < 40; ++i) {
    pattern += "/**";
  }
  std::string deep;
  for (int i = 0; i < 12; ++i) {
    deep += "/level" + std::to_string(i);
  }
  EXPECT_FALSE(cgroupMatches(pattern + "/nowhere", deep));
  EXPECT_TRUE(cgroupMatches(pattern + "/level11", deep));
  EXPECT_TRUE(cgroupMatches(pattern, deep));
  // Stars within a segment: a long run of '*' against a long name with no match.
  const std::string stars(200, '*');
  EXPECT_FALSE(globMatch(stars + "x", std::string(5000, 'a')));
  EXPECT_TRUE(globMatch(stars + "a", std::string(5000, 'a')));
}

TEST(CgroupGlob, OneMatcherForCgroupsAndNamespaces) {
  EXPECT_TRUE(globMatch("team-?-prod", "team-b-prod"));
  EXPECT_FALSE(globMatch("team-?-prod", "team-bb-prod"));
  EXPECT_TRUE(cgroupMatches("/pods/team-?/**", "/pods/team-b/x"));
  EXPECT_TRUE(globMatch("", ""));
  EXPECT_FALSE(globMatch("", "x"));
  EXPECT_TRUE(globMatch("*", ""));
  // A '*' in the text is an ordinary character (found by fuzz_Glob: the namespace matcher took the
  // pattern's '*' as a literal when the text had one there).
  EXPECT_TRUE(globMatch("a*", "a*b"));
  EXPECT_TRUE(globMatch("/**/**/**", "/**/**/**/+/x"));
  EXPECT_FALSE(globMatch("a*c", "a*b"));
  // '/' has no meaning inside a segment pattern; pathGlobMatch splits first.
  EXPECT_FALSE(cgroupMatches("/a*", "/a/b"));
  EXPECT_TRUE(pathGlobMatch("a/**", "/a"));
  EXPECT_TRUE(pathGlobMatch("/**/b/**", "/a/b/c"));
  EXPECT_FALSE(pathGlobMatch("/**/b/**", "/a/c"));
}

TEST(ConfigFile, OnlyARegularFileOfBoundedSizeIsRead) {
  const std::string dir = ::testing::TempDir() + "oomguard-config-" + std::to_string(::getpid());
  ASSERT_EQ(::mkdir(dir.c_str(), 0700), 0);
  auto refusal = [](const std::string& path) {
    try {
      (void)loadConfigFile(path);
    } catch (const ConfigError& error) {
      return std::string(error.what());
    }
    return std::string("(loaded)");
  };
  // A FIFO with no writer once blocked check-config, run and the reload forever.
  const std::string fifo = dir + "/fifo.json";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  EXPECT_NE(refusal(fifo).find("not a regular file"), std::string::npos) << refusal(fifo);
  // /dev/zero once grew the daemon to 917 MB in a second.
  EXPECT_NE(refusal("/dev/zero").find("not a regular file"), std::string::npos);
  EXPECT_NE(refusal(dir).find("not a regular file"), std::string::npos);
  const std::string big = dir + "/big.json";
  {
    std::ofstream out(big);
    out << "{\"mode\": \"observe\"" << std::string(kMaxConfigBytes, ' ') << "}";
  }
  EXPECT_NE(refusal(big).find("a config may have at most 1048576 bytes"), std::string::npos) << refusal(big);
  const std::string good = dir + "/good.json";
  {
    std::ofstream out(good);
    out << R"({"mode": "act"})";
  }
  EXPECT_EQ(loadConfigFile(good).mode, Mode::kAct);
  EXPECT_NE(refusal(dir + "/missing.json").find("cannot open: No such file or directory"), std::string::npos);
  for (const auto& file : {fifo, big, good}) {
    ::unlink(file.c_str());
  }
  ::rmdir(dir.c_str());
}

TEST(CgroupGlob, FirstMatchingRuleWins) {
  const Config config = parseConfig(
      R"({"cgroups":[{"match":"/k/**","pressure":null},{"match":"/**","pressure":{"kind":"full"}}]})", "t");
  ASSERT_NE(ruleFor(config, "/k/pod"), nullptr);
  EXPECT_FALSE(ruleFor(config, "/k/pod")->pressure.has_value());
  EXPECT_EQ(ruleFor(config, "/other")->pressure->kind, "full");
  const Config none = parseConfig(R"({"cgroups":[]})", "t");
  EXPECT_EQ(ruleFor(none, "/x"), nullptr);
}

// /hooks: what is read, and what is refused with its JSON path.
TEST(ConfigHooks, NoneByDefault) {
  const Config config = parseConfig("{}", "t");
  EXPECT_FALSE(config.hooks.pre_kill);
  EXPECT_FALSE(config.hooks.post_kill);
  EXPECT_EQ(config.hooks.max_concurrent, 4U);
  EXPECT_EQ(config.hooks.max_per_minute, 30U);
  EXPECT_EQ(config.hooks.oom_score_adj, 1000);
}

TEST(ConfigHooks, EachStageWithItsDefaults) {
  const Config config = parseConfig(R"({"hooks": {
      "pre_kill": {"argv": ["/usr/local/bin/heap-dump", "--pid-from-env"], "max_output_bytes": 65536},
      "post_kill": {"argv": ["/usr/bin/logger", "-t", "oomguard"], "timeout_ms": 2000, "max_output_bytes": 0},
      "max_concurrent": 2, "max_per_minute": 10, "oom_score_adj": 500}})",
                                    "t");
  ASSERT_TRUE(config.hooks.pre_kill);
  EXPECT_EQ(config.hooks.pre_kill->argv, (std::vector<std::string>{"/usr/local/bin/heap-dump", "--pid-from-env"}));
  EXPECT_EQ(config.hooks.pre_kill->timeout_ms, 500U);  // short by default: the kill waits for it
  EXPECT_EQ(config.hooks.pre_kill->max_output_bytes, 65536U);
  ASSERT_TRUE(config.hooks.post_kill);
  EXPECT_EQ(config.hooks.post_kill->timeout_ms, 2000U);
  EXPECT_EQ(config.hooks.post_kill->max_output_bytes, 0U);
  EXPECT_EQ(config.hooks.post_kill->argv.size(), 3U);
  EXPECT_EQ(config.hooks.max_concurrent, 2U);
  EXPECT_EQ(config.hooks.max_per_minute, 10U);
  EXPECT_EQ(config.hooks.oom_score_adj, 500);
}

INSTANTIATE_TEST_SUITE_P(
    Hooks, ConfigErrors,
    ::testing::Values(
        BadConfig{"not_object", R"({"hooks":[]})", "/hooks: must be an object"},
        BadConfig{"unknown_stage", R"({"hooks":{"pre_oom":{"argv":["/bin/true"]}}})", "/hooks/pre_oom: unknown key"},
        BadConfig{"warn_too_long", R"({"hooks":{"warn":{"argv":["/bin/true"],"timeout_ms":600001}}})",
                "/hooks/warn/timeout_ms: must be between 10 and 600000"},
        BadConfig{"no_argv", R"({"hooks":{"pre_kill":{"timeout_ms":100}}})", "/hooks/pre_kill/argv: is required"},
        BadConfig{"empty_argv", R"({"hooks":{"post_kill":{"argv":[]}}})", "/hooks/post_kill/argv: must be a non-empty array"},
        BadConfig{"string_argv", R"({"hooks":{"post_kill":{"argv":"/bin/true"}}})", "/hooks/post_kill/argv: must be a non-empty array"},
        BadConfig{"relative", R"({"hooks":{"post_kill":{"argv":["notify-send","x"]}}})",
                "/hooks/post_kill/argv/0: must be an absolute path"},
        BadConfig{"shell_line", R"({"hooks":{"post_kill":{"argv":["rm -rf /tmp/x"]}}})",
                "/hooks/post_kill/argv/0: must be an absolute path"},
        BadConfig{"number_arg", R"({"hooks":{"post_kill":{"argv":["/bin/echo", 3]}}})",
                "/hooks/post_kill/argv/1: must be a string, got number"},
        BadConfig{"nul_arg", R"({"hooks":{"post_kill":{"argv":["/bin/echo", "a\u0000b"]}}})",
                "/hooks/post_kill/argv/1: holds a NUL byte"},
        BadConfig{"pre_kill_too_long", R"({"hooks":{"pre_kill":{"argv":["/bin/true"],"timeout_ms":5001}}})",
                "/hooks/pre_kill/timeout_ms: must be between 10 and 5000, got 5001"},
        BadConfig{"pre_kill_zero", R"({"hooks":{"pre_kill":{"argv":["/bin/true"],"timeout_ms":0}}})",
                "/hooks/pre_kill/timeout_ms: must be between 10 and 5000"},
        BadConfig{"output_too_big", R"({"hooks":{"post_kill":{"argv":["/bin/true"],"max_output_bytes":65537}}})",
                "/hooks/post_kill/max_output_bytes: must be between 0 and 65536"},
        BadConfig{"hook_unknown_key", R"({"hooks":{"post_kill":{"argv":["/bin/true"],"shell":true}}})",
                "/hooks/post_kill/shell: unknown key"},
        BadConfig{"no_concurrency", R"({"hooks":{"max_concurrent":0}})", "/hooks/max_concurrent: must be between 1 and 64"},
        BadConfig{"adj_out_of_range", R"({"hooks":{"oom_score_adj":1001}})",
                "/hooks/oom_score_adj: must be between -1000 and 1000"}));

// An act rule's warn stage: levels before the act levels, never the kernel's events.
TEST(ConfigWarn, LevelsBeforeTheActLevelsAndAnInterval) {
  const Config config = parseConfig(R"({"mode": "act",
      "host": {"act": {"action": "kill-worst", "when": {"mem_available_below": 0.05},
                       "warn": {"mem_available_below": 0.15, "pressure": {"avg10": 0.1}}}},
      "cgroups": [{"match": "/pods/**", "act": {"action": "observe", "warn": {"headroom_below": 0.2, "interval_s": 30}}}],
      "hooks": {"warn": {"argv": ["/usr/bin/logger", "-t", "oomguard-warn"]}}})",
                                    "t");
  ASSERT_TRUE(config.host_act && config.host_act->warn);
  EXPECT_EQ(config.host_act->warn->when.mem_available_below, 0.15);
  EXPECT_EQ(config.host_act->warn->when.pressure_avg10, 0.1);
  EXPECT_EQ(config.host_act->warn->interval_s, 300);  // the default
  EXPECT_FALSE(config.host_act->warn->when.on_memory_max);
  const CgroupRule* rule = ruleFor(config, "/pods/a");
  ASSERT_TRUE(rule != nullptr && rule->act && rule->act->warn);
  // action observe with a warn stage: warnings and nothing else.
  EXPECT_EQ(rule->act->action, policies::Action::kObserve);
  EXPECT_EQ(rule->act->warn->when.headroom_below, 0.2);
  EXPECT_EQ(rule->act->warn->interval_s, 30);
  ASSERT_TRUE(config.hooks.warn);
  EXPECT_EQ(config.hooks.warn->timeout_ms, 10000U);
}

INSTANTIATE_TEST_SUITE_P(
    Warn, ConfigErrors,
    ::testing::Values(
        BadConfig{"warn_after_act", R"({"host":{"act":{"action":"kill-worst","when":{"mem_available_below":0.1},
                  "warn":{"mem_available_below":0.05}}}})",
                  "/host/act/warn/mem_available_below: must be above when.mem_available_below (0.1)"},
        BadConfig{"warn_at_act", R"({"cgroups":[{"match":"/**","act":{"action":"kill-worst","when":{"headroom_below":0.1},
                  "warn":{"headroom_below":0.1}}}]})",
                  "/cgroups/0/act/warn/headroom_below: must be above when.headroom_below (0.1)"},
        BadConfig{"warn_pressure_after_act", R"({"host":{"act":{"action":"kill-worst","when":{"pressure":{"avg10":0.3}},
                  "warn":{"pressure":{"avg10":0.5}}}}})",
                  "/host/act/warn/pressure/avg10: must be below when.pressure.avg10 (0.3;"},
        BadConfig{"warn_held_longer", R"({"host":{"act":{"action":"kill-worst","when":{"pressure":{"avg10":0.3}},
                  "warn":{"pressure":{"avg10":0.1,"held_s":60}}}}})",
                  "/host/act/warn/pressure/held_s: must be at most when.pressure.held_s (0)"},
        BadConfig{"warn_on_event", R"({"cgroups":[{"match":"/**","act":{"action":"kill-worst","when":{"on_memory_max":true},
                  "warn":{"on_memory_max":true}}}]})",
                  "/cgroups/0/act/warn/on_memory_max: is not a warn level"},
        BadConfig{"warn_empty", R"({"host":{"act":{"action":"kill-worst","when":{"mem_available_below":0.1},"warn":{}}}})",
                  "/host/act/warn: names no level"},
        BadConfig{"warn_unknown", R"({"host":{"act":{"action":"kill-worst","when":{"mem_available_below":0.1},
                  "warn":{"mem_available_below":0.2,"email":"ops@example.com"}}}})",
                  "/host/act/warn/email: unknown key"},
        BadConfig{"warn_headroom_on_host", R"({"host":{"act":{"warn":{"headroom_below":0.2}}}})",
                  "/host/act/warn/headroom_below: applies to cgroups"},
        BadConfig{"warn_interval", R"({"host":{"act":{"warn":{"mem_available_below":0.2,"interval_s":0}}}})",
                  "/host/act/warn/interval_s: must be between 1 and 86400"},
        BadConfig{"warn_not_object", R"({"host":{"act":{"warn":0.2}}})", "/host/act/warn: must be an object"}));

TEST(ConfigHooks, TooManyArguments) {
  std::string argv = R"(["/bin/echo")";
  for (int i = 0; i < 64; ++i) {
    argv += R"(,"x")";
  }
  argv += "]";
  EXPECT_NE(errorOf(R"({"hooks":{"post_kill":{"argv":)" + argv + "}}}").find("/hooks/post_kill/argv: has more than 64 elements"),
            std::string::npos);
}

}  // namespace
}  // namespace oomguard::guardian::config
