// PodWatch's list and watch (pod_watch_impl.hpp): their responses, parsed into the cache and announced.
#include "guardian/kube_tls/pod_watch_impl.hpp"

#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "guardian/kube/pod.hpp"
#include "guardian/kube_client/api_text.hpp"
#include "guardian/kube_tls/https_exchange.hpp"

namespace oomguard::guardian::kube_tls {

namespace {

// Caps on what a misbehaving server can make the daemon hold in memory.
constexpr size_t kMaxWatchLineBytes = kube_client::kMaxObjectBytes;  // one watch event: one pod object

}  // namespace

// --- list ---

void PodWatch::Impl::beginList(const std::string& continue_token) {
  if (continue_token.empty()) {
    listed_.clear();
    need_list_ = true;
  }
  std::string target = "/api/v1/pods?" + selectorQuery();
  if (page_limit_ > 0) {
    target += "&limit=" + std::to_string(page_limit_);
  }
  if (!continue_token.empty()) {
    target += "&continue=" + percentEncode(continue_token);
  }
  send(target, false, &Impl::onListEnd);
}

void PodWatch::Impl::onListEnd(const std::string& error) {
  if (!error.empty()) {
    retryAfterFailure("list: " + error);
    return;
  }
  if (response_status_ != 200) {
    httpFailure("list", response_status_);
    return;
  }
  const Json list = kube_client::parsePodJson(response_body_);
  release(response_body_);
  const Json* items = member(list, "items");
  const Json& metadata = objectMember(list, "metadata");
  const std::string resource_version = stringMember(metadata, "resourceVersion");
  if (list.is_discarded() || (items != nullptr && !items->is_array() && !items->is_null()) ||
      resource_version.empty()) {
    retryAfterFailure("list: the response is not a PodList with metadata.resourceVersion");
    return;
  }
  if (items != nullptr && items->is_array()) {
    for (const Json& item : *items) {
      if (auto pod = kube::parsePodObject(item)) {
        if (pod->finished()) {
          continue;  // Succeeded or Failed: nothing of it runs again
        }
        if (listed_.size() >= options_.max_pods && !listed_.contains(pod->uid)) {
          skipOverCap(pod->uid);
          continue;
        }
        std::string uid = pod->uid;
        listed_.insert_or_assign(std::move(uid), std::move(pod).value());
      } else {
        log("pod_skipped", pod.error().message);
      }
    }
  }
  if (const std::string next = stringMember(metadata, "continue"); !next.empty()) {
    beginList(next);
    return;
  }
  finishList(resource_version);
}

void PodWatch::Impl::finishList(const std::string& resource_version) {
  std::vector<kube::PodChange> changes;
  for (const auto& [uid, pod] : pods_) {
    if (listed_.find(uid) == listed_.end()) {
      changes.push_back(kube::PodChange{kube::PodChange::Kind::kDeleted, uid});
    }
  }
  for (const auto& [uid, pod] : listed_) {
    const auto it = pods_.find(uid);
    if (it == pods_.end() || !(it->second == pod)) {
      changes.push_back(kube::PodChange{kube::PodChange::Kind::kUpserted, uid});
    }
  }
  pods_ = std::move(listed_);
  listed_.clear();
  need_list_ = false;
  status_.resource_version = resource_version;
  status_.synced = true;
  ++status_.lists;
  log("synced", std::to_string(pods_.size()) + " pods on node " + endpoint_.node_name +
                    " at resourceVersion " + resource_version);
  for (const kube::PodChange& change : changes) {
    if (!announce(change)) {
      return;
    }
  }
  beginWatch();
}

// --- watch ---

void PodWatch::Impl::beginWatch() {
  ++status_.watch_starts;
  const std::string target =
      "/api/v1/pods?" + selectorQuery() +
      "&watch=1&allowWatchBookmarks=true&resourceVersion=" + percentEncode(status_.resource_version) +
      "&timeoutSeconds=" + std::to_string(options_.watch_timeout.count());
  send(target, true, &Impl::onWatchEnd);
}

void PodWatch::Impl::consumeStream(std::string_view bytes) {
  line_buffer_.append(bytes);
  const uint64_t generation = generation_;
  size_t start = 0;
  for (size_t newline = line_buffer_.find('\n'); newline != std::string::npos;
       newline = line_buffer_.find('\n', start)) {
    const std::string line = line_buffer_.substr(start, newline - start);
    start = newline + 1;
    handleWatchLine(line);
    if (stopped_ || generation_ != generation) {
      return;  // the stream was abandoned: line_buffer_ belongs to what came next
    }
  }
  line_buffer_.erase(0, start);
  if (line_buffer_.size() > kMaxWatchLineBytes) {
    // Resuming at the same resourceVersion would replay the same event: list afresh instead (a list
    // page has room for one large pod).
    abandonExchange();
    need_list_ = true;
    retryAfterFailure("watch: an event larger than " + std::to_string(kMaxWatchLineBytes) + " bytes; relisting");
  }
}

void PodWatch::Impl::delivered(const std::string& resource_version) {
  if (!resource_version.empty()) {
    status_.resource_version = resource_version;
  }
  backoff_ = options_.backoff_initial;
  gone_since_delivery_ = false;
}

void PodWatch::Impl::handleWatchLine(const std::string& line) {
  if (trimmed(line).empty()) {
    return;
  }
  const Json event = kube_client::parsePodJson(line);
  const Json* object = member(event, "object");
  if (event.is_discarded() || object == nullptr || !object->is_object()) {
    abandonExchange();
    retryAfterFailure("watch: malformed event (" + std::to_string(line.size()) +
                      " bytes): " + kube_client::describeText(line));
    return;
  }
  const std::string type = stringMember(event, "type");
  const std::string resource_version = stringMember(objectMember(*object, "metadata"), "resourceVersion");
  if (type == "ADDED" || type == "MODIFIED") {
    auto pod = kube::parsePodObject(*object);
    delivered(resource_version);
    if (!pod) {
      log("pod_skipped", pod.error().message);
      return;
    }
    ++status_.events;
    std::string uid = pod->uid;
    if (pod->finished()) {
      if (pods_.erase(uid) > 0) {  // Succeeded or Failed: as good as deleted
        announce(kube::PodChange{kube::PodChange::Kind::kDeleted, std::move(uid)});
      }
      return;
    }
    if (pods_.size() >= options_.max_pods && !pods_.contains(uid)) {
      skipOverCap(uid);
      return;
    }
    pods_.insert_or_assign(uid, std::move(pod).value());
    announce(kube::PodChange{kube::PodChange::Kind::kUpserted, std::move(uid)});
  } else if (type == "DELETED") {
    std::string uid = stringMember(objectMember(*object, "metadata"), "uid");
    delivered(resource_version);
    if (uid.empty()) {
      log("pod_skipped", "DELETED event without metadata.uid");
      return;
    }
    ++status_.events;
    if (pods_.erase(uid) > 0) {
      announce(kube::PodChange{kube::PodChange::Kind::kDeleted, std::move(uid)});
    }
  } else if (type == "BOOKMARK") {
    ++status_.bookmarks;
    delivered(resource_version);
  } else if (type == "ERROR") {
    const Json* code = member(*object, "code");
    const std::string message = stringMember(*object, "message");
    abandonExchange();
    if (code != nullptr && code->is_number_integer() && code->get<int64_t>() == 410) {
      relistGone("watch: " + message);
    } else {
      retryAfterFailure("watch: ERROR event" +
                        (code != nullptr && code->is_number_integer()
                             ? " " + std::to_string(code->get<int64_t>())
                             : std::string()) +
                        ": " + message);
    }
  }
  // Other types are from a newer API: ignored.
}

void PodWatch::Impl::onWatchEnd(const std::string& error) {
  if (response_status_ == 200 || response_status_ == 0) {
    if (!error.empty()) {
      retryAfterFailure("watch: " + error);
      return;
    }
    if (!line_buffer_.empty()) {  // a last event without its newline
      const uint64_t generation = generation_;
      const std::string line = std::move(line_buffer_);
      line_buffer_.clear();
      handleWatchLine(line);
      if (stopped_ || generation_ != generation) {
        return;
      }
    }
    // The server's timeoutSeconds: resume from where the stream stopped (not a failure, not counted).
    scheduleRetry(nextBackoff());
    return;
  }
  httpFailure("watch", response_status_);
}

void PodWatch::Impl::skipOverCap(const std::string& uid) {
  if (status_.pods_over_cap++ == 0 || status_.pods_over_cap % 1000 == 0) {
    log("pod_skipped", "more than " + std::to_string(options_.max_pods) + " pods on node " + endpoint_.node_name +
                           "; pod " + uid + " and others are not cached (" +
                           std::to_string(status_.pods_over_cap) + " so far)");
  }
}

}  // namespace oomguard::guardian::kube_tls
