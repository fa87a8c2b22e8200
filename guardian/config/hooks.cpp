// /hooks: the operator's commands at the stages of a kill (config.hpp: Hook, Hooks).
#include "guardian/config/config.hpp"
#include "guardian/config/object_reader.hpp"

namespace oomguard::guardian::config {
namespace {

using detail::Json;
using detail::ObjectReader;

constexpr size_t kMaxArgs = 64;
constexpr size_t kMaxArgBytes = 4096;
constexpr int64_t kMaxOutputBytes = int64_t{64} * 1024;

struct Bounds {
  int64_t min_ms;
  int64_t max_ms;
  int64_t default_ms;
};

Hook readHook(const Json& value, const std::string& path, Bounds bounds) {
  ObjectReader reader(value, path);
  Hook hook;
  const Json* argv = reader.find("argv");
  if (argv == nullptr) {
    ObjectReader::fail(reader.pathOf("argv"), "is required (the executable's absolute path, then its arguments)");
  }
  if (!argv->is_array() || argv->empty()) {
    ObjectReader::fail(reader.pathOf("argv"), "must be a non-empty array of strings");
  }
  if (argv->size() > kMaxArgs) {
    ObjectReader::fail(reader.pathOf("argv"), "has more than " + std::to_string(kMaxArgs) + " elements");
  }
  for (size_t i = 0; i < argv->size(); ++i) {
    const std::string element_path = reader.pathOf("argv") + "/" + std::to_string(i);
    const Json& arg = (*argv)[i];
    if (!arg.is_string()) {
      ObjectReader::fail(element_path, "must be a string, got " + detail::typeName(arg));
    }
    const auto& text = arg.get_ref<const std::string&>();
    if (text.find('\0') != std::string::npos) {
      ObjectReader::fail(element_path, "holds a NUL byte (an argument ends at the first one)");
    }
    if (text.size() > kMaxArgBytes) {
      ObjectReader::fail(element_path, "is longer than " + std::to_string(kMaxArgBytes) + " bytes");
    }
    if (i == 0 && !text.starts_with('/')) {
      ObjectReader::fail(element_path, "must be an absolute path (a hook runs without a shell or a PATH search)");
    }
    hook.argv.push_back(text);
  }
  hook.timeout_ms = static_cast<uint32_t>(reader.integer("timeout_ms", bounds.default_ms, bounds.min_ms, bounds.max_ms));
  hook.max_output_bytes = static_cast<size_t>(reader.integer("max_output_bytes", 4096, 0, kMaxOutputBytes));
  reader.finish();
  return hook;
}

}  // namespace

Hooks parseHooks(const nlohmann::json& value) {
  ObjectReader reader(value, "/hooks");
  Hooks hooks;
  // pre_kill delays a kill: short by default, never more than 5 s. The others delay nothing.
  if (const Json* hook = reader.find("pre_kill")) {
    hooks.pre_kill = readHook(*hook, "/hooks/pre_kill", {10, 5000, 500});
  }
  if (const Json* hook = reader.find("post_kill")) {
    hooks.post_kill = readHook(*hook, "/hooks/post_kill", {10, 600000, 10000});
  }
  if (const Json* hook = reader.find("warn")) {
    hooks.warn = readHook(*hook, "/hooks/warn", {10, 600000, 10000});
  }
  hooks.max_concurrent = static_cast<size_t>(reader.integer("max_concurrent", 4, 1, 64));
  hooks.max_per_minute = static_cast<size_t>(reader.integer("max_per_minute", 30, 1, 600));
  hooks.oom_score_adj = static_cast<int>(reader.integer("oom_score_adj", 1000, -1000, 1000));
  reader.finish();
  return hooks;
}

}  // namespace oomguard::guardian::config
