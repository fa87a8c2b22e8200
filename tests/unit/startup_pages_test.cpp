// Start-up's pages given back (io/startup_pages.hpp): which mappings of an smaps listing are releasable,
// and, on this machine's kernel, that a released read-only file mapping reads the same bytes again while
// a mapping holding private copies (as a RELRO segment does) is left whole.
#include "guardian/io/startup_pages.hpp"

#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

namespace oomguard::guardian::io {
namespace {

// One mapping's lines as smaps writes them (some of the fields oomguard does not read left out).
std::string mapping(const std::string& header, int rss_kb, int anonymous_kb, int swap_kb = 0,
                    const std::string& flags = "rd mr mw me") {
  return header + "\nSize:                 64 kB\nRss:                 " + std::to_string(rss_kb) +
         " kB\nAnonymous:           " + std::to_string(anonymous_kb) +
         " kB\nSwap:                " + std::to_string(swap_kb) +
         " kB\nTHPeligible:    0\nVmFlags: " + flags + "\n";
}

const std::vector<std::string> kNoneKept;

TEST(ReleasableRanges, OnlyReadOnlyFileMappingsWithoutPagesOfTheirOwn) {
  const std::string smaps =
      mapping("55d4e0000000-55d4e0010000 r--p 00000000 fe:01 131 /usr/lib/libstdc++.so.6", 64, 0) +
      mapping("55d4e0010000-55d4e0040000 r-xp 00010000 fe:01 131 /usr/lib/libstdc++.so.6", 128, 0, 0,
              "rd ex mr mw me lo") +
      mapping("55d4e0040000-55d4e0050000 r--p 00040000 fe:01 131 /usr/lib/libstdc++.so.6", 60, 8) +  // RELRO
      mapping("55d4e0050000-55d4e0060000 r--p 00050000 fe:01 131 /usr/lib/libm.so.6", 8, 0,
              4) +  // RELRO, swapped
      mapping("55d4e0060000-55d4e0061000 rw-p 00060000 fe:01 131 /usr/lib/libstdc++.so.6", 4, 4) +
      mapping("55d4e0070000-55d4e0071000 rw-s 00000000 00:1a 77 /dev/shm/shared", 4, 0) +  // writable
      mapping("55d4e0080000-55d4e0090000 r--s 00000000 00:05 78 /dev/mem", 64, 0, 0, "rd sh mr io pf") +
      mapping("55d4e1000000-55d4e1400000 rw-p 00000000 00:00 0                  [heap]", 1800, 1800) +
      mapping("7f0000000000-7f0000010000 r--s 00000000 00:00 0 ", 16, 0) +  // no file
      mapping("7f0000010000-7f0000020000 ---p 00020000 fe:01 200 /usr/lib/libx.so", 0, 0) +
      mapping("7f0000020000-7f0000030000 r-xp 00000000 fe:01 201 /opt/a dir/libold.so (deleted)", 12, 0) +
      mapping("7ffd00000000-7ffd00002000 r-xp 00000000 00:00 0                  [vdso]", 8, 0);
  const auto ranges = releasableRanges(smaps, kNoneKept);
  ASSERT_TRUE(ranges) << ranges.error().describe();
  ASSERT_EQ(ranges->size(), 3U);
  EXPECT_EQ(ranges.value()[0].start, 0x55d4e0000000U);
  EXPECT_EQ(ranges.value()[0].end, 0x55d4e0010000U);
  EXPECT_EQ(ranges.value()[0].rss_bytes, 64U * 1024);
  EXPECT_FALSE(ranges.value()[0].locked);
  EXPECT_EQ(ranges.value()[1].start, 0x55d4e0010000U);
  EXPECT_TRUE(ranges.value()[1].locked) << "VmFlags lo";
  EXPECT_EQ(ranges.value()[2].start, 0x7f0000020000U) << "a path with a space, deleted since: still its file";
  EXPECT_EQ(ranges.value()[2].rss_bytes, 12U * 1024);
}

TEST(ReleasableRanges, OomguardsOwnFilesAreKept) {
  const std::string smaps =
      mapping("55d4e0000000-55d4e0010000 r-xp 00000000 fe:01 131 /usr/bin/oomguard", 64, 0) +
      mapping("55d4e0010000-55d4e0020000 r-xp 00000000 fe:01 132 /usr/lib/oomguard/liboomguard_kube_tls.so",
              64, 0) +
      mapping("55d4e0020000-55d4e0030000 r-xp 00000000 fe:01 133 /usr/lib/libssl.so.3", 64, 0);
  const auto ranges = releasableRanges(smaps, {"/usr/bin/oomguard", "/usr/lib/oomguard/"});
  ASSERT_TRUE(ranges) << ranges.error().describe();
  ASSERT_EQ(ranges->size(), 1U);
  EXPECT_EQ(ranges.value()[0].start, 0x55d4e0020000U);
}

TEST(ReleasableRanges, AMappingWhosePrivatePagesAreNotListedIsKept) {
  const std::string header = "55d4e0000000-55d4e0010000 r--p 00000000 fe:01 131 /usr/lib/libm.so.6\n";
  for (const std::string& smaps : {header + "Rss:                 64 kB\nSwap:      0 kB\n",
                                   header + "Rss:                 64 kB\nAnonymous:      0 kB\n"}) {
    const auto ranges = releasableRanges(smaps, kNoneKept);
    ASSERT_TRUE(ranges);
    EXPECT_TRUE(ranges->empty()) << "without its Anonymous or Swap line, its pages may be private copies";
  }
}

TEST(ReleasableRanges, AMalformedListingIsAnErrorAndListsNothing) {
  const std::string good =
      mapping("55d4e0000000-55d4e0010000 r--p 00000000 fe:01 131 /usr/lib/libm.so.6", 64, 0);
  for (const std::string& bad : {
           good + "55d4e0010000 r-xp 00010000 fe:01 131 /usr/lib/libm.so.6\n",  // no end address
           good +
               "55d4e0010000-55d4e0000000 r-xp 00010000 fe:01 131 /usr/lib/libm.so.6\n",  // end before start
           good + "55d4e0010000-55d4e0040000 r-x 00010000 fe:01 131 /usr/lib/libm.so.6\n",  // perms
           good + "55d4e0010000-55d4e0040000 r-xp 00010000\n",                              // no inode
           std::string("Rss:                 64 kB\n") + good,                              // field first
           good + "55d4e0010000-55d4e0040000 r-xp 00010000 fe:01 131 /a\nRss: 64 MB\n",     // unit
           good + "55d4e0010000-55d4e0040000 r-xp 00010000 fe:01 131 /a\nAnonymous: x kB\n",
           good + "55d4e0010000-55d4e0040000 r-xp 00010000 fe:01 131 /a\nSwap: -1 kB\n",
           good + "   \n",
       }) {
    const auto ranges = releasableRanges(bad, kNoneKept);
    EXPECT_FALSE(ranges) << bad;
    if (!ranges) {
      EXPECT_TRUE(ranges.error().malformed());
    }
  }
}

// A field in kB ("Rss:", "Locked:") of this process's mapping that starts at `start`, from
// /proc/self/smaps; -1 when not found.
long smapsKbAt(const void* start, const std::string& field) {
  char prefix[32];
  std::snprintf(prefix, sizeof prefix, "%lx-", reinterpret_cast<unsigned long>(start));
  std::ifstream smaps("/proc/self/smaps");
  bool inside = false;
  for (std::string line; std::getline(smaps, line);) {
    const std::string first = line.substr(0, line.find(' '));
    if (!first.empty() && first.back() != ':') {  // a mapping's header line
      inside = line.rfind(prefix, 0) == 0;
    } else if (inside && first == field) {
      return std::strtol(line.c_str() + first.size(), nullptr, 10);
    }
  }
  return -1;
}
long rssKbAt(const void* start) {
  return smapsKbAt(start, "Rss:");
}

constexpr size_t kBytes = size_t{64} * 1024;

// An unlinked temporary file of kBytes ('a' to 'z' over and over); its descriptor, or -1.
int contentFile(std::string& content) {
  char name[] = "/tmp/oomguard-startup-pages-XXXXXX";
  const int fd = ::mkstemp(name);
  if (fd < 0) {
    return -1;
  }
  ::unlink(name);
  content.assign(kBytes, '\0');
  for (size_t i = 0; i < kBytes; ++i) {
    content[i] = static_cast<char>('a' + i % 26);
  }
  if (::write(fd, content.data(), kBytes) != static_cast<ssize_t>(kBytes)) {
    ::close(fd);
    return -1;
  }
  return fd;
}

TEST(ReleaseStartupPages, AReadOnlyFileMappingIsUnmappedAndReadsTheSameAgainAPrivateCopyIsKept) {
  std::string content;
  const int fd = contentFile(content);
  ASSERT_GE(fd, 0) << std::strerror(errno);
  // The file's own pages, read-only, as a library's text is mapped.
  void* text = ::mmap(nullptr, kBytes, PROT_READ, MAP_PRIVATE, fd, 0);
  // Private copies made read-only, as the dynamic linker leaves a RELRO segment.
  void* relro = ::mmap(nullptr, kBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
  ::close(fd);
  ASSERT_NE(text, MAP_FAILED);
  ASSERT_NE(relro, MAP_FAILED);
  std::memset(relro, 'R', kBytes);
  ASSERT_EQ(::mprotect(relro, kBytes, PROT_READ), 0);
  volatile char sum = 0;
  for (size_t i = 0; i < kBytes; i += 4096) {
    sum = static_cast<char>(sum + static_cast<const char*>(text)[i]);
  }
  ASSERT_EQ(rssKbAt(text), 64);
  ASSERT_EQ(rssKbAt(relro), 64);

  const auto released = releaseStartupPages(kNoneKept);
  ASSERT_TRUE(released) << released.error().describe();
  EXPECT_GE(released->rss_bytes, kBytes);
  EXPECT_EQ(rssKbAt(text), 0) << "the file's pages unmapped";
  EXPECT_EQ(rssKbAt(relro), 64) << "private copies kept";
  EXPECT_EQ(std::string(static_cast<const char*>(text), kBytes), content) << "mapped again from the file";
  EXPECT_EQ(std::string(static_cast<const char*>(relro), kBytes), std::string(kBytes, 'R'));
  ::munmap(text, kBytes);
  ::munmap(relro, kBytes);
}

// AddressSanitizer intercepts mlock and does nothing (it would lock the shadow memory).
#if defined(__SANITIZE_ADDRESS__)
constexpr bool kMlockLocks = false;
#else
constexpr bool kMlockLocks = true;
#endif

TEST(ReleaseStartupPages, ALockedMappingIsReleasedAndStaysLocked) {
  if (!kMlockLocks) {
    GTEST_SKIP() << "SKIPPED (under AddressSanitizer, mlock locks nothing): checked in the plain build";
  }
  std::string content;
  const int fd = contentFile(content);
  ASSERT_GE(fd, 0) << std::strerror(errno);
  // Locked, as mlockall locks what the daemon touched.
  void* locked = ::mmap(nullptr, kBytes, PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);
  ASSERT_NE(locked, MAP_FAILED);
  ASSERT_EQ(::mlock(locked, kBytes), 0) << "RLIMIT_MEMLOCK below 64 KiB? " << std::strerror(errno);
  ASSERT_EQ(rssKbAt(locked), 64);
  ASSERT_EQ(smapsKbAt(locked, "Locked:"), 64);

  const auto released = releaseStartupPages(kNoneKept);
  ASSERT_TRUE(released) << released.error().describe();
  if (released->locked_kept > 0) {
    ::munmap(locked, kBytes);
    GTEST_SKIP() << "SKIPPED: this kernel cannot release locked pages (MADV_DONTNEED_LOCKED is Linux 5.18)";
  }
  EXPECT_EQ(rssKbAt(locked), 0) << "locked pages released too";
  EXPECT_EQ(std::string(static_cast<const char*>(locked), kBytes), content);
  EXPECT_EQ(rssKbAt(locked), 64);
  EXPECT_EQ(smapsKbAt(locked, "Locked:"), 64) << "the mapping still locked (smaps counts Locked by mapping)";
  ::munmap(locked, kBytes);
}

TEST(ReleaseStartupPages, OomguardsOwnFilesKeepTheRunningExecutablesCode) {
  const std::vector<std::string> own = ownFiles();
  ASSERT_EQ(own.size(), 2U);
  EXPECT_TRUE(own[1].ends_with("/lib/oomguard/")) << own[1];
  std::ifstream file("/proc/self/smaps");
  const std::string smaps((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
  // This test's own code, in the running executable's text: listed when nothing is kept, not when its
  // own files are.
  const auto code = reinterpret_cast<uintptr_t>(&smapsKbAt);
  auto lists = [&](const std::vector<std::string>& kept) {
    const auto ranges = releasableRanges(smaps, kept);
    EXPECT_TRUE(ranges) << ranges.error().describe();
    return ranges && std::any_of(ranges->begin(), ranges->end(), [&](const ReleasableRange& range) {
             return range.start <= code && code < range.end;
           });
  };
  EXPECT_TRUE(lists(kNoneKept)) << "the executable's text, resident and without private pages";
  EXPECT_FALSE(lists(own)) << own[0];
}

TEST(ReleaseStartupPages, AnUnreadableListingReleasesNothing) {
  const auto released = releaseStartupPages(kNoneKept, "/nonexistent/smaps");
  ASSERT_FALSE(released);
  EXPECT_EQ(released.error().errno_value, ENOENT);
}

}  // namespace
}  // namespace oomguard::guardian::io
