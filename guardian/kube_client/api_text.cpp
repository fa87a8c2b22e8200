// The API client's shared text and JSON helpers (api_text.hpp).
#include "guardian/kube_client/api_text.hpp"

#include <algorithm>
#include <vector>

#include "guardian/kube/annotations.hpp"

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


bool jsonDepthWithin(std::string_view text, size_t max_depth) {
  size_t depth = 0;
  bool in_string = false;
  bool escaped = false;
  for (const char c : text) {
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > max_depth) {
        return false;
      }
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
  return true;
}

Json parseBounded(std::string_view text) {
  if (!jsonDepthWithin(text, kMaxJsonDepth)) {
    return Json(Json::value_t::discarded);
  }
  return Json::parse(text, nullptr, false);
}

namespace {

// What parsePodJson keeps: for each parent (the key that opened the enclosing object; "name[]" for an
// element of the array under "name"; "<root>" at the top), the member names the pod model and the
// list/watch envelopes read (pod.cpp's parsePodObject, pod_watch_stream.cpp). Everything else is skipped while
// parsing, whatever its size: a tenant's 500,000 container args never become JSON values here.
bool keepMember(std::string_view parent, std::string_view key) {
  if (parent == "annotations") {
    return key.substr(0, kube::kAnnotationDomain.size()) == kube::kAnnotationDomain;
  }
  using Names = std::initializer_list<std::string_view>;
  const auto in = [key](Names names) { return std::find(names.begin(), names.end(), key) != names.end(); };
  if (parent == "<root>" || parent == "object" || parent == "items[]") {  // a list, a watch event, a pod
    return in({"apiVersion", "kind", "metadata", "spec", "status", "items", "object", "type", "code", "message",
               "reason"});
  }
  if (parent == "metadata") {
    return in({"uid", "name", "namespace", "resourceVersion", "annotations", "continue"});
  }
  if (parent == "spec") {
    return in({"priority", "priorityClassName", "containers"});
  }
  if (parent == "containers[]") {
    return in({"name", "resources"});
  }
  if (parent == "resources") {
    return in({"requests"});
  }
  if (parent == "requests" || parent == "allocatedResources") {
    return in({"memory"});
  }
  if (parent == "status") {
    return in({"phase", "qosClass", "containerStatuses", "initContainerStatuses", "ephemeralContainerStatuses"});
  }
  if (parent == "containerStatuses[]" || parent == "initContainerStatuses[]" ||
      parent == "ephemeralContainerStatuses[]") {
    return in({"name", "containerID", "allocatedResources"});
  }
  return false;
}

}  // namespace

Json parsePodJson(std::string_view text) {
  if (!jsonDepthWithin(text, kMaxJsonDepth)) {
    return Json(Json::value_t::discarded);
  }
  // The key that opened the container at each depth ("" for an array's element, whose array's key is one
  // level further up): a member's parent is found from there.
  std::vector<std::string> keys;
  bool after_key = false;
  const Json::parser_callback_t keep = [&keys, &after_key](int depth, Json::parse_event_t event, Json& parsed) {
    const auto at = static_cast<size_t>(std::max(depth, 0));
    if (event != Json::parse_event_t::key) {
      if ((event == Json::parse_event_t::object_start || event == Json::parse_event_t::array_start) && !after_key) {
        keys.resize(at + 1);
        keys[at].clear();
      }
      after_key = false;
      return true;
    }
    after_key = true;
    keys.resize(at + 1);
    keys[at] = parsed.is_string() ? parsed.get<std::string>() : std::string();
    std::string parent = "<root>";
    if (at >= 1 && !keys[at - 1].empty()) {
      parent = keys[at - 1];
    } else if (at >= 2 && !keys[at - 2].empty()) {
      parent = keys[at - 2] + "[]";
    }
    return keepMember(parent, keys[at]);
  };
  return Json::parse(text.begin(), text.end(), keep, false);
}

std::string describeText(std::string_view text) {
  constexpr size_t kMaxShown = 120;
  std::string shown = trimmed(truncateUtf8(std::string(text.substr(0, kMaxShown + 4)), kMaxShown));
  for (char& c : shown) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
      c = ' ';
    }
  }
  return shown;
}

// The message of a Kubernetes Status body, else the start of the body as text; one line, at most 300 bytes.
std::string describeBody(const std::string& body) {
  constexpr size_t kMaxShown = 300;
  const Json status = parseBounded(body);
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
