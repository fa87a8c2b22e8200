#include "guardian/config/glob.hpp"

#include <vector>

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

std::vector<std::string_view> segments(std::string_view path) {
  path.remove_prefix(path.starts_with('/') ? 1 : 0);
  std::vector<std::string_view> out;
  if (path.empty()) {
    return out;
  }
  while (true) {
    const auto slash = path.find('/');
    out.push_back(path.substr(0, slash));
    if (slash == std::string_view::npos) {
      return out;
    }
    path.remove_prefix(slash + 1);
  }
}

}  // namespace

bool pathGlobMatch(std::string_view pattern, std::string_view path) {
  const auto pattern_segments = segments(pattern);
  const auto path_segments = segments(path);
  const size_t n = path_segments.size();
  // reach[j]: the pattern segments consumed so far can match exactly the first j path segments.
  std::vector<char> reach(n + 1, 0);
  std::vector<char> next(n + 1, 0);
  reach[0] = 1;
  for (const auto segment : pattern_segments) {
    std::fill(next.begin(), next.end(), 0);
    if (segment == "**") {
      bool any = false;
      for (size_t j = 0; j <= n; ++j) {
        any = any || reach[j] != 0;
        next[j] = any ? 1 : 0;
      }
    } else {
      for (size_t j = 0; j < n; ++j) {
        next[j + 1] = (reach[j] != 0 && globMatch(segment, path_segments[j])) ? 1 : 0;
      }
    }
    reach.swap(next);
  }
  return reach[n] != 0;
}

}  // namespace oomguard::guardian::config
