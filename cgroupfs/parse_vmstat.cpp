// /proc/vmstat: the host's page allocations (parse.hpp).
#include <charconv>
#include <system_error>

#include "cgroupfs/parse.hpp"

namespace oomguard::cgroupfs {

Result<uint64_t> parseAllocatedPages(std::string_view text) {
  // Per zone type: pgalloc_dma, pgalloc_dma32, pgalloc_normal, pgalloc_movable (and pgalloc_device,
  // pgalloc_high where configured). Each counts pages, a high-order allocation as its 2^order pages.
  constexpr std::string_view kPrefix = "pgalloc_";
  constexpr uint64_t kMaxPages = uint64_t{1} << 56;  // no real counter; a sum of a few never overflows
  uint64_t total = 0;
  int found = 0;
  while (!text.empty()) {
    const auto end = text.find('\n');
    const std::string_view line = text.substr(0, end);
    text.remove_prefix(end == std::string_view::npos ? text.size() : end + 1);
    if (!line.starts_with(kPrefix)) {
      continue;
    }
    const auto space = line.find(' ');
    if (space == std::string_view::npos) {
      return parseError("a pgalloc_ line without a value");
    }
    const std::string_view value = line.substr(space + 1);
    uint64_t pages = 0;
    const auto [ptr, ec] = std::from_chars(value.data(), value.data() + value.size(), pages);
    if (ec != std::errc() || ptr != value.data() + value.size() || value.empty() || pages > kMaxPages) {
      return parseError("a pgalloc_ counter that is not a page count");
    }
    total += pages;
    ++found;
  }
  if (found == 0) {
    return parseError("no pgalloc_ counter");
  }
  return total;
}

}  // namespace oomguard::cgroupfs
