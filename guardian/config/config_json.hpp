// The config's JSON reader: stricter than JSON itself, so that what the file says is what runs.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

namespace oomguard::guardian::config {

// Parses `text` as one JSON document and refuses, with ConfigError naming `source`:
// - a syntax error, as "source:LINE:COLUMN: syntax error ..." (1-based);
// - a key repeated in one object (JSON leaves the outcome open; nlohmann keeps the last), and a number
//   beyond a double's range (1e400), as "source: /json/pointer: reason".
// Nesting deeper than 64 levels is refused too (no config is that deep).
nlohmann::json parseConfigJson(std::string_view text, const std::string& source);

// Reads the config file at `path` and parses it as above. Only a regular file of at most
// kMaxConfigBytes is read: a FIFO, a device or a directory is refused at once (opened non-blocking),
// and a larger file is refused by size, so that neither start-up nor a reload can hang or balloon.
inline constexpr size_t kMaxConfigBytes = size_t{1024} * 1024;
nlohmann::json readConfigJson(const std::string& path);

}  // namespace oomguard::guardian::config
