// oomguard's metrics endpoint for real: `oomguard run` on this machine's cgroup2 mount serves /metrics on
// a free loopback port; promtool lints the live exposition; Debian's `prometheus` server, run here as a
// child process on loopback with a temporary storage directory, scrapes it, evaluates the alerting rules
// of monitoring/ against it, and answers every query of the Grafana dashboard. Nothing is installed and
// nothing system-wide is started; every wait is bounded and every process and file is removed after.
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>

#include "common/run_command.hpp"
#include "common/loopback_http.hpp"
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cctype>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace oomguard::testing {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

constexpr const char* kUnified = "/sys/fs/cgroup/unified";

std::string readFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

void writeFile(const fs::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
}

// An executable on PATH, or nothing.
std::optional<std::string> which(const std::string& name) {
  const char* path = std::getenv("PATH");
  std::stringstream dirs(path != nullptr ? path : "/usr/bin:/bin");
  std::string dir;
  while (std::getline(dirs, dir, ':')) {
    const std::string candidate = dir + "/" + name;
    if (::access(candidate.c_str(), X_OK) == 0) {
      return candidate;
    }
  }
  return std::nullopt;
}

// A TCP port that was free on loopback a moment ago.
int freePort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof address;
  int port = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) == 0) {
    port = ntohs(address.sin_port);
  }
  ::close(fd);
  return port;
}

// One request to 127.0.0.1, within 10 s.
HttpExchange http(int port, const std::string& method, const std::string& target) {
  return httpExchange(port, method, target, 10);
}

std::string urlEncode(const std::string& text) {
  static const char* hex = "0123456789ABCDEF";
  std::string out;
  for (const unsigned char c : text) {
    if (std::isalnum(c) != 0 || c == '-' || c == '_' || c == '.' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      out += {'%', hex[c >> 4], hex[c & 15]};
    }
  }
  return out;
}

// A child process with stdout and stderr in a file; killed (TERM, then KILL) when it goes out of scope.
class Child {
 public:
  Child(const std::vector<std::string>& args, const fs::path& log) : log_(log) {
    pid_ = ::fork();
    if (pid_ == 0) {
      const int out = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
      ::dup2(out, STDOUT_FILENO);
      ::dup2(out, STDERR_FILENO);
      const int null = ::open("/dev/null", O_RDONLY);
      ::dup2(null, STDIN_FILENO);
      execArgs(args);
    }
  }
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;
  ~Child() { stop(5s); }

  // SIGTERM, then SIGKILL after `grace`; returns the exit status (128 + signal when killed by one).
  int stop(std::chrono::milliseconds grace) {
    if (pid_ <= 0 || status_) {
      return status_.value_or(-1);
    }
    ::kill(pid_, SIGTERM);
    if (auto status = wait(grace)) {
      return *status;
    }
    ::kill(pid_, SIGKILL);
    return wait(5s).value_or(-1);
  }

  std::optional<int> wait(std::chrono::milliseconds timeout) {
    const auto deadline = Clock::now() + timeout;
    while (!status_ && Clock::now() < deadline) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        status_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      } else {
        std::this_thread::sleep_for(10ms);
      }
    }
    return status_;
  }

  [[nodiscard]] bool running() { return !wait(0ms).has_value(); }
  [[nodiscard]] std::string output() const { return readFile(log_); }

 private:
  pid_t pid_ = -1;
  fs::path log_;
  std::optional<int> status_;
};

// Polls `attempt` every 200 ms until it returns true or `timeout` passes.
bool eventually(std::chrono::milliseconds timeout, const std::function<bool()>& attempt) {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    if (attempt()) {
      return true;
    }
    if (Clock::now() >= deadline) {
      return false;
    }
    std::this_thread::sleep_for(200ms);
  }
}

