#include "guardian/io/startup_pages.hpp"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <optional>
#include <utility>

#include "cgroupfs/file_reader.hpp"
#include "cgroupfs/parse.hpp"

namespace oomguard::guardian::io {
namespace {

// MADV_DONTNEED_LOCKED: Linux 5.18, glibc 2.36's headers.
#ifdef MADV_DONTNEED_LOCKED
constexpr int kMadvDontneedLocked = MADV_DONTNEED_LOCKED;
#else
constexpr int kMadvDontneedLocked = 24;  // include/uapi/asm-generic/mman-common.h
#endif

template <class T>
std::optional<T> parseNumber(std::string_view text, int base) {
  T value{};
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value, base);
  if (error != std::errc() || end != text.data() + text.size() || text.empty()) {
    return std::nullopt;
  }
  return value;
}

std::string_view skipSpaces(std::string_view text) {
  const size_t first = text.find_first_not_of(' ');
  return first == std::string_view::npos ? std::string_view() : text.substr(first);
}

// The next space-separated token of `text`, which is left after it.
std::string_view nextToken(std::string_view& text) {
  text = skipSpaces(text);
  const size_t space = text.find(' ');
  const std::string_view token = text.substr(0, space);
  text = space == std::string_view::npos ? std::string_view() : text.substr(space);
  return token;
}

struct Mapping {
  ReleasableRange range;
  bool candidate = false;  // a file path, not kept, no 'w'
  std::optional<uint64_t> anonymous_kb;
  std::optional<uint64_t> swap_kb;
  bool device_or_hugetlb = false;  // VmFlags pf, io or ht
};

// A header line: "start-end perms offset dev inode [path]".
std::optional<Mapping> parseHeader(std::string_view line, const std::vector<std::string>& kept_prefixes) {
  std::string_view rest = line;
  const std::string_view addresses = nextToken(rest);
  const std::string_view perms = nextToken(rest);
  const size_t dash = addresses.find('-');
  if (dash == std::string_view::npos || perms.size() != 4) {
    return std::nullopt;
  }
  const auto start = parseNumber<uintptr_t>(addresses.substr(0, dash), 16);
  const auto end = parseNumber<uintptr_t>(addresses.substr(dash + 1), 16);
  if (!start || !end || *end < *start) {
    return std::nullopt;
  }
  for (int field = 0; field < 3; ++field) {  // offset, device, inode
    if (nextToken(rest).empty()) {
      return std::nullopt;
    }
  }
  const std::string_view path = skipSpaces(rest);
  Mapping mapping;
  mapping.range.start = *start;
  mapping.range.end = *end;
  mapping.candidate = perms.find('w') == std::string_view::npos && !path.empty() && path.front() == '/' &&
                      std::none_of(kept_prefixes.begin(), kept_prefixes.end(),
                                   [&](const std::string& prefix) { return path.starts_with(prefix); });
  return mapping;
}

}  // namespace

cgroupfs::Result<std::vector<ReleasableRange>> releasableRanges(
    std::string_view smaps, const std::vector<std::string>& kept_prefixes) {
  std::vector<ReleasableRange> ranges;
  std::optional<Mapping> current;
  auto finish = [&] {
    if (current && current->candidate && current->anonymous_kb == uint64_t{0} &&
        current->swap_kb == uint64_t{0} && !current->device_or_hugetlb && current->range.rss_bytes > 0) {
      ranges.push_back(current->range);
    }
  };
  while (!smaps.empty()) {
    const size_t newline = smaps.find('\n');
    const std::string_view line = smaps.substr(0, newline);
    smaps = newline == std::string_view::npos ? std::string_view() : smaps.substr(newline + 1);
    if (line.empty()) {
      continue;
    }
    std::string_view rest = line;
    const std::string_view first = nextToken(rest);
    if (first.empty() || first.back() != ':') {  // a field's name ends in ':', a header's addresses never
      finish();
      current = parseHeader(line, kept_prefixes);
      if (!current) {
        return cgroupfs::parseError("malformed mapping line \"" + std::string(line.substr(0, 120)) + "\"");
      }
      continue;
    }
    if (!current) {
      return cgroupfs::parseError("a field before the first mapping");
    }
    if (first == "VmFlags:") {
      for (std::string_view flag = nextToken(rest); !flag.empty(); flag = nextToken(rest)) {
        current->range.locked = current->range.locked || flag == "lo";
        current->device_or_hugetlb =
            current->device_or_hugetlb || flag == "pf" || flag == "io" || flag == "ht";
      }
    } else if (first == "Rss:" || first == "Anonymous:" || first == "Swap:") {
      uint64_t kb = 0;
      if (!cgroupfs::parseKbValue(rest, kb)) {
        return cgroupfs::parseError("malformed field \"" + std::string(line.substr(0, 120)) + "\"");
      }
      if (first == "Rss:") {
        current->range.rss_bytes = kb * 1024;
      } else if (first == "Anonymous:") {
        current->anonymous_kb = kb;
      } else {
        current->swap_kb = kb;
      }
    }
  }
  finish();
  return ranges;
}

std::vector<std::string> ownFiles() {
  std::array<char, 4096> exe{};
  const ssize_t length = ::readlink("/proc/self/exe", exe.data(), exe.size() - 1);
  if (length <= 0) {
    return {};
  }
  const std::filesystem::path executable(std::string(exe.data(), static_cast<size_t>(length)));
  return {executable.string(), (executable.parent_path().parent_path() / "lib" / "oomguard").string() + "/"};
}

cgroupfs::Result<ReleasedPages> releaseStartupPages(const std::vector<std::string>& kept_prefixes,
                                                    const std::string& smaps_path) {
  cgroupfs::FileReader reader;
  auto text = reader.read(smaps_path);
  if (!text) {
    return text.error();
  }
  auto ranges = releasableRanges(text.value(), kept_prefixes).withPath(smaps_path);
  if (!ranges) {
    return ranges.error();
  }
  // Whether the kernel knows MADV_DONTNEED_LOCKED: it checks the advice before the length, and an
  // empty range is then done.
  const bool locked_advice = ::madvise(nullptr, 0, kMadvDontneedLocked) == 0;
  ReleasedPages released;
  for (const ReleasableRange& range : ranges.value()) {
    if (range.locked && !locked_advice) {
      ++released.locked_kept;
      continue;
    }
    // NOLINTNEXTLINE(performance-no-int-to-ptr): the address is the kernel's own, from smaps
    void* start = reinterpret_cast<void*>(range.start);
    if (::madvise(start, range.end - range.start, range.locked ? kMadvDontneedLocked : MADV_DONTNEED) != 0) {
      const int error = errno;
      if (released.failed++ == 0) {
        std::array<char, 64> addresses{};
        std::snprintf(addresses.data(), addresses.size(),
                      "%lx-%lx: ", static_cast<unsigned long>(range.start),
                      static_cast<unsigned long>(range.end));
        released.first_failure = addresses.data() + std::string(std::strerror(error));
      }
      continue;
    }
    ++released.mappings;
    released.rss_bytes += range.rss_bytes;
  }
  return released;
}

}  // namespace oomguard::guardian::io
