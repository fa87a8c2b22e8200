// The kernel's log as people keep it (dmesg, journalctl -k, /dev/kmsg, or the bare messages), turned
// back into the kernel's messages. Pure: the caller reads the bytes; nothing here does I/O.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace oomguard::cgroupfs {

enum class KernelLogForm {
  kBare,     // the message alone (dmesg -t, a paste)
  kKmsg,     // /dev/kmsg: "prio,seq,usec,flags;message", then " KEY=value" dictionary lines
  kDmesg,    // "[ 1234.567890] message" (also dmesg -T "[Mon Dec  2 10:00:00 2024] ", --time-format iso,
             // and dmesg -x's "kern  :warn  : " in front)
  kJournal,  // journalctl -k: "Dec 02 10:00:00 host kernel: message"; -o short-monotonic
             // "[ 1234.567890] host kernel: message"; short-precise, short-iso, short-full, short-unix
};
const char* toString(KernelLogForm form);

struct KernelLogMessage {
  // The message as the kernel printed it: /dev/kmsg's \xNN escapes undone, and the lines dmesg and
  // journalctl print indented under a multi-line record joined back to it with '\n'. May hold any byte.
  std::string text;
  // The record's time in microseconds, when the form carries it to the microsecond: the printk clock
  // for kmsg and dmesg, the journal's monotonic time for short-monotonic, the time of day for
  // short-precise. Only differences between messages of one input mean anything.
  std::optional<uint64_t> timestamp_us;
  std::optional<uint64_t> sequence;  // the kmsg sequence number (kmsg form only)
  size_t line = 0;                   // 1-based line of the input where the message starts
  KernelLogForm form = KernelLogForm::kBare;
};

// Every message of `text`, each line read in whichever form it is in (a file may mix them). Empty lines
// are skipped, and so are /dev/kmsg dictionary lines (a line that starts with a space after a kmsg
// record). "\r\n" line ends are accepted. Never fails: a line in no known form is a bare message.
std::vector<KernelLogMessage> splitKernelLog(std::string_view text);

// /dev/kmsg escapes every byte below ' ', at or above 127, and '\' itself as "\xNN": this undoes it
// (exactly; a '\' not followed by "x" and two hex digits stays as it is).
std::string unescapeKmsg(std::string_view text);

}  // namespace oomguard::cgroupfs
