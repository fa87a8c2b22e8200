#include "guardian/daemon/pods.hpp"

#include <algorithm>
#include <cerrno>
#include <cstdlib>

#include "cgroupfs/files.hpp"
#include "cgroupfs/parse.hpp"
#include "guardian/config/address.hpp"
#include "guardian/daemon/decision_log.hpp"
#include "guardian/kube_client/loader.hpp"
#include "guardian/text/format.hpp"
#include "policies/ranking.hpp"

namespace oomguard::guardian::daemon {
namespace {

using Json = nlohmann::ordered_json;

std::optional<std::string> environment(const char* name) {
  const char* value = std::getenv(name);  // NOLINT(concurrency-mt-unsafe): read at start-up, one thread
  return value == nullptr || *value == '\0' ? std::nullopt : std::optional<std::string>(value);
}

}  // namespace

Pods::Pods(boost::asio::io_context& io, io::Node& node, const config::Config& config, const io::NodeFacts& facts,
           io::EventLog& log, exporter::Metrics& metrics, Executor& executor, DaemonStats& stats, const Clock& clock,
           std::function<void()> request_refresh)
    : io_(io),
      node_(node),
      config_(config),
      facts_(facts),
      log_(log),
      metrics_(metrics),
      executor_(executor),
      stats_(stats),
      clock_(clock),
      request_refresh_(std::move(request_refresh)) {}

Pods::~Pods() { stop(); }

void Pods::tenantChanged() {
  if (!workloads_) {
    return;
  }
  for (const auto& uid : workloads_->setTenant(config_.kubernetes.tenant)) {
    if (const kube::KubePod* pod = workloads_->pod(uid)) {
      log_.write("pod_policy", Json{{"namespace", pod->namespace_name}, {"pod", pod->name}, {"uid", uid},
                                    {"policy", policyJson(uid)}, {"why", "config reload"}});
    }
  }
}

void Pods::start() {
  const auto& k8s = config_.kubernetes;
  if (!k8s.enabled) {
    status_ = "off (kubernetes.enabled: false)";
    return;
  }
  workloads_ =
      std::make_unique<kube::Workloads>(k8s.tenant, static_cast<int64_t>(facts_.meminfo.mem_total_kb * 1024));
  workloads_raw_ = workloads_.get();
  std::string node_name = k8s.node_name.empty() ? environment("NODE_NAME").value_or("") : k8s.node_name;
  if (node_name.empty()) {
    status_ =
        "unavailable: no node name (kubernetes.node_name, or $NODE_NAME from the downward API)";
    log_.write("kubernetes", Json{{"what", "unavailable"}, {"detail", status_}});
    return;
  }
  std::string why;
  std::optional<kube_client::KubeApiEndpoint> endpoint;
  if (k8s.api_server.empty()) {
    if (auto in_cluster = kube_client::inClusterEndpoint(environment, k8s.service_account_dir, node_name)) {
      endpoint = std::move(in_cluster).value();
    } else {
      why = in_cluster.error().message;
    }
  } else {
    kube_client::KubeApiEndpoint explicit_endpoint;
    if (const auto parsed = config::parseHttpsUrl(k8s.api_server)) {
      explicit_endpoint.host = parsed.value().host;
      explicit_endpoint.port = parsed.value().port;
      explicit_endpoint.ca_file = k8s.service_account_dir + "/ca.crt";
      explicit_endpoint.token_file = k8s.service_account_dir + "/token";
      explicit_endpoint.node_name = node_name;
      endpoint = explicit_endpoint;
    } else {
      why = "kubernetes.api_server " + parsed.error().message;
    }
  }
  if (!endpoint) {
    status_ = "unavailable: " + why;
    log_.write("kubernetes", Json{{"what", "unavailable"}, {"detail", status_}});
    return;
  }
  // The TLS client is a module, loaded only here: a node without Kubernetes never maps OpenSSL.
  const auto tls = kube_client::loadTlsClient();
  if (tls.client == nullptr) {
    status_ = "unavailable: the Kubernetes client module could not be loaded (" + tls.error + ")";
    log_.write("kubernetes", Json{{"what", "unavailable"}, {"detail", status_}});
    return;
  }
  pod_watch_ = tls.client->podWatch(
      io_, *endpoint, kube_client::PodWatchOptions{}, [this](const kube::PodChange& change) { onPodChange(change); },
      [this](const std::string& event, const std::string& detail) {
        // "what", not "event": a field named "event" would replace the line's own event name.
        log_.write("kubernetes", Json{{"what", event}, {"detail", detail}});
      });
  if (k8s.events) {
    pod_events_ = tls.client->eventRecorder(io_, *endpoint);
  }
  pod_watch_->start();
  status_ = "watching the pods of node " + node_name + " at " + endpoint->host + ":" +
                       std::to_string(endpoint->port) + (k8s.events ? ", Events on" : ", Events off") +
                       (k8s.annotations ? ", annotations applied" : ", annotations ignored");
}

void Pods::stop() {
  if (stopped_) {
    return;
  }
  stopped_ = true;
  for (auto& [uid, entry] : pressure_) {
    if (entry.watch) {
      entry.watch->close();
    }
  }
  if (pod_watch_) {
    pod_watch_->stop();
  }
  if (pod_events_) {
    pod_events_->stop();
  }
}

void Pods::onPodChange(const kube::PodChange& change) {
  if (stopped_ || !workloads_ || !pod_watch_) {
    return;
  }
  if (change.kind == kube::PodChange::Kind::kDeleted) {
    if (const kube::KubePod* gone = workloads_->pod(change.uid)) {
      metrics_.podGone(gone->namespace_name, gone->name, clock_.monotonic_us());
    }
    kernel_kill_events_.erase(change.uid);
    workloads_->erase(change.uid);
    return;
  }
  const kube::KubePod* pod = pod_watch_->find(change.uid);
  if (pod == nullptr) {
    return;
  }
  // A container named for the first time (or anew, after a restart) is where the pod's policy first
  // reaches the container's processes: as much a reason to apply protections as a changed policy.
  const kube::KubePod* before = workloads_->pod(change.uid);
  const bool containers_changed = before == nullptr || before->containers != pod->containers;
  const auto update = workloads_->upsert(*pod);
  if (!config_.kubernetes.annotations) {
    return;
  }
  auto report = [&](const std::vector<kube::AnnotationIssue>& issues, const char* kind, const char* reason) {
    for (const auto& issue : issues) {
      metrics_.countAnnotationIssue(pod->namespace_name, kind);
      log_.write("annotation_" + std::string(kind), Json{{"namespace", pod->namespace_name},
                                                         {"pod", pod->name},
                                                         {"key", issue.key},
                                                         {"value", issue.value},
                                                         {"reason", issue.reason}});
      reportEvent(*pod, reason,
                     "annotation " + issue.key + "=\"" + issue.value + "\" not applied: " + issue.reason);
    }
  };
  report(update.new_invalid, "invalid", "OomguardAnnotationInvalid");
  report(update.new_refused, "refused", "OomguardAnnotationRefused");
  if (update.policy_changed) {
    log_.write("pod_policy", Json{{"namespace", pod->namespace_name},
                                  {"pod", pod->name},
                                  {"uid", pod->uid},
                                  {"policy", policyJson(pod->uid)}});
  }
  const kube::WorkloadPolicy* policy = workloads_->policy(change.uid);
  if (update.policy_changed || (containers_changed && policy != nullptr && *policy != kube::WorkloadPolicy{})) {
    // Protections follow at once (mode act), one refresh for a burst of changes.
    if (config_.mode == config::Mode::kAct) {
      request_refresh_();
    }
  }
}

nlohmann::ordered_json Pods::policyJson(const std::string& uid) const {
  Json json = Json::object();
  const kube::KubePod* pod = workloads_ ? workloads_->pod(uid) : nullptr;
  if (pod == nullptr) {
    return json;
  }
  const kube::WorkloadPolicy* policy = workloads_->policy(uid);
  if (policy == nullptr) {
    return json;
  }
  json["protection"] = std::string(toString(policy->protection));
  json["preference"] = std::string(toString(policy->preference));
  if (policy->oom_score_adj) {
    json["oom_score_adj"] = *policy->oom_score_adj;
  }
  if (policy->oom_group) {
    json["oom_group"] = *policy->oom_group;
  }
  for (const auto& [container, group] : policy->container_oom_group) {
    json["container_oom_group"][container] = group;
  }
  if (policy->sigterm_grace_seconds) {
    json["sigterm_grace_seconds"] = *policy->sigterm_grace_seconds;
  }
  if (policy->pressure_limit) {
    json["pressure_limit"] = policy->pressure_limit->text();
  }
  return json;
}

void Pods::reportEvent(const kube::KubePod& pod, const std::string& reason, const std::string& message,
                       bool essential) {
  if (!pod_events_) {
    return;
  }
  pod_events_->report(kube_client::PodEventReport{pod.namespace_name, pod.name, pod.uid, "Warning", reason,
                                                  text::printable(message), essential});
}

void Pods::reportKernelKill(const std::string& cgroup, const std::string& message) {
  if (!workloads_ || cgroup.find("kubepods") == std::string::npos) {
    return;
  }
  const auto resolved = workloads_->resolve(cgroup);
  if (resolved.pod == nullptr) {
    return;
  }
  const uint64_t now_us = clock_.monotonic_us();
  auto [entry, first] = kernel_kill_events_.try_emplace(resolved.pod->uid, 0, 0);
  if (!first && now_us - std::min(now_us, entry->second.first) < kKernelKillEventGapUs) {
    ++entry->second.second;  // said by the next Event
    return;
  }
  std::string text = message;
  if (entry->second.second > 0) {
    text += " (and " + std::to_string(entry->second.second) + " more kernel OOM kills in this pod since the last Event)";
  }
  entry->second = {now_us, 0};
  reportEvent(*resolved.pod, "OomguardKernelOomKill", text, true);
}

kube::WorkloadLabels Pods::labelsOf(const std::string& cgroup) const {
  if (!workloads_ || cgroup.empty() || cgroup.find("kubepods") == std::string::npos) {
    return {};
  }
  return workloads_->resolve(cgroup).labels;
}

void Pods::publishStatus() {
  if (pod_watch_) {
    metrics_.setKubernetesPods(pod_watch_->status().synced, pod_watch_->pods().size());
  }
  if (pod_events_) {
    const auto& now = pod_events_->status();
    const std::pair<const char*, std::pair<uint64_t, uint64_t>> counts[] = {
        {"sent", {events_counted_.sent, now.sent}},
        {"failed", {events_counted_.failed, now.failed}},
        {"dropped", {events_counted_.dropped, now.dropped}}};
    for (const auto& [result, values] : counts) {
      if (values.second > values.first) {
        metrics_.countKubernetesEvents(result, values.second - values.first);
      }
    }
    events_counted_ = now;
  }
}


void Pods::reconcilePressure(const WatchSet& watch_set) {
  // Which pod cgroups should carry a pressure-limit trigger now: the pod is known, its policy has a
  // limit, and its cgroup is in the watch set.
  std::map<std::string, std::pair<std::string, kube::PressureLimit>> wanted;  // uid -> (pod cgroup, limit)
  if (workloads_ && config_.kubernetes.annotations && workloads_->podCount() > 0) {
    for (const auto& [path, watched] : watch_set.cgroups()) {
      if (path.find("kubepods") == std::string::npos) {
        continue;
      }
      const auto resolved = workloads_->resolve(path);
      if (resolved.identity.role == kube::KubeCgroupRole::kPod && resolved.policy != nullptr &&
          resolved.policy->pressure_limit) {
        wanted.emplace(resolved.identity.pod_uid, std::make_pair(path, *resolved.policy->pressure_limit));
      }
    }
  }
  // Limits refused for want of a descriptor are tried again, as many as there are free descriptors (the
  // rest would only be refused, and logged, again).
  size_t free_descriptors = node_.triggerBudget().free();
  for (auto it = pressure_.begin(); it != pressure_.end();) {
    const auto found = wanted.find(it->first);
    const bool retry = it->second.no_descriptor && free_descriptors > 0;
    free_descriptors -= retry ? 1 : 0;
    if (found == wanted.end() || found->second.first != it->second.cgroup ||
        !(found->second.second == it->second.limit) || retry) {
      if (it->second.watch) {
        it->second.watch->close();
      }
      it = pressure_.erase(it);
    } else {
      ++it;
    }
  }
  for (const auto& [uid, target] : wanted) {
    if (pressure_.contains(uid)) {
      continue;
    }
    const auto& [cgroup, limit] = target;
    // Up to 10 s the limit is one trigger; longer ones are followed over consecutive 10 s windows.
    const uint32_t window_s = std::min<uint32_t>(limit.duration_s, 10);
    config::PressureTrigger trigger;
    trigger.resource = "memory";
    trigger.kind = limit.kind == kube::PressureKind::kFull ? "full" : "some";
    trigger.window_ms = window_s * 1000ULL;
    trigger.stall_us = static_cast<uint64_t>(limit.percent / 100.0 * static_cast<double>(window_s) * 1e6);
    PodPressure entry{cgroup, limit, nullptr, 0, 0};
    const std::string file = node_.cgroupfs().directoryOf(cgroup) + "/memory.pressure";
    auto share = node_.triggerBudget().take();
    entry.no_descriptor = !share;
    auto watch = share ? io::PressureWatch::arm(
                             io_, file, trigger,
                             [this, uid = uid](bool gone, const std::string& text) { onPodPressure(uid, gone, text); },
                             std::move(share))
                       : cgroupfs::Result<std::shared_ptr<io::PressureWatch>>(cgroupfs::systemError(
                             EMFILE, file, "not armed: the open-file limit leaves no descriptor for another PSI trigger"));
    Json line{{"cgroup", cgroup}, {"limit", limit.text()}, {"trigger", trigger.triggerText()}};
    if (const kube::KubePod* pod = workloads_->pod(uid)) {
      line["namespace"] = pod->namespace_name;
      line["pod"] = pod->name;
    }
    if (watch) {
      entry.watch = std::move(watch).value();
      line["result"] = "armed";
      if (!entry.watch->adjustment().empty()) {
        line["adjusted"] = entry.watch->adjustment();
      }
    } else {
      line["result"] = "not_armed";
      line["error"] = watch.error().describe();
    }
    log_.write("pressure_limit", line);
    pressure_.emplace(uid, std::move(entry));  // kept when not armed too: tried once per limit
  }
}

void Pods::onPodPressure(const std::string& uid, bool gone, const std::string& text) {
  const auto found = pressure_.find(uid);
  if (stopped_ || found == pressure_.end() || !workloads_) {
    return;
  }
  auto& entry = found->second;
  if (gone) {
    entry.watch.reset();
    return;
  }
  const uint64_t now_us = clock_.monotonic_us();
  // A limit longer than the 10 s window holds once the trigger has fired in every window since the
  // streak began (a gap longer than a window and a bit ends the streak).
  constexpr uint64_t kWindowUs = 10'000'000;
  constexpr uint64_t kSlackUs = 2'000'000;
  if (entry.last_fire_us == 0 || now_us - entry.last_fire_us > kWindowUs + kSlackUs) {
    entry.first_fire_us = now_us;
  }
  entry.last_fire_us = now_us;
  const uint64_t duration_us = static_cast<uint64_t>(entry.limit.duration_s) * 1'000'000ULL;
  const bool held = duration_us <= kWindowUs || now_us - entry.first_fire_us + kWindowUs >= duration_us;
  const kube::KubePod* pod = workloads_->pod(uid);
  const kube::WorkloadPolicy* policy = workloads_->policy(uid);
  if (pod == nullptr || policy == nullptr) {
    return;
  }
  Json line{{"namespace", pod->namespace_name},
            {"pod", pod->name},
            {"cgroup", entry.cgroup},
            {"limit", entry.limit.text()},
            {"action", std::string(toString(policy->pressure_action))}};
  if (auto pressure = cgroupfs::parsePressure(text)) {
    line["some_avg10"] = pressure.value().some.avg10 / 100.0;
    if (pressure.value().full) {
      line["full_avg10"] = pressure.value().full->avg10 / 100.0;
    }
  }
  if (!held) {
    line["result"] = "not_yet_held";
    line["held_s"] = static_cast<double>(now_us - entry.first_fire_us + kWindowUs) / 1e6;
    log_.write("pod_pressure", line);
    return;
  }
  if (policy->pressure_action == kube::PressureAction::kObserve || config_.mode != config::Mode::kAct) {
    line["result"] = "observed";
    log_.write("pod_pressure", line);
    return;
  }
  if (auto refusal = executor_.gate().refusal(entry.cgroup, now_us, entry.cgroup)) {
    ++stats_.kills_held;
    line["result"] = "held";
    line["held_by"] = *refusal;
    log_.write("pod_pressure", line);
    return;
  }
  config::ActRule rule;
  rule.action = policies::Action::kKillWorst;
  policies::VictimCandidate victim;
  if (policy->pressure_action == kube::PressureAction::kKillGroup) {
    victim.cgroup = entry.cgroup;
    victim.group_kill_cgroup = entry.cgroup;
    line["chosen_because"] = "pressure-action kill-group: the whole pod";
  } else {
    auto ranking = node_.rankSubtreeOnHostScale(facts_, entry.cgroup);
    if (ranking) {
      // A read that failed (not a vanished process) may hide the pod's first candidate: no kill on it.
      if (auto failure = ranking.value().counters.firstFailure()) {
        ranking = std::move(*failure);
      }
    }
    if (!ranking) {
      ++stats_.kills_no_data;
      line["result"] = "no_data";
      line["error"] = ranking.error().describe();
      log_.write("pod_pressure", line);
      return;
    }
    const policies::OomDomain pod_domain{policies::DomainKind::kMemcg, entry.cgroup,
                                         ranking.value().domain.totalpages};
    std::vector<policies::VictimCandidate> candidates;
    for (const auto& ranked : ranking.value().candidates) {
      if (!ranked.killable) {
        break;
      }
      const auto& process = ranking.value().processOf(ranked);
      policies::VictimCandidate c;
      c.pid = process.pid;
      c.comm = process.status.comm;
      c.uid = process.status.uid;
      c.cgroup = process.cgroup.value_or(entry.cgroup);
      c.points = ranked.points;
      c.oom_score_adj = process.oom_score_adj;
      c.never_kill = executor_.neverKill().contains(process.pid);
      c.group_kill_cgroup = policies::oomGroupCgroup(c.cgroup, pod_domain, [this](std::string_view cgroup) {
        return node_.readOomGroup(cgroup);
      });
      candidates.push_back(std::move(c));
    }
    const auto choice = policies::chooseVictim(policies::Action::kKillWorst, candidates);
    if (!choice.victim) {
      line["result"] = "no_victim";
      line["why"] = choice.reason;
      log_.write("pod_pressure", line);
      return;
    }
    victim = *choice.victim;
    line["chosen_because"] = choice.reason;
  }
  policies::Outcome outcome;
  executor_.kill(entry.cgroup, victim, rule, kPodPressureReason, now_us, outcome);
  DecisionLog::appendOutcome(outcome, line);
  log_.write("pod_pressure", line);
}

}  // namespace oomguard::guardian::daemon