// Runs `program` with `input` on stdin; returns its exit status and output (stdout + stderr).
std::pair<int, std::string> runWithInput(const std::vector<std::string>& args, const std::string& input,
                                         const fs::path& scratch) {
  const fs::path in = scratch / "stdin";
  const fs::path out = scratch / "stdout";
  writeFile(in, input);
  const pid_t pid = ::fork();
  if (pid == 0) {
    const int input_fd = ::open(in.c_str(), O_RDONLY);
    const int output_fd = ::open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ::dup2(input_fd, STDIN_FILENO);
    ::dup2(output_fd, STDOUT_FILENO);
    ::dup2(output_fd, STDERR_FILENO);
    std::vector<char*> argv;
    for (const auto& arg : args) {
      argv.push_back(const_cast<char*>(arg.c_str()));
    }
    argv.push_back(nullptr);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  int status = 0;
  const auto deadline = Clock::now() + 60s;
  while (::waitpid(pid, &status, WNOHANG) != pid) {
    if (Clock::now() > deadline) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      return {-1, "timed out\n" + readFile(out)};
    }
    std::this_thread::sleep_for(10ms);
  }
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, readFile(out)};
}

// The metric families a text exposition declares (# TYPE lines), with their types.
std::map<std::string, std::string> familiesOf(const std::string& exposition) {
  std::map<std::string, std::string> families;
  std::istringstream lines(exposition);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.rfind("# TYPE ", 0) == 0) {
      std::istringstream fields(line.substr(7));
      std::string name;
      std::string type;
      fields >> name >> type;
      families[name] = type;
    }
  }
  return families;
}

// The oomguard_* names a text uses, each mapped to the family it belongs to (histogram suffixes off).
std::set<std::string> metricNamesIn(const std::string& text) {
  std::set<std::string> names;
  static const std::regex name(R"(\boomguard_[a-z0-9_]+)");
  for (auto it = std::sregex_iterator(text.begin(), text.end(), name); it != std::sregex_iterator(); ++it) {
    names.insert(it->str());
  }
  return names;
}

bool exported(const std::string& name, const std::map<std::string, std::string>& families) {
  if (families.contains(name)) {
    return true;
  }
  for (const char* suffix : {"_bucket", "_sum", "_count"}) {
    const std::string s(suffix);
    if (name.size() > s.size() && name.ends_with(s)) {
      const auto base = families.find(name.substr(0, name.size() - s.size()));
      if (base != families.end() && base->second == "histogram") {
        return true;
      }
    }
  }
  return false;
}

// Grafana's variables in a dashboard query, replaced by what makes it a plain PromQL query here.
std::string expandGrafanaVariables(std::string expr) {
  const std::vector<std::pair<std::string, std::string>> variables = {
      {"$__rate_interval", "1m"}, {"$__interval", "15s"}, {"$__range", "5m"},    {"$instance", ".*"},
      {"$domain", ".*"},          {"$cgroup", ".*"},      {"$ranking", "kernel"}};
  for (const auto& [variable, value] : variables) {
    for (size_t at = expr.find(variable); at != std::string::npos;
         at = expr.find(variable, at + value.size())) {
      expr.replace(at, variable.size(), value);
    }
  }
  return expr;
}

// Every "expr" and variable query of the dashboard.
void collectQueries(const Json& node, std::vector<std::string>& exprs) {
  if (node.is_object()) {
    for (const auto& [key, value] : node.items()) {
      if ((key == "expr" || key == "definition") && value.is_string()) {
        exprs.push_back(value.get<std::string>());
      } else {
        collectQueries(value, exprs);
      }
    }
  } else if (node.is_array()) {
    for (const auto& item : node) {
      collectQueries(item, exprs);
    }
  }
}

class PrometheusEndToEnd : public ::testing::Test {
 protected:
  fs::path scratch;
  int port = 0;
  std::unique_ptr<Child> daemon;
  std::string exposition;  // a live scrape of /metrics

