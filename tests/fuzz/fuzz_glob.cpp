// The one glob matcher: input split at the first NUL into pattern and text. Any pattern against any
// text must answer in polynomial time (libFuzzer's -timeout catches a blow-up), and agree with a plain
// reference for patterns without "**".
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "guardian/config/glob.hpp"

namespace {

// Reference for one segment: the textbook DP over (pattern, text) positions.
bool reference(std::string_view pattern, std::string_view text) {
  std::vector<std::vector<char>> match(pattern.size() + 1, std::vector<char>(text.size() + 1, 0));
  match[0][0] = 1;
  for (size_t p = 1; p <= pattern.size(); ++p) {
    match[p][0] = pattern[p - 1] == '*' && match[p - 1][0];
    for (size_t t = 1; t <= text.size(); ++t) {
      const char c = pattern[p - 1];
      match[p][t] = c == '*' ? (match[p - 1][t] || match[p][t - 1])
                             : ((c == '?' || c == text[t - 1]) && match[p - 1][t - 1]);
    }
  }
  return match[pattern.size()][text.size()] != 0;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const auto split = input.find('\0');
  const std::string_view pattern = input.substr(0, split);
  const std::string_view text = split == std::string_view::npos ? std::string_view() : input.substr(split + 1);
  (void)oomguard::guardian::config::pathGlobMatch(pattern, text);
  if (pattern.size() <= 256 && text.size() <= 256 && oomguard::guardian::config::globMatch(pattern, text) != reference(pattern, text)) {
    __builtin_trap();
  }
  return 0;
}
