// The pod watch (pod_watch.hpp): list, then watch, of the pods bound to this node, over one HttpsExchange
// per request. All members are used on the io_context's thread only, stop() included.
// PodWatch::Impl is declared in pod_watch_impl.hpp; its list and watch are in pod_watch_stream.cpp.
#include "guardian/kube_tls/pod_watch.hpp"

#include <algorithm>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <memory>
#include <string>
#include <string_view>
#include <utility>

#include "guardian/kube_client/api_text.hpp"
#include "guardian/kube_client/endpoint.hpp"
#include "guardian/kube_tls/https_exchange.hpp"
#include "guardian/kube_tls/pod_watch_impl.hpp"

namespace oomguard::guardian::kube_tls {

namespace {

// Caps on what a misbehaving server can make the daemon hold in memory.
// One page of a PodList: a page over it is asked again at half the pods (one pod is at most
// kMaxObjectBytes). Parsing keeps only what the pod model reads (parsePodJson), so the page's text is
// the bulk of the memory a list costs.
constexpr size_t kMaxListResponseBytes = 8UL << 20U;

}  // namespace

void PodWatch::Impl::start() {
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

void PodWatch::Impl::stop() {
  stopped_ = true;
  ++generation_;
  cancelExchangeAndRetry(exchange_, retry_timer_);
}

void PodWatch::Impl::log(const std::string& event, const std::string& detail) {
  if (!stopped_ && on_log_) {
    on_log_(event, detail);
  }
}

bool PodWatch::Impl::announce(const kube::PodChange& change) {
  if (stopped_) {
    return false;
  }
  if (on_change_) {
    on_change_(change);
  }
  return !stopped_;
}

void PodWatch::Impl::abandonExchange() {
  ++generation_;
  if (exchange_) {
    exchange_->cancel();
    exchange_.reset();
  }
}

std::string PodWatch::Impl::selectorQuery() const {
  return "fieldSelector=" + percentEncode("spec.nodeName=" + endpoint_.node_name);
}

void PodWatch::Impl::send(const std::string& target, bool stream_body,
                          void (Impl::*on_end)(const std::string&)) {
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

void PodWatch::Impl::onBody(std::string_view bytes, bool stream_body) {
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

// --- failures ---

void PodWatch::Impl::httpFailure(const std::string& what, unsigned status) {
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

void PodWatch::Impl::relistGone(const std::string& message) {
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

void PodWatch::Impl::retryAfterFailure(const std::string& error) {
  ++status_.reconnects;
  status_.last_error = error;
  const Milliseconds delay = nextBackoff();
  log("reconnect", error + "; retrying in " + milliseconds(delay));
  scheduleRetry(delay);
}

Milliseconds PodWatch::Impl::nextBackoff() {
  const Milliseconds delay = backoff_;
  backoff_ = std::min(backoff_ * 2, std::max(options_.backoff_max, options_.backoff_initial));
  return delay;
}

void PodWatch::Impl::scheduleRetry(Milliseconds delay) {
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

// --- PodWatch ------------------------------------------------------------------------------------------

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
