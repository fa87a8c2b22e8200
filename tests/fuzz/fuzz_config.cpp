// The config loader through check-config's own path (parseConfig: the strict JSON reader, then the
// validation into typed structs): any bytes give a Config or a ConfigError naming where, never a crash,
// a hang, another exception type or a sanitizer report.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "guardian/config/config.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  try {
    const auto config = oomguard::guardian::config::parseConfig(text, "fuzz.json");
    // A returned config is valid as a whole: its rules match something sensible without blowing up.
    for (const auto& rule : config.cgroups) {
      (void)oomguard::guardian::config::cgroupMatches(rule.match, "/kubepods.slice/a/b/c/d/e/f/g/h");
    }
  } catch (const oomguard::guardian::config::ConfigError& error) {
    if (std::string_view(error.what()).empty()) {
      __builtin_trap();
    }
  }
  return 0;
}
