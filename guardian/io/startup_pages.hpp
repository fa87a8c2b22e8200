// Start-up's pages of library code and read-only data, given back once start-up is done.
//
// Every page of the libraries that start-up touched (the dynamic linker's symbol lookups in libstdc++'s
// tables, iostream and locale set-up, the config parser's calls) stays mapped, and counts in the
// daemon's RSS, for as long as it runs; the kernel also maps up to 64 KiB around each page fault
// (fault-around). With 500 watched cgroups, after 30 s idle: libstdc++ had 1.7 MiB resident of which the
// idle loop had touched 56 KiB (smaps Referenced after clear_refs). Released, such pages stay in the
// page cache, and a later use maps one again with a minor fault; under memory pressure, unmapped file
// pages are among the first the kernel reclaims, and a later use may then wait for a disk read (the
// trade-off config.self.release_startup_pages documents). oomguard's own executable and modules are
// kept: its kill path is there, and start-up ran code of theirs the daemon needs again under pressure
// (the OOM report parser, the config parser of a reload).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "cgroupfs/result.hpp"

namespace oomguard::guardian::io {

// One mapping whose resident pages are all the file's own, in the page cache.
struct ReleasableRange {
  uintptr_t start = 0;
  uintptr_t end = 0;
  uint64_t rss_bytes = 0;  // its Rss when listed
  bool locked = false;     // mlock'ed (VmFlags "lo")
};

// The releasable mappings in `smaps` (the text of /proc/<pid>/smaps), in address order: each mapping
// that has a file path not starting with one of `kept_prefixes`, no 'w' in its permissions, Rss above 0,
// "Anonymous: 0 kB" and "Swap: 0 kB", and none of the VmFlags pf, io, ht (raw device pages, hugetlb).
// Never listed: a read-only mapping with private pages, present (Anonymous) or swapped out (Swap),
// which is a RELRO segment (the dynamic linker wrote relocations into private copies, then made them
// read-only; dropping them would map the file's unrelocated bytes back); a writable mapping; one
// without a file ([heap], [stack], [vdso], anonymous memory); one whose Anonymous or Swap line is
// missing. A malformed header or field: an error, nothing listed.
cgroupfs::Result<std::vector<ReleasableRange>> releasableRanges(
    std::string_view smaps, const std::vector<std::string>& kept_prefixes);

struct ReleasedPages {
  size_t mappings = 0;
  uint64_t rss_bytes = 0;     // the Rss those mappings had
  size_t locked_kept = 0;     // locked mappings kept: the kernel cannot release locked pages (< 5.18)
  size_t failed = 0;          // mappings whose madvise failed (each kept as it was)
  std::string first_failure;  // the first of those: its addresses and the error
};

// oomguard's own files: the running executable (/proc/self/exe) and the directory of its modules
// (<executable's directory>/../lib/oomguard/). Empty when /proc/self/exe cannot be read.
std::vector<std::string> ownFiles();

// Unmaps the resident pages of every releasable mapping of this process: MADV_DONTNEED, or, for a
// mlock'ed one, MADV_DONTNEED_LOCKED (Linux 5.18), which keeps the mapping locked: a page touched again
// is locked again (MCL_ONFAULT). A failed madvise keeps that mapping as it was and the others go on.
// An error when `smaps_path` cannot be read or parsed (nothing released). Must not race a thread that
// unmaps, remaps or mprotects a file mapping of this process between the listing and the madvise
// (dlclose, munmap, mremap, mmap MAP_FIXED): a range freed and reused by anonymous memory would be
// zeroed.
cgroupfs::Result<ReleasedPages> releaseStartupPages(const std::vector<std::string>& kept_prefixes,
                                                    const std::string& smaps_path = "/proc/self/smaps");

}  // namespace oomguard::guardian::io
