// The pod watch (pod_watch.hpp): list, then watch, of the pods bound to this node, over one HttpsExchange
// per request. All members are used on the io_context's thread only, stop() included.
#include "guardian/kube_tls/pod_watch.hpp"

#include <algorithm>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <nlohmann/json.hpp>
#include <optional>
#include <string_view>
#include <utility>
#include <vector>

#include "guardian/kube_client/api_text.hpp"
#include "guardian/kube_tls/https_exchange.hpp"

namespace oomguard::guardian::kube_tls {

namespace {

// Caps on what a misbehaving server can make the daemon hold in memory.
// One page of a PodList: a page over it is asked again at half the pods (one pod is at most
// kMaxObjectBytes). Parsing keeps only what the pod model reads (parsePodJson), so the page's text is
// the bulk of the memory a list costs.
constexpr size_t kMaxListResponseBytes = 8UL << 20U;
constexpr size_t kMaxWatchLineBytes = kube_client::kMaxObjectBytes;  // one watch event: one pod object

// Frees the capacity of a buffer that held a large response (clear() keeps it).
void release(std::string& buffer) { std::string().swap(buffer); }

}  // namespace

// --- PodWatch ------------------------------------------------------------------------------------------

// on_log events: "synced" (a list completed), "relist" (410 Gone), "reconnect" (a failure, retried after
// the backoff given in the detail), "auth_failure" (401/403), "pod_skipped" (an object without identity).
struct PodWatch::Impl : std::enable_shared_from_this<PodWatch::Impl> {
  Impl(asio::io_context& io, KubeApiEndpoint endpoint, PodWatchOptions options,
       std::function<void(const kube::PodChange&)> on_change,
       std::function<void(const std::string&, const std::string&)> on_log)
      : io_(io),
        endpoint_(std::move(endpoint)),
        options_(options),
        on_change_(std::move(on_change)),
        on_log_(std::move(on_log)),
        retry_timer_(io),
        backoff_(options.backoff_initial),
        page_limit_(options.list_page_limit) {}

  void start() {
    if (started_ || stopped_) {
      return;
    }
    started_ = true;
    asio::post(io_, [weak = weak_from_this()] {
      if (const auto self = weak.lock(); self && !self->stopped_) {
        self->run([&] { self->beginList(""); });
      }
    });
  }

  void stop() {
    stopped_ = true;
    ++generation_;
    if (exchange_) {
      exchange_->cancel();
      exchange_.reset();
    }
    try {
      retry_timer_.cancel();
    } catch (const std::exception&) {  // NOLINT(bugprone-empty-catch): nothing can fire after stopped_
    }
  }

  // Runs a step of the state machine; an exception becomes a failure retried like any other.
  template <typename Action>
  void run(Action&& action) {
    guarded(std::forward<Action>(action), [this](const std::string& error) {
      if (!stopped_) {
        abandonExchange();
        retryAfterFailure(error);
      }
    });
  }

  void log(const std::string& event, const std::string& detail) {
    if (!stopped_ && on_log_) {
      on_log_(event, detail);
    }
  }

  // Announces `change`; false when a callback stopped the watch.
  bool announce(const kube::PodChange& change) {
    if (stopped_) {
      return false;
    }
    if (on_change_) {
      on_change_(change);
    }
    return !stopped_;
  }

  void abandonExchange() {
    ++generation_;
    if (exchange_) {
      exchange_->cancel();
      exchange_.reset();
    }
  }

  std::string selectorQuery() const {
    return "fieldSelector=" + percentEncode("spec.nodeName=" + endpoint_.node_name);
  }

