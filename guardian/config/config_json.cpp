#include "guardian/config/config_json.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <set>
#include <vector>

#include "guardian/config/config.hpp"

namespace oomguard::guardian::config {
namespace {

using Json = nlohmann::json;
constexpr size_t kMaxDepth = 64;

// Line and column (1-based) of a byte offset, for syntax errors.
std::pair<size_t, size_t> lineAndColumn(std::string_view text, size_t offset) {
  size_t line = 1;
  size_t column = 1;
  for (size_t i = 0; i < offset && i < text.size(); ++i) {
    if (text[i] == '\n') {
      ++line;
      column = 1;
    } else {
      ++column;
    }
  }
  return {line, column};
}

// RFC 6901: "~" -> "~0", "/" -> "~1".
std::string pointerToken(std::string_view key) {
  std::string out;
  for (const char c : key) {
    if (c == '~') {
      out += "~0";
    } else if (c == '/') {
      out += "~1";
    } else {
      out += c;
    }
  }
  return out;
}

// Builds the document with nlohmann's own DOM builder and keeps, beside it, where in the document the
// parser is: the key being read in each object (and the keys seen there), the element index in each
// array. The first refusal stops the parse.
class StrictSax {
 public:
  explicit StrictSax(Json& result) : dom_(result, false) {}

  bool null() { return value() && dom_.null(); }
  bool boolean(bool v) { return value() && dom_.boolean(v); }
  bool number_integer(Json::number_integer_t v) { return value() && dom_.number_integer(v); }
  bool number_unsigned(Json::number_unsigned_t v) { return value() && dom_.number_unsigned(v); }
  bool number_float(Json::number_float_t v, const Json::string_t& s) { return value() && dom_.number_float(v, s); }
  bool string(Json::string_t& v) { return value() && dom_.string(v); }
  bool binary(Json::binary_t& v) { return value() && dom_.binary(v); }

  bool start_object(std::size_t n) { return open(true) && dom_.start_object(n); }
  bool key(Json::string_t& k) {
    Frame& frame = stack_.back();
    frame.key = k;
    if (!frame.keys.insert(k).second) {
      return refuse("duplicate key (each key may appear once in an object)");
    }
    return dom_.key(k);
  }
  bool end_object() {
    stack_.pop_back();
    return dom_.end_object();
  }
  bool start_array(std::size_t n) { return open(false) && dom_.start_array(n); }
  bool end_array() {
    stack_.pop_back();
    return dom_.end_array();
  }

  template <class Exception>
  bool parse_error(std::size_t position, const std::string& token, const Exception& error) {
    position_ = position;
    if (error.id == 406) {  // out_of_range: number overflow
      // The value was not started yet: an array's element is the next index.
      return refuse("number " + token + " is beyond the range of a double", true);
    }
    syntax_ = true;
    reason_ = error.what();
    return false;
  }

  [[nodiscard]] bool syntax() const { return syntax_; }
  [[nodiscard]] size_t position() const { return position_; }
  [[nodiscard]] const std::string& reason() const { return reason_; }
  [[nodiscard]] const std::string& pointer() const { return pointer_; }

 private:
  struct Frame {
    bool object = false;
    size_t elements = 0;  // arrays: values started so far
    std::string key;      // objects: the key being read
    std::set<std::string> keys;
  };

  // A value begins (scalar or container) at the current place.
  bool value() {
    if (!stack_.empty() && !stack_.back().object) {
      ++stack_.back().elements;
    }
    return true;
  }
  bool open(bool object) {
    value();
    if (stack_.size() >= kMaxDepth) {
      return refuse("nested deeper than " + std::to_string(kMaxDepth) + " levels");
    }
    stack_.push_back(Frame{object, 0, {}, {}});
    return true;
  }
  bool refuse(std::string reason, bool next_element = false) {
    pointer_.clear();
    for (size_t i = 0; i < stack_.size(); ++i) {
      const Frame& frame = stack_[i];
      const bool last = i + 1 == stack_.size();
      if (frame.object) {
        pointer_ += "/" + pointerToken(frame.key);
      } else {
        const size_t index = frame.elements == 0 ? 0 : frame.elements - ((last && next_element) ? 0 : 1);
        pointer_ += "/" + std::to_string(index);
      }
    }
    reason_ = std::move(reason);
    return false;
  }

  nlohmann::detail::json_sax_dom_parser<Json> dom_;
  std::vector<Frame> stack_;
  bool syntax_ = false;
  size_t position_ = 0;
  std::string reason_;
  std::string pointer_;
};

}  // namespace

Json parseConfigJson(std::string_view text, const std::string& source) {
  Json result;
  StrictSax sax(result);
  if (Json::sax_parse(text.begin(), text.end(), &sax, Json::input_format_t::json, true)) {
    return result;
  }
  if (sax.syntax()) {
    // The byte reported is the one where parsing stopped, 1-based.
    const auto [line, column] = lineAndColumn(text, sax.position() == 0 ? 0 : sax.position() - 1);
    const auto detail = sax.reason().find("syntax error");
    throw ConfigError(source + ":" + std::to_string(line) + ":" + std::to_string(column) + ": " +
                      (detail == std::string::npos ? sax.reason() : sax.reason().substr(detail)));
  }
  throw ConfigError(source + ": " + (sax.pointer().empty() ? std::string("/") : sax.pointer()) + ": " + sax.reason());
}

Json readConfigJson(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) {
    throw ConfigError(path + ": cannot open: " + std::strerror(errno));
  }
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  struct stat info {};
  if (::fstat(fd, &info) != 0) {
    throw ConfigError(path + ": cannot stat: " + std::strerror(errno));
  }
  if (!S_ISREG(info.st_mode)) {
    throw ConfigError(path + ": not a regular file (a config is read only from a regular file)");
  }
  if (static_cast<uint64_t>(info.st_size) > kMaxConfigBytes) {
    throw ConfigError(path + ": " + std::to_string(info.st_size) + " bytes; a config may have at most " +
                      std::to_string(kMaxConfigBytes) + " bytes");
  }
  // Read at most one byte past the cap, in case the file grew after fstat.
  std::string text(kMaxConfigBytes + 1, '\0');
  size_t got = 0;
  while (got < text.size()) {
    const ssize_t n = ::read(fd, text.data() + got, text.size() - got);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0) {
      throw ConfigError(path + ": cannot read: " + std::strerror(errno));
    }
    if (n == 0) {
      break;
    }
    got += static_cast<size_t>(n);
  }
  if (got > kMaxConfigBytes) {
    throw ConfigError(path + ": grew past " + std::to_string(kMaxConfigBytes) + " bytes while it was read");
  }
  text.resize(got);
  return parseConfigJson(text, path);
}

}  // namespace oomguard::guardian::config
