// One libFuzzer target per parser: OOMGUARD_FUZZ_PARSER names the cgroupfs parser this build exercises.
// A parser must return a value or an Error for any input: never crash, leak or trip a sanitizer.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "cgroupfs/kmsg.hpp"
#include "cgroupfs/parse.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const auto result = oomguard::cgroupfs::OOMGUARD_FUZZ_PARSER(text);
  if (!result.ok()) {
    // Describing an error must be safe too, and name a reason.
    if (result.error().describe().empty()) {
      __builtin_trap();
    }
  }
  return 0;
}
