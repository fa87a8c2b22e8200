#pragma once

#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace oomguard::testing {

inline std::string fixturePath(const std::string& relative) { return std::string(OOMGUARD_FIXTURES) + "/" + relative; }

inline std::string readFixture(const std::string& relative) {
  std::ifstream in(fixturePath(relative), std::ios::binary);
  if (!in) {
    throw std::runtime_error("missing fixture " + relative);
  }
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

// The records of a kmsg fixture file (tests/fixtures/kmsg-6.12, written by kmsgdump -r), each as read(2)
// returned it: a line that starts with a space is a dictionary line of the record before it.
inline std::vector<std::string> kmsgFixtureRecords(const std::string& name) {
  std::istringstream in(readFixture("kmsg-6.12/" + name));
  std::vector<std::string> records;
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty() && line.front() == ' ' && !records.empty()) {
      records.back() += line + "\n";
    } else {
      records.push_back(line + "\n");
    }
  }
  return records;
}

}  // namespace oomguard::testing
