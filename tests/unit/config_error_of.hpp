// The config tests' one way to read a refusal: the message parseConfig throws for a document.
#pragma once

#include <string>

#include "guardian/config/config.hpp"

namespace oomguard::guardian::config {

// The ConfigError message for `json` (read as "test.json"), or "(no error)" when it is accepted.
inline std::string errorOf(const std::string& json) {
  try {
    (void)parseConfig(json, "test.json");
  } catch (const ConfigError& error) {
    return error.what();
  }
  return "(no error)";
}

}  // namespace oomguard::guardian::config
