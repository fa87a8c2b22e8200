// The one glob matcher: cgroup rules (config), protected namespaces (tenant policy).
// Both run in time proportional to pattern length times text length at worst, never exponential, so
// that no pattern in a config or an annotation can stall start-up or the loop.
#pragma once

#include <string_view>

namespace oomguard::guardian::config {

// '*' matches any run of characters (also empty), '?' exactly one; everything else itself.
// O(|pattern| * |text|) at worst (greedy with one backtrack point).
bool globMatch(std::string_view pattern, std::string_view text);

// A '/'-separated path against a pattern of the same shape: each pattern segment is a globMatch of one
// path segment, and a segment "**" matches zero or more whole segments. A leading '/' on either side
// is ignored ("/" is the root: the empty path). O(|segments of pattern| * |segments of path| * segment
// match) at worst, by dynamic programming over segments.
bool pathGlobMatch(std::string_view pattern, std::string_view path);

}  // namespace oomguard::guardian::config
