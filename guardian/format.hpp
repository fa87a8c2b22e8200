// Small text helpers shared by the human-readable outputs.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace oomguard::guardian {

// 1536 kB -> "1.5" (MiB with one decimal).
std::string mibFromKb(uint64_t kilobytes);
// 25769803776 bytes -> "24.0 GiB" / "512.0 MiB" / "12 kB".
std::string humanBytes(uint64_t bytes);
// Pads or cuts `text` to `width` columns (left aligned; cut text ends in "~").
std::string column(std::string_view text, size_t width);
std::string rightColumn(std::string_view text, size_t width);

}  // namespace oomguard::guardian
