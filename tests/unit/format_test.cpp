// Names are bytes: whatever a process (prctl(PR_SET_NAME)) or a cgroup (mkdir) is called, the JSON
// stays valid and the terminal sees no control character.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "guardian/text/format.hpp"

namespace oomguard::guardian::text {
namespace {

TEST(Printable, ControlCharactersAndInvalidBytesAreEscaped) {
  EXPECT_EQ(printable("plain-name.service"), "plain-name.service");
  EXPECT_EQ(printable("caf\xC3\xA9 \xE2\x9C\x93"), "caf\xC3\xA9 \xE2\x9C\x93");  // valid UTF-8 stays
  EXPECT_EQ(printable("\x1b[31mred\x07"), "\\x1B[31mred\\x07");
  EXPECT_EQ(printable("a\bb\rc\nd\te\x7f"), "a\\x08b\\x0Dc\\x0Ad\\x09e\\x7F");
  EXPECT_EQ(printable(std::string("nul\0byte", 8)), "nul\\x00byte");
  EXPECT_EQ(printable("\xff\xfe"), "\\xFF\\xFE");
  EXPECT_EQ(printable("\xC2\x9B" "2J"), "\\xC2\\x9B2J");  // C1 CSI, valid UTF-8 but a control
  EXPECT_EQ(printable("\xC0\xAF"), "\\xC0\\xAF");          // overlong '/'
  EXPECT_EQ(printable("\xED\xA0\x80"), "\\xED\\xA0\\x80");  // a surrogate
  EXPECT_EQ(printable("cut\xE2\x9C"), "cut\\xE2\\x9C");
}

TEST(Printable, EveryByteComesOutPrintable) {
  std::string all;
  for (int byte = 0; byte < 256; ++byte) {
    all.push_back(static_cast<char>(byte));
  }
  const std::string out = printable(all);
  for (const char c : out) {
    const auto byte = static_cast<unsigned char>(c);
    EXPECT_FALSE(byte < 0x20 || byte == 0x7F) << static_cast<int>(byte);
  }
  // What is left above 0x7F is valid UTF-8: nothing, since each such lone byte is escaped.
  EXPECT_EQ(validUtf8(out), out);
}

TEST(ValidUtf8, InvalidSequencesBecomeReplacementCharacters) {
  EXPECT_EQ(validUtf8("ok \xC3\xA9"), "ok \xC3\xA9");
  EXPECT_EQ(validUtf8("\xff" "a"), "\xEF\xBF\xBD" "a");
  EXPECT_EQ(validUtf8("\xC0\xAF"), "\xEF\xBF\xBD\xEF\xBF\xBD");
}

TEST(JsonText, AnyBytesGiveValidJson) {
  // nlohmann's default dump throws type_error 316 on these bytes: `top --json` once exited 1.
  nlohmann::ordered_json document{{"comm", "\xff\xfe\x1b[31m"}, {"cgroup", "/a\x80"}};
  std::string text;
  ASSERT_NO_THROW(text = jsonText(document));
  const auto parsed = nlohmann::json::parse(text);
  EXPECT_EQ(parsed.at("comm"), "\xEF\xBF\xBD\xEF\xBF\xBD\x1b[31m");
  EXPECT_NE(text.find("\\u001b"), std::string::npos) << "control characters are escaped by JSON itself";
  EXPECT_EQ(text.find('\x1b'), std::string::npos);
}

TEST(Column, PadsTheEscapedText) {
  EXPECT_EQ(column("\x1b", 6), "\\x1B  ");
  EXPECT_EQ(column("abcdefgh", 5), "abcd~");
  EXPECT_EQ(rightColumn("\x07", 6), "  \\x07");
}

}  // namespace
}  // namespace oomguard::guardian::text
