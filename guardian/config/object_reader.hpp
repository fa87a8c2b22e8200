// Internal to guardian/config: the reader of one JSON object of the config, which names the JSON path
// (RFC 6901 pointer) of every refusal and refuses keys nobody asked for.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <string_view>

#include "guardian/config/config.hpp"

namespace oomguard::guardian::config::detail {

using Json = nlohmann::json;

inline std::string typeName(const Json& value) { return value.type_name(); }

// Reads one JSON object, tracking its path; finish() rejects keys nobody asked for.
class ObjectReader {
 public:
  ObjectReader(const Json& value, std::string path) : value_(value), path_(std::move(path)) {
    if (!value_.is_object()) {
      fail(path_, "must be an object, got " + typeName(value_));
    }
  }

  [[nodiscard]] std::string pathOf(std::string_view key) const { return path_ + "/" + std::string(key); }
  [[noreturn]] static void fail(const std::string& path, const std::string& reason) {
    throw ConfigError((path.empty() ? std::string("/") : path) + ": " + reason);
  }

  const Json* find(std::string_view key) {
    known_.insert(std::string(key));
    const auto found = value_.find(std::string(key));
    return found == value_.end() ? nullptr : &*found;
  }

  bool boolean(std::string_view key, bool fallback) {
    const Json* value = find(key);
    if (value == nullptr) {
      return fallback;
    }
    if (!value->is_boolean()) {
      fail(pathOf(key), "must be true or false, got " + typeName(*value));
    }
    return value->get<bool>();
  }

  std::string string(std::string_view key, const std::string& fallback, std::initializer_list<const char*> allowed = {}) {
    const Json* value = find(key);
    if (value == nullptr) {
      return fallback;
    }
    if (!value->is_string()) {
      fail(pathOf(key), "must be a string, got " + typeName(*value));
    }
    auto text = value->get<std::string>();
    if (allowed.size() > 0) {
      std::string choices;
      for (const char* choice : allowed) {
        if (text == choice) {
          return text;
        }
        choices += choices.empty() ? "" : ", ";
        choices += std::string("\"") + choice + "\"";
      }
      fail(pathOf(key), "must be one of " + choices + ", got \"" + text + "\"");
    }
    return text;
  }

  std::string requiredString(std::string_view key) {
    if (find(key) == nullptr) {
      fail(pathOf(key), "is required");
    }
    return string(key, "");
  }

  // An integer in [min, max].
  int64_t integer(std::string_view key, int64_t fallback, int64_t min, int64_t max) {
    const Json* value = find(key);
    if (value == nullptr) {
      return fallback;
    }
    if (!value->is_number_integer()) {
      fail(pathOf(key), "must be an integer, got " + (value->is_number() ? std::string("a fraction") : typeName(*value)));
    }
    const auto number = value->is_number_unsigned() && value->get<uint64_t>() > static_cast<uint64_t>(INT64_MAX)
                            ? INT64_MAX
                            : value->get<int64_t>();
    if (number < min || number > max) {
      fail(pathOf(key), "must be between " + std::to_string(min) + " and " + std::to_string(max) + ", got " +
                            std::to_string(number));
    }
    return number;
  }

  double number(std::string_view key, double fallback, double min, double max) {
    const Json* value = find(key);
    if (value == nullptr) {
      return fallback;
    }
    if (!value->is_number()) {
      fail(pathOf(key), "must be a number, got " + typeName(*value));
    }
    const double number = value->get<double>();
    if (!(number >= min && number <= max)) {
      std::ostringstream text;
      text << "must be between " << min << " and " << max << ", got " << number;
      fail(pathOf(key), text.str());
    }
    return number;
  }

  void finish() const {
    for (const auto& [key, unused] : value_.items()) {
      if (!known_.contains(key)) {
        fail(pathOf(key), "unknown key");
      }
    }
  }

 private:
  const Json& value_;
  std::string path_;
  std::set<std::string, std::less<>> known_;
};

// "protection": a class (critical, high, normal, low, sacrificial) or an oom_score_adj (-1000..1000);
// nullopt when the key is absent.
inline std::optional<int> readProtection(ObjectReader& reader) {
  const Json* protection = reader.find("protection");
  if (protection == nullptr) {
    return std::nullopt;
  }
  if (protection->is_string()) {
    const auto level = policies::parseProtectionClass(protection->get<std::string>());
    if (!level) {
      ObjectReader::fail(reader.pathOf("protection"), "must be critical, high, normal, low, sacrificial or an "
                                                      "oom_score_adj, got \"" + protection->get<std::string>() + "\"");
    }
    return policies::oomScoreAdjFor(*level);
  }
  return static_cast<int>(reader.integer("protection", 0, -1000, 1000));
}

}  // namespace oomguard::guardian::config::detail