  void SetUp() override {
    if (::access((std::string(kUnified) + "/cgroup.procs").c_str(), R_OK) != 0) {
      GTEST_SKIP() << "SKIPPED: no cgroup2 mount at " << kUnified << " for oomguard run";
    }
    char pattern[] = "/tmp/oomguard-prometheus-XXXXXX";
    ASSERT_NE(::mkdtemp(pattern), nullptr);
    scratch = pattern;
    writeFile(
        scratch / "oomguard.json",
        R"({"refresh_interval_s": 1, "read_kmsg": false, "history": null, "self": {"oom_score_adj": null, "mlock": false},
                  "host": {"pressure": null}})");
    port = freePort();
    ASSERT_GT(port, 0);
    daemon = std::make_unique<Child>(
        std::vector<std::string>{OOMGUARD_BINARY, "--cgroup-root", kUnified, "run", "--config",
                                 (scratch / "oomguard.json").string(), "--metrics-listen",
                                 "127.0.0.1:" + std::to_string(port)},
        scratch / "oomguard.log");
    // Ready when /metrics shows the host's ranking (the first refresh is done).
    const bool ready = eventually(20s, [&] {
      const auto scrape = http(port, "GET", "/metrics");
      if (scrape.status == 200 && scrape.body.find("oomguard_victim_rank{") != std::string::npos) {
        exposition = scrape.body;
        return true;
      }
      return !daemon->running();
    });
    ASSERT_TRUE(ready && !exposition.empty()) << "oomguard did not serve its ranking within 20 s:\n"
                                              << daemon->output();
  }

  void TearDown() override {
    if (daemon) {
      EXPECT_EQ(daemon->stop(5s), 0) << daemon->output();
      daemon.reset();
    }
    if (!scratch.empty()) {
      std::error_code ignored;
      fs::remove_all(scratch, ignored);
    }
  }
};

TEST_F(PrometheusEndToEnd, LiveMetricsPassPromtoolCheckMetrics) {
  const auto promtool = which("promtool");
  if (!promtool) {
    GTEST_SKIP() << "SKIPPED: promtool not found (Debian package prometheus; scripts/install-deps.sh test)";
  }
  const auto [status, output] = runWithInput({*promtool, "check", "metrics"}, exposition, scratch);
  EXPECT_EQ(status, 0) << "promtool check metrics:\n" << output;
  EXPECT_EQ(output, "") << "promtool has remarks:\n" << output;
  const auto families = familiesOf(exposition);
  for (const char* name :
       {"oomguard_victim_rank", "oomguard_victim_points", "oomguard_victim_oom_score",
        "oomguard_memory_events_total", "oomguard_pressure_waiting_seconds_total",
        "oomguard_pressure_stalled_seconds_total", "oomguard_pressure_ratio", "oomguard_kills_total",
        "oomguard_kernel_oom_kills_total", "oomguard_predictions_total", "oomguard_scan_duration_seconds",
        "oomguard_reaction_seconds", "oomguard_sysctl_drift", "oomguard_build_info"}) {
    EXPECT_TRUE(families.contains(name)) << name;
  }
  EXPECT_NE(exposition.find("domain=\"host\""), std::string::npos);
  EXPECT_NE(exposition.find("oomguard_pressure_ratio{cgroup=\"/\""), std::string::npos) << "the host's PSI";
}

TEST_F(PrometheusEndToEnd, ServesOnlyMetricsAndHealthz) {
  const auto health = http(port, "GET", "/healthz");
  EXPECT_EQ(health.status, 200);
  EXPECT_EQ(health.body, "ok");
  EXPECT_EQ(http(port, "GET", "/other").status, 404);
  EXPECT_EQ(http(port, "GET", "/").status, 404);
  EXPECT_EQ(http(port, "GET", "/metrics/extra").status, 404);
  EXPECT_EQ(http(port, "POST", "/metrics").status, 405);
  EXPECT_EQ(http(port, "GET", "/metrics").status, 200);
}

