// The API client's shared text and JSON helpers (api_text.hpp).
#include "guardian/kube_client/api_text.hpp"

#include "cgroupfs/parse.hpp"

#include <nlohmann/json.hpp>

namespace oomguard::guardian::kube_client {

// Percent-encodes everything but RFC 3986's unreserved characters, for a query value or a path segment.
std::string percentEncode(std::string_view value) {
  static constexpr std::string_view kHex = "0123456789ABCDEF";
  std::string out;
  out.reserve(value.size());
  for (const char c : value) {
    const auto byte = static_cast<unsigned char>(c);
    if ((byte >= 'A' && byte <= 'Z') || (byte >= 'a' && byte <= 'z') || (byte >= '0' && byte <= '9') ||
        c == '-' || c == '.' || c == '_' || c == '~') {
      out.push_back(c);
    } else {
      out.push_back('%');
      out.push_back(kHex[byte >> 4U]);
      out.push_back(kHex[byte & 0x0FU]);
    }
  }
  return out;
}

std::string trimmed(std::string_view text) { return std::string(cgroupfs::trim(text)); }

// Cuts `text` to at most `max_bytes` without splitting a UTF-8 sequence.
std::string truncateUtf8(const std::string& text, size_t max_bytes) {
  if (text.size() <= max_bytes) {
    return text;
  }
  size_t cut = max_bytes;
  while (cut > 0 && (static_cast<unsigned char>(text[cut]) & 0xC0U) == 0x80U) {
    --cut;
  }
  return text.substr(0, cut);
}


// The message of a Kubernetes Status body, else the start of the body as text; one line, at most 300 bytes.
std::string describeBody(const std::string& body) {
  constexpr size_t kMaxShown = 300;
  const Json status = Json::parse(body, nullptr, false);
  std::string shown = status.is_discarded() ? std::string() : stringMember(status, "message");
  if (shown.empty()) {
    shown = body;
  }
  shown = trimmed(truncateUtf8(shown, kMaxShown));
  for (char& c : shown) {
    if (static_cast<unsigned char>(c) < 0x20) {
      c = ' ';
    }
  }
  return shown;
}

std::string describeHttpFailure(const std::string& what, unsigned status, const std::string& body) {
  std::string text = what + ": HTTP " + std::to_string(status);
  const std::string detail = describeBody(body);
  if (!detail.empty()) {
    text += " (" + detail + ")";
  }
  return text;
}

std::string milliseconds(Milliseconds duration) {
  return std::to_string(duration.count()) + " ms";
}

}  // namespace oomguard::guardian::kube_client
