// Small text helpers shared by the outputs. Process and cgroup names are bytes chosen by whoever runs
// the process (prctl(PR_SET_NAME), mkdir): every output passes them through one of these.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include <nlohmann/json_fwd.hpp>

namespace oomguard::guardian::text {

// 1536 kB -> "1.5" (MiB with one decimal).
std::string mibFromKb(uint64_t kilobytes);
// 25769803776 bytes -> "24.0 GiB" / "512.0 MiB" / "12 kB".
std::string humanBytes(uint64_t bytes);

// For JSON and Prometheus labels: `text` with every byte that is not part of a valid UTF-8 sequence
// (overlong forms and surrogates included) replaced by U+FFFD. Valid text comes back unchanged.
std::string validUtf8(std::string_view text);
// For a terminal: `text` with C0 controls, DEL, C1 controls (U+0080..U+009F) and every byte of an
// invalid UTF-8 sequence written as \xNN, so that no name can move the cursor, recolour, retitle or
// bell a terminal. Printable text (any valid UTF-8 but those) comes back unchanged. Not reversible:
// a backslash in the name stays a backslash.
std::string printable(std::string_view text);
// One JSON document on one line, invalid UTF-8 in its strings replaced by U+FFFD (as validUtf8): the
// only way the commands and the event log turn JSON into text, so no name can make a dump throw.
std::string jsonText(const nlohmann::ordered_json& document);
// One JSON string value, quoted and escaped exactly as jsonText writes it: for output built row by row,
// where a document of thousands of objects would cost more to build than to write.
std::string jsonString(std::string_view text);

// printable(text), padded or cut to `width` bytes (left aligned; cut text ends in "~").
std::string column(std::string_view text, size_t width);
std::string rightColumn(std::string_view text, size_t width);

}  // namespace oomguard::guardian::text
