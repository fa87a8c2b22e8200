// Kubernetes Events (event_recorder.hpp): a bounded queue sent one POST at a time, each over an
// HttpsExchange of its own. All members are used on the io_context's thread only, stop() included.
#include "guardian/kube_tls/event_recorder.hpp"

#include <algorithm>
#include <array>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <ctime>
#include <deque>
#include <nlohmann/json.hpp>
#include <string_view>
#include <utility>

#include "guardian/kube_client/api_text.hpp"
#include "guardian/kube_tls/https_exchange.hpp"

namespace oomguard::guardian::kube_tls {

namespace {

// At most this much of a PodEventReport's message is sent.
constexpr size_t kMaxEventMessageBytes = 1024;
// A Kubernetes object name is a DNS subdomain: at most 253 characters.
constexpr size_t kMaxObjectNameBytes = 253;
constexpr Milliseconds kEventConnectTimeout{10000};
constexpr Milliseconds kEventIdleTimeout{30000};
constexpr Milliseconds kEventRetryInitial{200};

std::string rfc3339Utc(std::chrono::system_clock::time_point when) {
  const std::time_t seconds = std::chrono::system_clock::to_time_t(when);
  std::tm utc{};
  gmtime_r(&seconds, &utc);
  std::array<char, 32> text{};
  const size_t length = std::strftime(text.data(), text.size(), "%Y-%m-%dT%H:%M:%SZ", &utc);
  return std::string(text.data(), length);
}

std::string hex16(uint64_t value) {
  static constexpr std::string_view kHex = "0123456789abcdef";
  std::string out(16, '0');
  for (size_t i = 16; i-- > 0;) {
    out[i] = kHex[value & 0x0FU];
    value >>= 4U;
  }
  return out;
}

}  // namespace

// status().queued counts the events accepted by report() (sent + failed + still queued); an event being
// sent still takes its place in the queue. A 409 (AlreadyExists: an earlier attempt of the same event got
// through) counts as sent. 401, 403, 408, 429, 5xx and transport failures are retried; other refusals
// fail at once.
struct EventRecorder::Impl : std::enable_shared_from_this<EventRecorder::Impl> {
  struct Pending {
    PodEventReport report;
    std::string name;
    std::string timestamp;
  };

  Impl(asio::io_context& io, KubeApiEndpoint endpoint, std::string component, size_t max_queued,
       unsigned attempts, WallClock wall_clock)
      : wall_clock_(std::move(wall_clock)),
        io_(io),
        endpoint_(std::move(endpoint)),
        component_(std::move(component)),
        max_queued_(max_queued),
        attempts_(std::max(attempts, 1U)),
        retry_timer_(io) {}

  void report(PodEventReport event) {
    if (!stopped_ && !admit(event)) {
      ++status_.dropped;
      status_.last_error = event.essential ? "event queue full (" + std::to_string(max_queued_) + ")"
                                           : "non-essential event not queued (queue share or per-pod share used up)";
      return;
    }
    if (stopped_) {
      ++status_.dropped;
      status_.last_error = "event recorder stopped";
      return;
    }
    Pending pending{std::move(event), "", rfc3339Utc(wall_clock_())};
    pending.name = eventName(pending.report.pod_name);
    queue_.push_back(std::move(pending));
    ++status_.queued;
    if (!busy_) {
      sendFront();
    }
  }

  // Whether `event` may be queued, after evicting a waiting non-essential Event for an essential one.
  bool admit(const PodEventReport& event) {
    const auto waiting_begin = queue_.begin() + (busy_ && !queue_.empty() ? 1 : 0);  // the front is in flight
    const auto non_essential = [](const Pending& p) { return !p.report.essential; };
    if (event.essential) {
      if (queue_.size() < max_queued_) {
        return true;
      }
      const auto newest = std::find_if(queue_.rbegin(), std::make_reverse_iterator(waiting_begin), non_essential);
      if (newest == std::make_reverse_iterator(waiting_begin)) {
        return false;
      }
      queue_.erase(std::next(newest).base());
      ++status_.dropped;  // the evicted one
      return true;
    }
    const auto queued = static_cast<size_t>(std::count_if(queue_.begin(), queue_.end(), non_essential));
    const auto same_pod = static_cast<size_t>(std::count_if(queue_.begin(), queue_.end(), [&](const Pending& p) {
      return !p.report.essential && p.report.pod_uid == event.pod_uid;
    }));
    return queue_.size() < max_queued_ && queued < std::max<size_t>(max_queued_ / 2, 1) &&
           same_pod < kube_client::kMaxQueuedPerPod;
  }

  void stop() {
    stopped_ = true;
    ++generation_;
    cancelExchangeAndRetry(exchange_, retry_timer_);
  }