  // Sends a GET. A 200 to a streamed request goes line by line to consumeStream, any other body to
  // response_body_; then `on_end` runs with the transport error ("" once the response is complete).
  void send(const std::string& target, bool stream_body, void (Impl::*on_end)(const std::string&)) {
    abandonExchange();
    response_status_ = 0;
    release(response_body_);
    release(line_buffer_);
    std::string token;
    std::string error;
    if (!readToken(endpoint_.token_file, token, error)) {
      retryAfterFailure(error);
      return;
    }
    const uint64_t generation = generation_;
    const auto current = [weak = weak_from_this(), generation]() -> std::shared_ptr<Impl> {
      auto self = weak.lock();
      return self && !self->stopped_ && self->generation_ == generation ? self : nullptr;
    };
    HttpsExchange::Callbacks callbacks;
    callbacks.on_header = [current](unsigned status) {
      if (const auto self = current()) {
        self->response_status_ = status;
      }
    };
    callbacks.on_body = [current, stream_body](std::string_view bytes) {
      if (const auto self = current()) {
        self->run([&] { self->onBody(bytes, stream_body); });
      }
    };
    callbacks.on_end = [current, on_end](const std::string& transport_error) {
      if (const auto self = current()) {
        self->exchange_.reset();
        self->run([&] { ((*self).*on_end)(transport_error); });
      }
    };
    exchange_ = std::make_shared<HttpsExchange>(
        io_, endpoint_, std::chrono::duration_cast<Milliseconds>(options_.connect_timeout),
        std::chrono::duration_cast<Milliseconds>(options_.idle_timeout));
    exchange_->start(makeRequest(http::verb::get, target, endpoint_, token), std::move(callbacks));
  }

  void onBody(std::string_view bytes, bool stream_body) {
    if (stream_body && response_status_ == 200) {
      consumeStream(bytes);
      return;
    }
    const size_t cap = response_status_ == 200 ? kMaxListResponseBytes : kMaxErrorBodyBytes;
    if (response_body_.size() + bytes.size() > cap) {
      if (response_status_ == 200) {
        abandonExchange();
        release(response_body_);
        if (page_limit_ > 1) {
          page_limit_ /= 2;  // fewer pods per page; the list starts over (its pages must be consistent)
          log("reconnect", "list: a page larger than " + std::to_string(cap) + " bytes; asking " +
                               std::to_string(page_limit_) + " pods per page");
          beginList("");
        } else {
          retryAfterFailure("list: one pod larger than " + std::to_string(cap) + " bytes");
        }
      }
      return;  // an error body: what was kept is enough to describe it
    }
    response_body_.append(bytes);
  }

  // --- list ---

