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

// Bounds on what the API server may make the daemon parse: one watch event carries one pod object, which
// the API server stores after a request of at most 3 MiB (its JSON body limit; etcd's 1.5 MiB applies to
// the stored protobuf, which renders larger as JSON); pod objects nest about a dozen levels.
inline constexpr size_t kMaxObjectBytes = 4UL << 20U;
inline constexpr size_t kMaxJsonDepth = 64;
// Whether the arrays and objects of `text` nest at most `max_depth` deep (strings and escapes skipped):
// one pass, no allocation, so that a line of 16 million '[' is refused before nlohmann::json builds it.
bool jsonDepthWithin(std::string_view text, size_t max_depth);
// Parses `text` once, when it nests at most kMaxJsonDepth deep; a discarded value otherwise.
Json parseBounded(std::string_view text);
// A list page or a watch event, parsed once (a discarded value when it nests deeper than kMaxJsonDepth
// or is not JSON), keeping only the members the pod model and the envelopes read (a whitelist by path;
// annotations only under oomguard.io/): a pod's other annotations, labels, managedFields, env, args,
// volumes and conditions are skipped while parsing, so their size costs no memory.
Json parsePodJson(std::string_view text);
// The start of `text` as one line of at most 120 bytes (control bytes as spaces): for a body that is not
// JSON, without parsing it again.
std::string describeText(std::string_view text);

// The message of a Kubernetes Status body, else the start of the body as text; one line, at most 300 bytes.
std::string describeBody(const std::string& body);
// "<what>: HTTP <status> (<describeBody(body)>)", the parenthesis only when there is something to show.
std::string describeHttpFailure(const std::string& what, unsigned status, const std::string& body);

// "<n> ms".
std::string milliseconds(Milliseconds duration);

}  // namespace oomguard::guardian::kube_client
