#include "guardian/format.hpp"

#include <cstdio>

namespace oomguard::guardian {

std::string mibFromKb(uint64_t kilobytes) {
  char text[32];
  std::snprintf(text, sizeof text, "%.1f", static_cast<double>(kilobytes) / 1024.0);
  return text;
}

std::string humanBytes(uint64_t bytes) {
  constexpr double kKiB = 1024.0;
  char text[32];
  const auto value = static_cast<double>(bytes);
  if (value >= kKiB * kKiB * kKiB) {
    std::snprintf(text, sizeof text, "%.1f GiB", value / (kKiB * kKiB * kKiB));
  } else if (value >= kKiB * kKiB) {
    std::snprintf(text, sizeof text, "%.1f MiB", value / (kKiB * kKiB));
  } else {
    std::snprintf(text, sizeof text, "%llu kB", static_cast<unsigned long long>(bytes / 1024));
  }
  return text;
}

std::string column(std::string_view text, size_t width) {
  if (text.size() > width) {
    return std::string(text.substr(0, width - 1)) + "~";
  }
  return std::string(text) + std::string(width - text.size(), ' ');
}

std::string rightColumn(std::string_view text, size_t width) {
  if (text.size() >= width) {
    return std::string(text);
  }
  return std::string(width - text.size(), ' ') + std::string(text);
}

}  // namespace oomguard::guardian