  // "<pod>.<16 hex digits>": the wall clock in ns, as kubelet names its events, made unique here.
  std::string eventName(const std::string& pod_name) {
    const auto now_ns = static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                                  wall_clock_().time_since_epoch())
                                                  .count());
    last_name_ns_ = std::max(now_ns, last_name_ns_ + 1);
    constexpr size_t kSuffixBytes = 17;
    return pod_name.substr(0, kMaxObjectNameBytes - kSuffixBytes) + "." + hex16(last_name_ns_);
  }

  std::string eventJson(const Pending& pending) const {
    const PodEventReport& report = pending.report;
    Json involved = {{"apiVersion", "v1"},
                     {"kind", "Pod"},
                     {"namespace", report.namespace_name},
                     {"name", report.pod_name}};
    if (!report.pod_uid.empty()) {
      involved["uid"] = report.pod_uid;
    }
    Json source = {{"component", component_}};
    if (!endpoint_.node_name.empty()) {
      source["host"] = endpoint_.node_name;
    }
    Json event = {{"apiVersion", "v1"},
                  {"kind", "Event"},
                  {"metadata", {{"name", pending.name}, {"namespace", report.namespace_name}}},
                  {"involvedObject", std::move(involved)},
                  {"reason", report.reason},
                  {"message", truncateUtf8(report.message, kMaxEventMessageBytes)},
                  {"type", report.type},
                  {"source", std::move(source)},
                  {"firstTimestamp", pending.timestamp},
                  {"lastTimestamp", pending.timestamp},
                  {"count", 1},
                  {"reportingComponent", component_}};
    if (!endpoint_.node_name.empty()) {
      event["reportingInstance"] = endpoint_.node_name;
    }
    return event.dump(-1, ' ', false, Json::error_handler_t::replace);
  }

  void sendFront() {
    busy_ = true;
    ++attempt_;
    guarded([this] { sendAttempt(); }, [this](const std::string& error) { attemptFailed(error, false); });
  }

  void sendAttempt() {
    std::string token;
    std::string error;
    if (!readToken(endpoint_.token_file, token, error)) {
      attemptFailed(error, true);
      return;
    }
    const Pending& pending = queue_.front();
    auto request = makeRequest(
        http::verb::post, "/api/v1/namespaces/" + percentEncode(pending.report.namespace_name) + "/events",
        endpoint_, token);
    request.set(http::field::content_type, "application/json");
    request.body() = eventJson(pending);
    request.prepare_payload();

    response_status_ = 0;
    response_body_.clear();
    const uint64_t generation = ++generation_;
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
    callbacks.on_body = [current](std::string_view bytes) {
      if (const auto self = current();
          self && self->response_body_.size() + bytes.size() <= kMaxErrorBodyBytes) {
        self->response_body_.append(bytes);
      }
    };
    callbacks.on_end = [current](const std::string& transport_error) {
      if (const auto self = current()) {
        self->exchange_.reset();
        guarded([&] { self->onEnd(transport_error); },
                [&](const std::string& error_text) { self->attemptFailed(error_text, false); });
      }
    };
    exchange_ = std::make_shared<HttpsExchange>(io_, endpoint_, kEventConnectTimeout, kEventIdleTimeout);
    exchange_->start(std::move(request), std::move(callbacks));
  }

  void onEnd(const std::string& error) {
    if (!error.empty()) {
      attemptFailed("event: " + error, true);
      return;
    }
    const unsigned status = response_status_;
    if ((status >= 200 && status < 300) || status == 409) {
      ++status_.sent;
      next();
      return;
    }
    const bool retryable = status == 401 || status == 403 || status == 408 || status == 429 || status >= 500;
    attemptFailed(describeHttpFailure("event", status, response_body_), retryable);
  }

  void attemptFailed(const std::string& error, bool retryable) {
    status_.last_error = error;
    if (stopped_) {
      return;
    }
    if (retryable && attempt_ < attempts_) {
      const Milliseconds delay = kEventRetryInitial * (1U << std::min(attempt_ - 1, 10U));
      const uint64_t generation = ++generation_;
      retry_timer_.expires_after(delay);
      retry_timer_.async_wait([weak = weak_from_this(), generation](const ErrorCode& ec) {
        const auto self = weak.lock();
        if (!ec && self && !self->stopped_ && self->generation_ == generation) {
          self->sendFront();
        }
      });
      return;
    }
    ++status_.failed;
    next();
  }

  void next() {
    queue_.pop_front();
    attempt_ = 0;
    busy_ = false;
    if (!queue_.empty() && !stopped_) {
      sendFront();
    }
  }

  WallClock wall_clock_;
  asio::io_context& io_;
  KubeApiEndpoint endpoint_;
  std::string component_;
  size_t max_queued_;
  unsigned attempts_;
  asio::steady_timer retry_timer_;
  std::deque<Pending> queue_;  // the front is the one being sent while busy_
  bool busy_ = false;
  bool stopped_ = false;
  unsigned attempt_ = 0;
  uint64_t generation_ = 0;
  uint64_t last_name_ns_ = 0;
  std::shared_ptr<HttpsExchange> exchange_;
  unsigned response_status_ = 0;
  std::string response_body_;
  EventRecorderStatus status_;
};

EventRecorder::EventRecorder(asio::io_context& io, KubeApiEndpoint endpoint, std::string component,
                             size_t max_queued, unsigned attempts, WallClock wall_clock)
    : impl_(std::make_shared<Impl>(io, std::move(endpoint), std::move(component), max_queued, attempts,
                                   std::move(wall_clock))) {}

EventRecorder::~EventRecorder() {
  if (impl_) {
    impl_->stop();
  }
}

void EventRecorder::report(PodEventReport event) {
  impl_->report(std::move(event));
}

void EventRecorder::stop() {
  impl_->stop();
}

const EventRecorderStatus& EventRecorder::status() const {
  return impl_->status_;
}

}  // namespace oomguard::guardian::kube_tls
