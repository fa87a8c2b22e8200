#include "guardian/text/format.hpp"

#include <algorithm>
#include <cstdio>
#include <nlohmann/json.hpp>

namespace oomguard::guardian::text {

namespace {

// The length of the valid UTF-8 sequence at text[i] (1..4) and its code point, or 0 when the byte at
// i does not start one (stray continuation, overlong form, surrogate, beyond U+10FFFF, cut short).
size_t utf8Sequence(std::string_view text, size_t i, uint32_t& code) {
  const auto byte = static_cast<unsigned char>(text[i]);
  if (byte < 0x80) {
    code = byte;
    return 1;
  }
  size_t length = 0;
  uint32_t minimum = 0;
  if ((byte & 0xE0) == 0xC0) {
    length = 2;
    minimum = 0x80;
  } else if ((byte & 0xF0) == 0xE0) {
    length = 3;
    minimum = 0x800;
  } else if ((byte & 0xF8) == 0xF0) {
    length = 4;
    minimum = 0x10000;
  }
  if (length == 0 || i + length > text.size()) {
    return 0;
  }
  code = byte & (0x7FU >> length);
  for (size_t k = 1; k < length; ++k) {
    const auto next = static_cast<unsigned char>(text[i + k]);
    if ((next & 0xC0) != 0x80) {
      return 0;
    }
    code = (code << 6) | (next & 0x3FU);
  }
  const bool valid = code >= minimum && code <= 0x10FFFF && (code < 0xD800 || code > 0xDFFF);
  return valid ? length : 0;
}

void appendHexByte(std::string& out, unsigned char byte) {
  char text[8];
  std::snprintf(text, sizeof text, "\\x%02X", byte);
  out.append(text);
}

}  // namespace

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

std::string validUtf8(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  size_t i = 0;
  while (i < text.size()) {
    uint32_t code = 0;
    if (const size_t length = utf8Sequence(text, i, code); length != 0) {
      out.append(text.substr(i, length));
      i += length;
    } else {
      out.append("\xEF\xBF\xBD");
      ++i;
    }
  }
  return out;
}

std::string printable(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  size_t i = 0;
  while (i < text.size()) {
    uint32_t code = 0;
    const size_t length = utf8Sequence(text, i, code);
    const bool control = code < 0x20 || code == 0x7F || (code >= 0x80 && code <= 0x9F);
    if (length == 0 || control) {
      const size_t bytes = length == 0 ? 1 : length;
      for (size_t k = 0; k < bytes; ++k) {
        appendHexByte(out, static_cast<unsigned char>(text[i + k]));
      }
      i += bytes;
    } else {
      out.append(text.substr(i, length));
      i += length;
    }
  }
  return out;
}

std::string jsonText(const nlohmann::ordered_json& document) {
  return document.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

std::string jsonString(std::string_view text) {
  // Printable ASCII but '"' and '\\' (most process names and cgroup paths) is written as it is, as
  // jsonText would; anything else goes through jsonText.
  if (std::all_of(text.begin(), text.end(), [](char c) { return c >= 0x20 && c < 0x7f && c != '"' && c != '\\'; })) {
    std::string quoted;
    quoted.reserve(text.size() + 2);
    quoted += '"';
    quoted += text;
    quoted += '"';
    return quoted;
  }
  return jsonText(nlohmann::ordered_json(text));
}

std::string column(std::string_view raw, size_t width) {
  std::string text = printable(raw);
  if (text.size() > width) {
    return text.substr(0, width - 1) + "~";
  }
  return text + std::string(width - text.size(), ' ');
}

std::string rightColumn(std::string_view raw, size_t width) {
  std::string text = printable(raw);
  if (text.size() >= width) {
    return text;
  }
  return std::string(width - text.size(), ' ') + text;
}

}  // namespace oomguard::guardian::text
