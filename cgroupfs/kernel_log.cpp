#include "cgroupfs/kernel_log.hpp"

#include <algorithm>
#include <array>

#include "cgroupfs/kmsg.hpp"

namespace oomguard::cgroupfs {
namespace {

bool isDigit(char c) {
  return c >= '0' && c <= '9';
}

bool allDigits(std::string_view text) {
  if (text.empty()) {
    return false;
  }
  for (const char c : text) {
    if (!isDigit(c)) {
      return false;
    }
  }
  return true;
}

// Whole digits with at most 19 of them (no overflow of uint64_t).
std::optional<uint64_t> decimal(std::string_view text) {
  if (!allDigits(text) || text.size() > 19) {
    return std::nullopt;
  }
  uint64_t value = 0;
  for (const char c : text) {
    value = value * 10 + static_cast<uint64_t>(c - '0');
  }
  return value;
}

// Up to 9 fraction digits ("5678") -> microseconds (5678 -> 567800).
std::optional<uint64_t> fractionMicros(std::string_view fraction) {
  if (fraction.size() > 9 || !allDigits(fraction)) {
    return std::nullopt;
  }
  uint64_t micros = 0;
  for (size_t i = 0; i < 6; ++i) {
    micros = micros * 10 + (i < fraction.size() ? static_cast<uint64_t>(fraction[i] - '0') : 0);
  }
  return micros;
}

// "1234.567890" (seconds, '.' or ',', 1..9 fraction digits) -> microseconds.
std::optional<uint64_t> secondsMicros(std::string_view text) {
  const auto dot = text.find_first_of(".,");
  if (dot == std::string_view::npos) {
    return std::nullopt;
  }
  const auto seconds = decimal(text.substr(0, dot));
  const auto micros = fractionMicros(text.substr(dot + 1));
  if (!seconds || !micros || *seconds > UINT64_MAX / 1000000 - 1) {
    return std::nullopt;
  }
  return *seconds * 1000000 + *micros;
}

// The time of day in microseconds from the first "HH:MM:SS.ffffff" (or ',') in `token`; none when it
// has no fraction (a resolution of one second says nothing about the order of a report's lines).
std::optional<uint64_t> timeOfDayMicros(std::string_view token) {
  const auto two = [](std::string_view at) {
    return static_cast<uint64_t>(at[0] - '0') * 10 + static_cast<uint64_t>(at[1] - '0');
  };
  for (size_t i = 0; i + 8 <= token.size(); ++i) {
    const auto t = token.substr(i);
    if (!(isDigit(t[0]) && isDigit(t[1]) && t[2] == ':' && isDigit(t[3]) && isDigit(t[4]) && t[5] == ':' &&
          isDigit(t[6]) && isDigit(t[7]))) {
      continue;
    }
    if (t.size() < 10 || (t[8] != '.' && t[8] != ',')) {
      return std::nullopt;
    }
    size_t end = 9;
    while (end < t.size() && isDigit(t[end])) {
      ++end;
    }
    const auto micros = fractionMicros(t.substr(9, end - 9));
    if (end == 9 || !micros) {
      return std::nullopt;
    }
    return (two(t) * 3600 + two(t.substr(3)) * 60 + two(t.substr(6))) * 1000000 + *micros;
  }
  return std::nullopt;
}

bool isName(std::string_view token, const std::array<std::string_view, 12>& names) {
  for (const auto name : names) {
    if (!name.empty() && token == name) {
      return true;
    }
  }
  return false;
}

bool isMonth(std::string_view token) {
  return isName(token, {"Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"});
}
bool isWeekday(std::string_view token) {
  return isName(token, {"Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"});
}
// "2024-12-02" or "2024-12-02T10:00:00+0100"
bool isIsoDate(std::string_view token) {
  return token.size() >= 10 && allDigits(token.substr(0, 4)) && token[4] == '-' && token[7] == '-';
}

struct Prefix {
  KernelLogForm form = KernelLogForm::kBare;
  size_t message_at = 0;
  std::optional<uint64_t> timestamp_us;
};

struct Token {
  std::string_view text;
  size_t at = 0;
};

// Up to `most` tokens separated by spaces.
std::vector<Token> tokens(std::string_view line, size_t most) {
  std::vector<Token> out;
  size_t i = 0;
  while (out.size() < most) {
    while (i < line.size() && line[i] == ' ') {
      ++i;
    }
    if (i >= line.size()) {
      break;
    }
    const auto end = line.find(' ', i);
    const size_t stop = end == std::string_view::npos ? line.size() : end;
    out.push_back(Token{line.substr(i, stop - i), i});
    i = stop;
  }
  return out;
}

// "host kernel: message" at `from`: where the message starts.
std::optional<size_t> hostKernel(std::string_view line, size_t from) {
  const auto rest = line.substr(from);
  const auto space = rest.find(' ');
  if (space == 0 || space == std::string_view::npos) {
    return std::nullopt;
  }
  const auto after = rest.substr(space + 1);
  if (after == "kernel:") {
    return line.size();
  }
  if (after.starts_with("kernel: ")) {
    return from + space + 1 + 8;
  }
  return std::nullopt;
}

// "kern  :warn  : " (dmesg -x): the length of the decoration, 0 when there is none.
size_t facilityDecoration(std::string_view line) {
  size_t i = 0;
  for (int field = 0; field < 2; ++field) {
    const size_t start = i;
    while (i < line.size() && line[i] >= 'a' && line[i] <= 'z') {
      ++i;
    }
    if (i == start) {
      return 0;
    }
    while (i < line.size() && line[i] == ' ') {
      ++i;
    }
    if (i >= line.size() || line[i] != ':') {
      return 0;
    }
    ++i;
  }
  return i < line.size() && line[i] == ' ' ? i + 1 : 0;
}

std::optional<Prefix> bracketPrefix(std::string_view line, size_t from) {
  if (from >= line.size() || line[from] != '[') {
    return std::nullopt;
  }
  const auto close = line.find(']', from);
  if (close == std::string_view::npos || close + 1 >= line.size() || line[close + 1] != ' ') {
    return std::nullopt;
  }
  std::string_view inside = line.substr(from + 1, close - from - 1);
  while (!inside.empty() && inside.front() == ' ') {
    inside.remove_prefix(1);
  }
  Prefix prefix{KernelLogForm::kDmesg, close + 2, std::nullopt};
  if (auto micros = secondsMicros(inside)) {
    prefix.timestamp_us = micros;
  } else if (inside.size() < 3 || !isWeekday(inside.substr(0, 3)) ||
             inside.find(':') == std::string_view::npos) {
    return std::nullopt;  // a task-table row "[    141]", a "[  pid  ]" header: part of a message
  }
  if (auto message_at = hostKernel(line, prefix.message_at)) {
    prefix.form = KernelLogForm::kJournal;
    prefix.message_at = *message_at;
  }
  return prefix;
}

// journalctl's short formats ("Dec 02 10:00:00 host kernel: ", short-iso, short-full, short-unix) and
// dmesg --time-format iso ("2024-12-02T10:00:00,123456+01:00 message").
std::optional<Prefix> datedPrefix(std::string_view line) {
  const auto words = tokens(line, 7);
  if (words.empty()) {
    return std::nullopt;
  }
  const auto first = words.front().text;
  const bool unix_time = secondsMicros(first).has_value();
  if (!isMonth(first) && !isWeekday(first) && !isIsoDate(first) && !unix_time) {
    return std::nullopt;
  }
  for (size_t k = 2; k < words.size(); ++k) {
    if (words[k].text != "kernel:") {
      continue;
    }
    bool has_time = unix_time;
    std::optional<uint64_t> micros = unix_time ? secondsMicros(first) : std::nullopt;
    for (size_t i = 0; i + 1 < k; ++i) {
      if (words[i].text.find(':') != std::string_view::npos) {
        has_time = true;
        micros = micros ? micros : timeOfDayMicros(words[i].text);
      }
    }
    if (!has_time) {
      return std::nullopt;
    }
    const size_t after = words[k].at + words[k].text.size();
    return Prefix{KernelLogForm::kJournal, after < line.size() ? after + 1 : line.size(), micros};
  }
  if (isIsoDate(first) && first.size() > 10 && first[10] == 'T') {
    const size_t after = first.size();
    return Prefix{KernelLogForm::kDmesg, after < line.size() ? after + 1 : line.size(),
                  timeOfDayMicros(first)};
  }
  return std::nullopt;
}

std::optional<Prefix> linePrefix(std::string_view line) {
  const size_t decoration = facilityDecoration(line);
  if (auto prefix = bracketPrefix(line, decoration)) {
    return prefix;
  }
  if (decoration > 0) {
    return Prefix{KernelLogForm::kDmesg, decoration, std::nullopt};  // dmesg -x -t
  }
  return datedPrefix(line);
}

int hexValue(char c) {
  if (isDigit(c)) {
    return c - '0';
  }
  if (c >= 'a' && c <= 'f') {
    return c - 'a' + 10;
  }
  if (c >= 'A' && c <= 'F') {
    return c - 'A' + 10;
  }
  return -1;
}

}  // namespace

const char* toString(KernelLogForm form) {
  switch (form) {
    case KernelLogForm::kBare:
      return "bare";
    case KernelLogForm::kKmsg:
      return "kmsg";
    case KernelLogForm::kDmesg:
      return "dmesg";
    case KernelLogForm::kJournal:
      return "journal";
  }
  return "bare";
}

std::string unescapeKmsg(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '\\' && i + 3 < text.size() && text[i + 1] == 'x' && hexValue(text[i + 2]) >= 0 &&
        hexValue(text[i + 3]) >= 0) {
      out.push_back(static_cast<char>(hexValue(text[i + 2]) * 16 + hexValue(text[i + 3])));
      i += 3;
    } else {
      out.push_back(text[i]);
    }
  }
  return out;
}

