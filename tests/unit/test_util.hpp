#pragma once

#include <fstream>
#include <sstream>
#include <string>

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

}  // namespace oomguard::testing
