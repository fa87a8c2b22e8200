// The /proc files the level watch reads several times a second (vmstat, meminfo, pressure/memory) are
// kept open and read again from offset 0 (ProcFs::readHeld, FileReader::readFromStart; a kept file over
// a page: file_reader_test's FileReaderWhole.AMultiRecordKernelFile...). What must hold:
// each read is the file as it is now (not the text of the first read, not the empty rest of it), one
// descriptor is kept per file however many reads follow, and a fixture tree's file, which a test may
// replace under its name, is opened at each read.
#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/magic.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <fstream>
#include <memory>
#include <string>

#include "cgroupfs/procfs.hpp"

namespace oomguard::cgroupfs {
namespace {

// This process's open descriptors (the listing's own is counted in each count alike).
int openDescriptors() {
  const std::unique_ptr<DIR, int (*)(DIR*)> dir(::opendir("/proc/self/fd"), ::closedir);
  int count = 0;
  while (const dirent* entry = ::readdir(dir.get())) {
    count += entry->d_name[0] != '.' ? 1 : 0;
  }
  return count;
}

// Whether `path` is on procfs (in a container, lxcfs may mount a FUSE file over /proc/meminfo).
bool onProcfs(const char* path) {
  struct statfs filesystem {};
  return ::statfs(path, &filesystem) == 0 && filesystem.f_type == PROC_SUPER_MAGIC;
}

TEST(HeldProcFiles, VmstatReadAgainSeesTheHostsNewAllocationsThroughOneKeptDescriptor) {
  if (!onProcfs("/proc/vmstat")) {
    GTEST_SKIP() << "/proc/vmstat is not on procfs here: nothing is kept open";
  }
  ProcFs procfs("/proc");
  const int before = openDescriptors();
  const auto first = procfs.readAllocatedPages();
  ASSERT_TRUE(first.ok()) << first.error().describe();
  EXPECT_EQ(openDescriptors(), before + 1) << "/proc/vmstat kept open after its first read";
  // 64 MiB allocated and touched: at least 16,384 pages more in pgalloc_*, whatever else the host does.
  // MAP_POPULATE faults every page in at the mmap (no store the compiler could drop).
  constexpr size_t kBytes = size_t{64} << 20;
  constexpr int kFlags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE;
  void* const memory = ::mmap(nullptr, kBytes, PROT_READ | PROT_WRITE, kFlags, -1, 0);
  ASSERT_NE(memory, MAP_FAILED);
  const auto second = procfs.readAllocatedPages();
  ::munmap(memory, kBytes);
  ASSERT_TRUE(second.ok()) << second.error().describe();
  EXPECT_GE(second.value(), first.value() + kBytes / static_cast<size_t>(::sysconf(_SC_PAGESIZE)));
  EXPECT_EQ(openDescriptors(), before + 1) << "the second read reuses the kept descriptor";
  // meminfo and the host's memory pressure likewise: one descriptor each, however many reads.
  for (int read = 0; read < 3; ++read) {
    const auto meminfo = procfs.readMemInfo();
    ASSERT_TRUE(meminfo.ok()) << meminfo.error().describe();
    EXPECT_GT(meminfo.value().mem_total_kb, 0U);
  }
  const bool psi = procfs.readPressure("memory").ok() && onProcfs("/proc/pressure/memory");
  EXPECT_EQ(openDescriptors(), before + 1 + (onProcfs("/proc/meminfo") ? 1 : 0) + (psi ? 1 : 0));
}

TEST(HeldProcFiles, AFixtureFileReplacedUnderItsNameIsReadAnew) {
  const std::string root = ::testing::TempDir() + "oomguard-held-" + std::to_string(::getpid());
  ASSERT_EQ(::mkdir(root.c_str(), 0700), 0);
  auto write = [&](const char* name, uint64_t total_kb) {
    std::ofstream(root + "/" + name) << "MemTotal: " << total_kb << " kB\nMemFree: 1 kB\nMemAvailable: 2 kB\n"
                                     << "SwapTotal: 0 kB\nSwapFree: 0 kB\n";
  };
  write("meminfo", 1000);
  ProcFs procfs(root);
  const int before = openDescriptors();
  const auto first = procfs.readMemInfo();
  ASSERT_TRUE(first.ok()) << first.error().describe();
  EXPECT_EQ(first.value().mem_total_kb, 1000U);
  EXPECT_EQ(openDescriptors(), before) << "a fixture's file is not kept open";
  write("meminfo.new", 2000);  // replaced as a test harness does: a new file renamed over the old
  ASSERT_EQ(std::rename((root + "/meminfo.new").c_str(), (root + "/meminfo").c_str()), 0);
  const auto second = procfs.readMemInfo();
  ASSERT_TRUE(second.ok()) << second.error().describe();
  EXPECT_EQ(second.value().mem_total_kb, 2000U);
  ::unlink((root + "/meminfo").c_str());
  EXPECT_FALSE(procfs.readMemInfo().ok()) << "a fixture file that is gone fails the read";
  ::rmdir(root.c_str());
}

}  // namespace
}  // namespace oomguard::cgroupfs