TEST_F(PrometheusEndToEnd, DashboardUsesOnlyExportedMetrics) {
  const Json dashboard =
      Json::parse(readFile(fs::path(OOMGUARD_SOURCE_DIR) / "monitoring/grafana-dashboard.json"));
  std::vector<std::string> queries;
  collectQueries(dashboard, queries);
  ASSERT_GE(queries.size(), 10U);
  std::string all;
  for (const auto& query : queries) {
    all += query + "\n";
  }
  const auto names = metricNamesIn(all);
  ASSERT_GE(names.size(), 10U) << all;
  const auto families = familiesOf(exposition);
  for (const auto& name : names) {
    EXPECT_TRUE(exported(name, families))
        << "the dashboard queries " << name << ", which oomguard does not export";
  }
  for (const auto& name :
       metricNamesIn(readFile(fs::path(OOMGUARD_SOURCE_DIR) / "monitoring/oomguard.rules.yml"))) {
    EXPECT_TRUE(exported(name, families))
        << "an alerting rule uses " << name << ", which oomguard does not export";
  }
  // Every panel has a unique id, a grid position, and a query against the dashboard's data source.
  std::set<int> ids;
  for (const auto& panel : dashboard.at("panels")) {
    EXPECT_TRUE(ids.insert(panel.at("id").get<int>()).second) << "duplicate panel id " << panel.at("id");
    EXPECT_TRUE(panel.contains("gridPos"));
    if (panel.at("type") != "row") {
      EXPECT_EQ(panel.at("datasource").at("uid"), "${datasource}") << panel.at("title");
      EXPECT_FALSE(panel.at("targets").empty()) << panel.at("title");
    }
  }
}

