#include "guardian/io/event_log.hpp"

#include "guardian/text/format.hpp"

#include <ctime>

namespace oomguard::guardian::io {

std::string EventLog::formatTimestamp(std::chrono::system_clock::time_point now) {
  const auto seconds = std::chrono::system_clock::to_time_t(now);
  const auto micros =
      std::chrono::duration_cast<std::chrono::microseconds>(now.time_since_epoch()).count() % 1000000;
  std::tm utc{};
  ::gmtime_r(&seconds, &utc);
  char text[40];
  const size_t length = std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%S", &utc);
  std::snprintf(text + length, sizeof text - length, ".%06lldZ", static_cast<long long>(micros < 0 ? 0 : micros));
  return text;
}

void EventLog::write(std::string_view event, const nlohmann::ordered_json& fields) {
  nlohmann::ordered_json line;
  line["time"] = timestamp();
  line["event"] = event;
  for (const auto& [key, value] : fields.items()) {
    line[key] = value;
  }
  out_ << text::jsonText(line) << '\n';
  out_.flush();
}

}  // namespace oomguard::guardian::io
