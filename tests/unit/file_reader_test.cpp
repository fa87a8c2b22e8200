// FileReader against what a hostile or broken fixture tree (--proc-root, --cgroup-root) may hold: a
// FIFO must not block, /dev/zero must not grow the buffer without bound, a huge file is refused.
#include <gtest/gtest.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <ctime>
#include <fstream>
#include <iterator>
#include <string>

#include "cgroupfs/file_reader.hpp"

namespace oomguard::cgroupfs {
namespace {

class FileReaderLimits : public ::testing::Test {
 protected:
  std::string dir = ::testing::TempDir() + "oomguard-reader-" + std::to_string(::getpid());
  void SetUp() override { ASSERT_EQ(::mkdir(dir.c_str(), 0700), 0); }
  void TearDown() override {
    for (const char* name : {"/fifo", "/big", "/small"}) {
      ::unlink((dir + name).c_str());
    }
    ::rmdir(dir.c_str());
  }
};

TEST_F(FileReaderLimits, AFifoWithoutWriterReadsEmptyAtOnce) {
  ASSERT_EQ(::mkfifo((dir + "/fifo").c_str(), 0600), 0);
  FileReader reader;
  const auto text = reader.read(dir + "/fifo");
  ASSERT_TRUE(text.ok()) << text.error().describe();
  EXPECT_TRUE(text.value().empty());
}

TEST_F(FileReaderLimits, AFifoWithAWriterButNoDataFailsInsteadOfBlocking) {
  ASSERT_EQ(::mkfifo((dir + "/fifo").c_str(), 0600), 0);
  const int writer = ::open((dir + "/fifo").c_str(), O_RDWR | O_NONBLOCK);  // holds a writer end
  ASSERT_GE(writer, 0);
  FileReader reader;
  const auto text = reader.read(dir + "/fifo");
  ASSERT_FALSE(text.ok());
  EXPECT_EQ(text.error().errno_value, EAGAIN);
  ::close(writer);
}

TEST_F(FileReaderLimits, ACharacterDeviceIsRefusedAfterTheFirstMegabyte) {
  FileReader reader;
  const auto text = reader.read("/dev/zero");
  ASSERT_FALSE(text.ok());
  EXPECT_NE(text.error().message.find("not a regular file"), std::string::npos) << text.error().describe();
}

TEST_F(FileReaderLimits, AFileOverTheCapIsRefusedAndTheReaderStaysUsable) {
  {
    std::ofstream out(dir + "/big");
    const std::string block(size_t{1024} * 1024, 'x');
    for (size_t i = 0; i <= FileReader::kMaxBytes / block.size(); ++i) {
      out << block;
    }
  }
  std::ofstream(dir + "/small") << "42\n";
  FileReader reader;
  const auto big = reader.read(dir + "/big");
  ASSERT_FALSE(big.ok());
  EXPECT_EQ(big.error().errno_value, EFBIG);
  const auto small = reader.read(dir + "/small");
  ASSERT_TRUE(small.ok());
  EXPECT_EQ(small.value(), "42\n");
}

// One read for the files the kernel makes in one piece, to the end for the rest: a multi-record kernel
// file (/proc/self/mountinfo, /proc/vmstat) stops a read at its own page-sized buffer, short of its end.
TEST(FileReaderWhole, OnlyOneRecordFilesStopAtAShortRead) {
  for (const char* name : {"/proc/1/status", "oom_score_adj", "oom_score", "/proc/meminfo", "/proc/pressure/memory",
                           "memory.current", "memory.max", "memory.swap.max", "memory.events", "stat", "cgroup"}) {
    EXPECT_TRUE(producedWhole(name)) << name;
  }
  for (const char* name : {"/proc/vmstat", "cgroup.procs", "cgroup.threads", "/proc/self/mountinfo", "cpu.stat",
                           "memory.current/cgroup.procs", "io.pressure", "memory.kmem.slabinfo"}) {
    EXPECT_FALSE(producedWhole(name)) << name;
  }
}

TEST(FileReaderWhole, AMultiRecordKernelFileLargerThanAPageIsReadToItsEnd) {
  // Multi-record seq_files that pass a page on usual kernels; counters move between two reads, the
  // first word of each line (the keys and their order) does not. Read whole by read(), and by
  // readFromStart() again and again on one kept descriptor: several preads, each at the offset reached,
  // and each new read at 0 makes the text anew.
  auto keys = [](std::string_view body) {
    std::string out;
    for (size_t at = 0; at < body.size();) {
      const size_t end = body.find('\n', at);
      out += body.substr(at, std::min(body.find(' ', at), end) - at);
      out += ',';
      at = end == std::string_view::npos ? body.size() : end + 1;
    }
    return out;
  };
  size_t checked = 0;
  for (const char* file : {"/proc/crypto", "/proc/zoneinfo", "/proc/vmstat"}) {
    std::ifstream in(file);
    const std::string expected((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (expected.size() <= 4096) {
      continue;
    }
    ASSERT_FALSE(producedWhole(file));
    FileReader reader;
    const auto text = reader.read(file);
    ASSERT_TRUE(text.ok()) << text.error().describe();
    EXPECT_EQ(keys(text.value()), keys(expected)) << file;
    const UniqueFd kept(::open(file, O_RDONLY | O_CLOEXEC));
    ASSERT_TRUE(kept.valid()) << file;
    for (int read = 0; read < 3; ++read) {
      const auto again = reader.readFromStart(kept.get(), file, file);
      ASSERT_TRUE(again.ok()) << again.error().describe();
      EXPECT_EQ(keys(again.value()), keys(expected)) << file << ", kept, read " << read;
    }
    ++checked;
  }
  if (checked == 0) {
    GTEST_SKIP() << "no multi-record /proc file over a page here (/proc/crypto, /proc/zoneinfo, /proc/vmstat)";
  }
}

TEST(FileReaderWhole, AOneRecordFileLargerThanTheFirstBufferIsStillReadWhole) {
  const std::string dir = ::testing::TempDir() + "oomguard-whole-" + std::to_string(::getpid());
  ASSERT_EQ(::mkdir(dir.c_str(), 0700), 0);
  const std::string big(10000, 'x');
  std::ofstream(dir + "/memory.stat") << big << "\nend\n";
  FileReader reader;
  const auto text = reader.read(dir + "/memory.stat");
  ::unlink((dir + "/memory.stat").c_str());
  ::rmdir(dir.c_str());
  ASSERT_TRUE(text.ok()) << text.error().describe();
  EXPECT_EQ(text.value(), big + "\nend\n");
}

}  // namespace
}  // namespace oomguard::cgroupfs

#include "cgroupfs/procfs.hpp"

namespace oomguard::cgroupfs {
namespace {

TEST(ParseStatStartTime, Field22AfterTheLastParenthesis) {
  // A real line's shape; the comm holds ") " and spaces, as any process may name itself.
  const std::string line =
      "4242 (a) b (c) d) S 1 4242 4242 0 -1 4194560 1000 0 0 0 5 3 0 0 20 0 1 0 987654 12345678 300 "
      "18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0\n";
  const auto ticks = parseStatStartTime(line);
  ASSERT_TRUE(ticks.ok()) << ticks.error().describe();
  EXPECT_EQ(ticks.value(), 987654U);
  EXPECT_FALSE(parseStatStartTime("4242 (x) S 1 2 3").ok());
  EXPECT_FALSE(parseStatStartTime("no parenthesis at all").ok());
  EXPECT_FALSE(parseStatStartTime("1 (x) S 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 notanumber 1").ok());
}

TEST(ParseStatStartTime, ThisProcessStartedBeforeNow) {
  ProcFs procfs("/proc");
  const auto ticks = procfs.readStartTimeTicks(::getpid());
  ASSERT_TRUE(ticks.ok()) << ticks.error().describe();
  timespec now{};
  ::clock_gettime(CLOCK_BOOTTIME, &now);
  EXPECT_LE(ticks.value(), static_cast<uint64_t>(now.tv_sec + 1) * static_cast<uint64_t>(::sysconf(_SC_CLK_TCK)));
  EXPECT_GT(ticks.value(), 0U);
}

}  // namespace
}  // namespace oomguard::cgroupfs