TEST_F(PrometheusEndToEnd, ARealPrometheusScrapesItEvaluatesTheRulesAndAnswersTheDashboard) {
  const auto prometheus = which("prometheus");
  if (!prometheus) {
    GTEST_SKIP() << "SKIPPED: prometheus not found (Debian package prometheus; scripts/install-deps.sh test)";
  }
  const int web_port = freePort();
  ASSERT_GT(web_port, 0);
  const fs::path rules = fs::path(OOMGUARD_SOURCE_DIR) / "monitoring/oomguard.rules.yml";
  writeFile(scratch / "prometheus.yml",
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            "rule_files:\n  - " +
                rules.string() +
                "\n"
                "scrape_configs:\n  - job_name: oomguard\n    static_configs:\n"
                "      - targets: ['127.0.0.1:" +
                std::to_string(port) + "']\n");
  fs::create_directory(scratch / "data");
  Child server({*prometheus, "--config.file=" + (scratch / "prometheus.yml").string(),
                "--storage.tsdb.path=" + (scratch / "data").string(),
                "--web.listen-address=127.0.0.1:" + std::to_string(web_port), "--log.level=warn"},
               scratch / "prometheus.log");
  ASSERT_TRUE(
      eventually(60s, [&] { return http(web_port, "GET", "/-/ready").status == 200 || !server.running(); }) &&
      server.running())
      << "prometheus did not become ready within 60 s:\n"
      << server.output();

  auto query = [&](const std::string& promql) {
    const auto response = http(web_port, "GET", "/api/v1/query?query=" + urlEncode(promql));
    Json parsed = Json::parse(response.body, nullptr, false);
    return parsed.is_discarded() ? Json{{"status", "unparsable"}, {"body", response.body}} : parsed;
  };
  auto results = [&](const std::string& promql) {
    const Json answer = query(promql);
    return answer.value("status", "") == "success" ? answer.at("data").at("result") : Json::array();
  };

  // A scrape has landed: build_info, then the host's ranking, both rankings.
  ASSERT_TRUE(eventually(30s, [&] { return !results("oomguard_build_info").empty(); }))
      << "no oomguard_build_info in prometheus within 30 s:\n"
      << server.output();
  const Json build = results("oomguard_build_info");
  ASSERT_EQ(build.size(), 1U);
  EXPECT_EQ(build[0].at("metric").at("job"), "oomguard");
  EXPECT_EQ(build[0].at("value")[1], "1");
  EXPECT_FALSE(build[0].at("metric").value("version", "").empty());
  EXPECT_FALSE(build[0].at("metric").value("kernel", "").empty());
  EXPECT_EQ(results("up{job=\"oomguard\"} == 1").size(), 1U);

  const Json first = results("oomguard_victim_rank{domain=\"host\", rank=\"1\"}");
  ASSERT_EQ(first.size(), 2U) << "rank 1 of the host, in the kernel's and oomguard's ranking: "
                              << first.dump();
  std::set<std::string> rankings;
  for (const auto& series : first) {
    rankings.insert(series.at("metric").at("ranking").get<std::string>());
    EXPECT_EQ(series.at("value")[1], "1");
    EXPECT_FALSE(series.at("metric").value("comm", "").empty());
  }
  EXPECT_EQ(rankings, (std::set<std::string>{"kernel", "oomguard"}));
  const Json ranked = results("oomguard_victim_rank{domain=\"host\", ranking=\"kernel\"}");
  EXPECT_GE(ranked.size(), 2U);
  EXPECT_LE(ranked.size(), 10U) << "top K = 10 by default";

  // The alerting rules load and evaluate against the live series without errors.
  Json groups;
  ASSERT_TRUE(eventually(30s,
                         [&] {
                           const Json answer =
                               Json::parse(http(web_port, "GET", "/api/v1/rules").body, nullptr, false);
                           if (answer.is_discarded() || answer.value("status", "") != "success") {
                             return false;
                           }
                           groups = answer.at("data").at("groups");
                           for (const auto& group : groups) {
                             for (const auto& rule : group.at("rules")) {
                               if (rule.value("lastEvaluation", "").rfind("0001-", 0) == 0) {
                                 return false;  // not evaluated yet
                               }
                             }
                           }
                           return !groups.empty();
                         }))
      << "the rules were not all evaluated within 30 s: " << groups.dump();
  std::set<std::string> alerts;
  for (const auto& group : groups) {
    for (const auto& rule : group.at("rules")) {
      alerts.insert(rule.at("name").get<std::string>());
      EXPECT_EQ(rule.value("health", ""), "ok") << rule.at("name") << ": " << rule.value("lastError", "");
    }
  }
  EXPECT_EQ(alerts, (std::set<std::string>{"OomguardNextVictimOutOfHeadroom", "OomguardKilled",
                                           "OomguardKernelOomKill", "OomguardPredictionMismatch",
                                           "OomguardMemoryPressureStalled", "OomguardDown", "OomguardAbsent",
                                           "OomguardSysctlDrift", "OomguardWorkloadOomKilled", "OomguardOomForecast"}));
  // Nothing is wrong on this machine: no alert of oomguard's fires (Down and Absent included).
  EXPECT_TRUE(results("ALERTS{alertname=~\"Oomguard.*\", alertstate=\"firing\"}").empty());

  // Every dashboard query is valid PromQL here; the variable queries find their values.
  const Json dashboard =
      Json::parse(readFile(fs::path(OOMGUARD_SOURCE_DIR) / "monitoring/grafana-dashboard.json"));
  std::vector<std::string> queries;
  collectQueries(dashboard, queries);
  static const std::regex label_values(R"(^label_values\((.*), *([a-z_]+)\)$)");
  for (const auto& raw : queries) {
    const std::string expr = expandGrafanaVariables(raw);
    std::smatch match;
    if (std::regex_match(expr, match, label_values)) {
      const auto response =
          http(web_port, "GET",
               "/api/v1/label/" + match[2].str() + "/values?match[]=" + urlEncode(match[1].str()));
      const Json answer = Json::parse(response.body, nullptr, false);
      ASSERT_FALSE(answer.is_discarded()) << raw;
      EXPECT_EQ(answer.value("status", ""), "success") << raw << ": " << response.body;
      if (match[2] == "instance" || match[2] == "domain" || match[2] == "cgroup") {
        EXPECT_FALSE(answer.at("data").empty()) << raw << " finds no value";
      }
      continue;
    }
    const Json answer = query(expr);
    EXPECT_EQ(answer.value("status", ""), "success") << raw << "\n -> " << answer.dump();
  }

  EXPECT_EQ(server.stop(10s), 0) << server.output();
}

}  // namespace
}  // namespace oomguard::testing