std::vector<KernelLogMessage> splitKernelLog(std::string_view text) {
  std::vector<KernelLogMessage> messages;
  // The form of the last message, and how far its text was indented by its prefix: dmesg and
  // journalctl indent the further lines of a multi-line record by that much.
  std::optional<KernelLogForm> last_form;
  size_t last_indent = 0;
  size_t number = 0;
  while (!text.empty()) {
    const auto newline = text.find('\n');
    std::string_view line = text.substr(0, newline);
    text = newline == std::string_view::npos ? std::string_view() : text.substr(newline + 1);
    ++number;
    if (line.ends_with('\r')) {
      line.remove_suffix(1);
    }
    if (line.find_first_not_of(" \t") == std::string_view::npos) {
      continue;
    }
    if (line.front() == ' ' || line.front() == '\t') {
      if (last_form == KernelLogForm::kKmsg) {
        continue;  // a dictionary line (" SUBSYSTEM=acpi") of the record before
      }
      if ((last_form == KernelLogForm::kDmesg || last_form == KernelLogForm::kJournal) && !messages.empty()) {
        size_t indent = 0;
        while (indent < line.size() && indent < last_indent &&
               (line[indent] == ' ' || line[indent] == '\t')) {
          ++indent;
        }
        messages.back().text += '\n';
        messages.back().text += line.substr(indent);
        continue;
      }
    }
    if (isDigit(line.front()) && line.find(';') != std::string_view::npos) {
      if (auto record = parseKmsgRecord(line)) {
        messages.push_back(KernelLogMessage{unescapeKmsg(record.value().message), record.value().timestamp_us,
                                            record.value().sequence, number, KernelLogForm::kKmsg});
        last_form = KernelLogForm::kKmsg;
        continue;
      }
    }
    if (auto prefix = linePrefix(line)) {
      messages.push_back(KernelLogMessage{std::string(line.substr(std::min(prefix->message_at, line.size()))),
                                          prefix->timestamp_us, std::nullopt, number, prefix->form});
      last_form = prefix->form;
      last_indent = prefix->message_at;
      continue;
    }
    messages.push_back(
        KernelLogMessage{std::string(line), std::nullopt, std::nullopt, number, KernelLogForm::kBare});
    last_form = KernelLogForm::kBare;
  }
  return messages;
}

}  // namespace oomguard::cgroupfs