  void beginList(const std::string& continue_token) {
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

  void onListEnd(const std::string& error) {
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

  // The cache becomes exactly the list; the differences are announced after.
  void finishList(const std::string& resource_version) {
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

  void beginWatch() {
    ++status_.watch_starts;
    const std::string target =
        "/api/v1/pods?" + selectorQuery() +
        "&watch=1&allowWatchBookmarks=true&resourceVersion=" + percentEncode(status_.resource_version) +
        "&timeoutSeconds=" + std::to_string(options_.watch_timeout.count());
    send(target, true, &Impl::onWatchEnd);
  }

  void consumeStream(std::string_view bytes) {
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

  void delivered(const std::string& resource_version) {
    if (!resource_version.empty()) {
      status_.resource_version = resource_version;
    }
    backoff_ = options_.backoff_initial;
    gone_since_delivery_ = false;
  }

  void handleWatchLine(const std::string& line) {
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

  void onWatchEnd(const std::string& error) {
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

  // A pod past options_.max_pods: not cached; logged once per list or watch (then only counted).
  void skipOverCap(const std::string& uid) {
    if (status_.pods_over_cap++ == 0 || status_.pods_over_cap % 1000 == 0) {
      log("pod_skipped", "more than " + std::to_string(options_.max_pods) + " pods on node " + endpoint_.node_name +
                             "; pod " + uid + " and others are not cached (" +
                             std::to_string(status_.pods_over_cap) + " so far)");
    }
  }

  // --- failures ---

  void httpFailure(const std::string& what, unsigned status) {
    const std::string message = describeHttpFailure(what, status, response_body_);
    response_body_.clear();
    if (status == 401 || status == 403) {
      ++status_.auth_failures;
      status_.last_error = message;
      const Milliseconds delay = nextBackoff();
      log("auth_failure", message + "; re-reading the token and retrying in " + milliseconds(delay));
      scheduleRetry(delay);
    } else if (status == 410) {
      relistGone(message);
    } else {
      retryAfterFailure(message);
    }
  }

  // The resourceVersion is too old: list again, at once unless the previous relist got no further.
  void relistGone(const std::string& message) {
    ++status_.relists_gone;
    need_list_ = true;
    if (!gone_since_delivery_) {
      gone_since_delivery_ = true;
      log("relist", message);
      beginList("");
      return;
    }
    const Milliseconds delay = nextBackoff();
    log("relist", message + "; again without progress, relisting in " + milliseconds(delay));
    scheduleRetry(delay);
  }

  void retryAfterFailure(const std::string& error) {
    ++status_.reconnects;
    status_.last_error = error;
    const Milliseconds delay = nextBackoff();
    log("reconnect", error + "; retrying in " + milliseconds(delay));
    scheduleRetry(delay);
  }

  Milliseconds nextBackoff() {
    const Milliseconds delay = backoff_;
    backoff_ = std::min(backoff_ * 2, std::max(options_.backoff_max, options_.backoff_initial));
    return delay;
  }

  void scheduleRetry(Milliseconds delay) {
    abandonExchange();
    const uint64_t generation = generation_;
    retry_timer_.expires_after(delay);
    retry_timer_.async_wait([weak = weak_from_this(), generation](const ErrorCode& ec) {
      const auto self = weak.lock();
      if (ec || !self || self->stopped_ || self->generation_ != generation) {
        return;
      }
      self->run([&] {
        if (self->need_list_ || !self->status_.synced) {
          self->beginList("");
        } else {
          self->beginWatch();
        }
      });
    });
  }

  asio::io_context& io_;
  KubeApiEndpoint endpoint_;
  PodWatchOptions options_;
  std::function<void(const kube::PodChange&)> on_change_;
  std::function<void(const std::string&, const std::string&)> on_log_;
  asio::steady_timer retry_timer_;
  Milliseconds backoff_;
  bool started_ = false;
  bool stopped_ = false;
  bool need_list_ = true;
  bool gone_since_delivery_ = false;
  // Bumped whenever the request in flight is abandoned: callbacks of older requests are ignored.
  uint64_t generation_ = 0;
  std::shared_ptr<HttpsExchange> exchange_;
  unsigned response_status_ = 0;
  std::string response_body_;
  std::string line_buffer_;
  uint32_t page_limit_;  // pods per list page: options_.list_page_limit, halved after an oversized page
  std::map<std::string, kube::KubePod> listed_;  // the pages of the list in progress
  std::map<std::string, kube::KubePod> pods_;
  PodWatchStatus status_;
};

PodWatch::PodWatch(asio::io_context& io, KubeApiEndpoint endpoint, PodWatchOptions options,
                   std::function<void(const kube::PodChange&)> on_change,
                   std::function<void(const std::string& event, const std::string& detail)> on_log)
    : impl_(std::make_shared<Impl>(io, std::move(endpoint), options, std::move(on_change),
                                   std::move(on_log))) {}

PodWatch::~PodWatch() {
  if (impl_) {
    impl_->stop();
  }
}

void PodWatch::start() {
  impl_->start();
}

void PodWatch::stop() {
  impl_->stop();
}

const std::map<std::string, kube::KubePod>& PodWatch::pods() const {
  return impl_->pods_;
}

const kube::KubePod* PodWatch::find(const std::string& uid) const {
  const auto it = impl_->pods_.find(uid);
  return it == impl_->pods_.end() ? nullptr : &it->second;
}

const PodWatchStatus& PodWatch::status() const {
  return impl_->status_;
}

}  // namespace oomguard::guardian::kube_tls
