#include "guardian/config/glob.hpp"

#include <algorithm>
#include <string>

namespace oomguard::guardian::config {

bool globMatch(std::string_view pattern, std::string_view text) {
  // On a mismatch, only the last '*' is retried one character further: earlier stars can never do
  // better, so each text position is revisited at most once per pattern position.
  size_t p = 0;
  size_t t = 0;
  size_t star = std::string_view::npos;
  size_t star_t = 0;
  while (t < text.size()) {
    if (p < pattern.size() && pattern[p] == '*') {  // before the literal test: a '*' in the text is text
      star = p++;
      star_t = t;
    } else if (p < pattern.size() && (pattern[p] == '?' || pattern[p] == text[t])) {
      ++p;
      ++t;
    } else if (star != std::string_view::npos) {
      p = star + 1;
      t = ++star_t;
    } else {
      return false;
    }
  }
  while (p < pattern.size() && pattern[p] == '*') {
    ++p;
  }
  return p == pattern.size();
}

namespace {

// Calls visit(segment) for each '/'-separated segment of `path`, in order; a leading '/' is ignored, and
// an empty path has none ("a//b" has three, the middle one empty).
template <class Visit>
void forEachSegment(std::string_view path, Visit&& visit) {
  path.remove_prefix(path.starts_with('/') ? 1 : 0);
  if (path.empty()) {
    return;
  }
  while (true) {
    const auto slash = path.find('/');
    visit(path.substr(0, slash));
    if (slash == std::string_view::npos) {
      return;
    }
    path.remove_prefix(slash + 1);
  }
}

}  // namespace

bool pathGlobMatch(std::string_view pattern, std::string_view path) {
  // Called for every rule and candidate at every refresh: nothing here allocates for a path of up to
  // 14 segments (the strings below stay in their inline buffer), and the path is split anew for each
  // pattern segment instead of into a vector.
  size_t n = 0;
  forEachSegment(path, [&n](std::string_view) { ++n; });
  // reach[j]: the pattern segments consumed so far can match exactly the first j path segments.
  std::string reach(n + 1, '\0');
  std::string next(n + 1, '\0');
  reach[0] = 1;
  forEachSegment(pattern, [&](std::string_view segment) {
    std::fill(next.begin(), next.end(), '\0');
    if (segment == "**") {
      bool any = false;
      for (size_t j = 0; j <= n; ++j) {
        any = any || reach[j] != 0;
        next[j] = any ? 1 : 0;
      }
    } else {
      size_t j = 0;
      forEachSegment(path, [&](std::string_view part) {
        next[j + 1] = (reach[j] != 0 && globMatch(segment, part)) ? 1 : 0;
        ++j;
      });
    }
    reach.swap(next);
  });
  return reach[n] != 0;
}

}  // namespace oomguard::guardian::config
