// Internal to guardian_kube_client: the text and JSON helpers its files share (percent-encoding,
// trimming, UTF-8-safe truncation, JSON member access, the one-line description of a refused request).
#pragma once

#include "guardian/kube/pod.hpp"

#include <chrono>
#include <cstddef>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <string_view>

namespace oomguard::guardian::kube_client {

using Json = nlohmann::json;
using Milliseconds = std::chrono::milliseconds;

// Percent-encodes everything but RFC 3986's unreserved characters, for a query value or a path segment.
std::string percentEncode(std::string_view value);

// `text` without leading and trailing spaces, tabs, CRs and LFs.
std::string trimmed(std::string_view text);

// Cuts `text` to at most `max_bytes` without splitting a UTF-8 sequence.
std::string truncateUtf8(const std::string& text, size_t max_bytes);

// JSON members: the pod model's (guardian/kube/pod.hpp).
using kube::member;
using kube::objectMember;
using kube::stringMember;

// The message of a Kubernetes Status body, else the start of the body as text; one line, at most 300 bytes.
std::string describeBody(const std::string& body);
// "<what>: HTTP <status> (<describeBody(body)>)", the parenthesis only when there is something to show.
std::string describeHttpFailure(const std::string& what, unsigned status, const std::string& body);

// "<n> ms".
std::string milliseconds(Milliseconds duration);

}  // namespace oomguard::guardian::kube_client
