// Internal to guardian/kube_tls (not installed, not included outside this folder): the state machine
// behind PodWatch (pod_watch.hpp), whose member functions are defined in
//   pod_watch.cpp         start/stop, the requests (send) and the failures (backoff, retry)
//   pod_watch_stream.cpp  the list and the watch: their responses, the cache and what is announced
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>

#include "guardian/kube/pod.hpp"
#include "guardian/kube_tls/https_exchange.hpp"
#include "guardian/kube_tls/pod_watch.hpp"

namespace oomguard::guardian::kube_tls {

// Frees the capacity of a buffer that held a large response (clear() keeps it).
inline void release(std::string& buffer) { std::string().swap(buffer); }

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

  void start();
  void stop();

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

  void log(const std::string& event, const std::string& detail);

  // Announces `change`; false when a callback stopped the watch.
  bool announce(const kube::PodChange& change);

  void abandonExchange();

  std::string selectorQuery() const;

  // Sends a GET. A 200 to a streamed request goes line by line to consumeStream, any other body to
  // response_body_; then `on_end` runs with the transport error ("" once the response is complete).
  void send(const std::string& target, bool stream_body, void (Impl::*on_end)(const std::string&));

  void onBody(std::string_view bytes, bool stream_body);

  // --- list ---

  void beginList(const std::string& continue_token);
  void onListEnd(const std::string& error);

  // The cache becomes exactly the list; the differences are announced after.
  void finishList(const std::string& resource_version);

  // --- watch ---

  void beginWatch();
  void consumeStream(std::string_view bytes);
  void delivered(const std::string& resource_version);
  void handleWatchLine(const std::string& line);
  void onWatchEnd(const std::string& error);

  // A pod past options_.max_pods: not cached; logged once per list or watch (then only counted).
  void skipOverCap(const std::string& uid);

  // --- failures ---

  void httpFailure(const std::string& what, unsigned status);

  // The resourceVersion is too old: list again, at once unless the previous relist got no further.
  void relistGone(const std::string& message);

  void retryAfterFailure(const std::string& error);
  Milliseconds nextBackoff();
  void scheduleRetry(Milliseconds delay);

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

}  // namespace oomguard::guardian::kube_tls
