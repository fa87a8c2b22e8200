// Fuzzes the OOM report assembler: the input is a stream of kmsg records, one a line, fed in order with
// their timestamps. Any input must leave it consistent: no crash, leak or sanitizer report.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "cgroupfs/kmsg.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view stream(reinterpret_cast<const char*>(data), size);
  oomguard::cgroupfs::OomReportAssembler assembler;
  size_t events = 0;
  while (!stream.empty()) {
    const auto end = stream.find('\n');
    const auto line = stream.substr(0, end);
    stream = end == std::string_view::npos ? std::string_view() : stream.substr(end + 1);
    if (auto record = oomguard::cgroupfs::parseKmsgRecord(line)) {
      events += assembler.feed(record.value().message, record.value().timestamp_us).size();
    } else {
      events += assembler.feed(line).size();
    }
  }
  if (events > size) {
    __builtin_trap();  // each event needs at least one byte of input
  }
  return 0;
}
