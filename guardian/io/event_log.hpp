// The daemon's log: one JSON object per line on a stream (stdout), each with "time" and "event" first.
#pragma once

#include <chrono>
#include <functional>
#include <nlohmann/json.hpp>
#include <ostream>
#include <string_view>

namespace oomguard::guardian::io {

using WallClock = std::function<std::chrono::system_clock::time_point()>;

class EventLog {
 public:
  EventLog(std::ostream& out, WallClock clock) : out_(out), clock_(std::move(clock)) {}
  // Writes {"time":"2026-11-22T03:50:01.123456Z","event":<event>, ...fields} and flushes the line.
  void write(std::string_view event, const nlohmann::ordered_json& fields = nlohmann::ordered_json::object());
  [[nodiscard]] std::string timestamp() const { return formatTimestamp(clock_()); }
  [[nodiscard]] std::chrono::system_clock::time_point now() const { return clock_(); }
  // "2026-11-22T03:50:01.123456Z" (UTC, microseconds).
  static std::string formatTimestamp(std::chrono::system_clock::time_point time);

 private:
  std::ostream& out_;
  WallClock clock_;
};

}  // namespace oomguard::guardian::io
