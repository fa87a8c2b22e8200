// The pod model (pod.hpp): pod objects and memory quantities as the API server spells them.
#include "guardian/kube/pod.hpp"

#include <array>
#include <charconv>
#include <limits>
#include <nlohmann/json.hpp>
#include <string_view>
#include <system_error>
#include <utility>

#include "guardian/kube/annotations.hpp"

namespace oomguard::guardian::kube {

using Json = nlohmann::json;

const Json* member(const Json& object, const char* key) {
  if (!object.is_object()) {
    return nullptr;
  }
  const auto it = object.find(key);
  return it == object.end() ? nullptr : &*it;
}

std::string stringMember(const Json& object, const char* key) {
  const Json* value = member(object, key);
  return value != nullptr && value->is_string() ? value->get<std::string>() : std::string();
}

const Json& objectMember(const Json& object, const char* key) {
  static const Json kEmpty = Json::object();
  const Json* value = member(object, key);
  return value != nullptr && value->is_object() ? *value : kEmpty;
}

namespace {

// --- quantities ----------------------------------------------------------------------------------------

__extension__ using Uint128 = unsigned __int128;

// value * 10^exponent10 * 1024^binary_power, rounded up to an integer; nullopt past INT64_MAX.
std::optional<int64_t> scaleQuantity(Uint128 digits, int exponent10, unsigned binary_power) {
  constexpr auto kMax = static_cast<Uint128>(std::numeric_limits<int64_t>::max());
  if (digits == 0) {
    return 0;
  }
  Uint128 value = digits;  // < 10^19 < 2^64 (the caller's limit), so value * 2^60 < 2^124 fits
  for (unsigned i = 0; i < binary_power; ++i) {
    value *= 1024;
  }
  if (exponent10 >= 0) {
    for (int i = 0; i < exponent10; ++i) {
      if (value > kMax / 10) {
        return std::nullopt;
      }
      value *= 10;
    }
    return value > kMax ? std::nullopt : std::optional<int64_t>(static_cast<int64_t>(value));
  }
  // value < 2^124 < 10^38: dividing by 10^38 or more leaves a fraction, which rounds up to 1.
  if (-exponent10 >= 38) {
    return 1;
  }
  Uint128 divisor = 1;
  for (int i = 0; i < -exponent10; ++i) {
    divisor *= 10;
  }
  const Uint128 quotient = value / divisor + (value % divisor != 0 ? 1 : 0);
  return quotient > kMax ? std::nullopt : std::optional<int64_t>(static_cast<int64_t>(quotient));
}

}  // namespace

// --- pods ----------------------------------------------------------------------------------------------

cgroupfs::Result<KubePod> parsePodObject(const Json& object) {
  if (!object.is_object()) {
    return cgroupfs::parseError("pod is not a JSON object");
  }
  const Json& metadata = objectMember(object, "metadata");
  KubePod pod;
  pod.uid = stringMember(metadata, "uid");
  pod.name = stringMember(metadata, "name");
  pod.namespace_name = stringMember(metadata, "namespace");
  if (pod.uid.empty() || pod.name.empty() || pod.namespace_name.empty()) {
    std::string why = "pod without metadata.uid, metadata.name or metadata.namespace";
    if (!pod.name.empty()) {
      why += " (name \"" + pod.name + "\")";
    }
    return cgroupfs::parseError(std::move(why));
  }
  pod.resource_version = stringMember(metadata, "resourceVersion");
  size_t container_groups = 0;
  size_t unknown = 0;
  for (const auto& [key, value] : objectMember(metadata, "annotations").items()) {
    const AnnotationKey kind = classifyAnnotationKey(key);
    if (kind == AnnotationKey::kOther || !value.is_string()) {
      continue;
    }
    size_t& count = kind == AnnotationKey::kContainerGroup ? container_groups : unknown;
    const size_t bound = kind == AnnotationKey::kContainerGroup ? kMaxContainerOomGroupKeys : kMaxUnknownAnnotationKeys;
    if (kind != AnnotationKey::kKnown && count++ >= bound) {
      ++pod.annotations_dropped;
      continue;
    }
    pod.annotations.emplace(key, boundedAnnotationValue(value.get_ref<const std::string&>()));
  }

  const Json& spec = objectMember(object, "spec");
  if (const Json* priority = member(spec, "priority"); priority != nullptr && priority->is_number_integer()) {
    const auto value = priority->get<int64_t>();
    if (value >= std::numeric_limits<int32_t>::min() && value <= std::numeric_limits<int32_t>::max()) {
      pod.priority = static_cast<int32_t>(value);
    }
  }
  pod.priority_class_name = stringMember(spec, "priorityClassName");
  if (const Json* containers = member(spec, "containers"); containers != nullptr && containers->is_array()) {
    for (const Json& container : *containers) {
      const std::string name = stringMember(container, "name");
      const std::string memory =
          stringMember(objectMember(objectMember(container, "resources"), "requests"), "memory");
      if (name.empty() || memory.empty()) {
        continue;
      }
      if (const std::optional<int64_t> bytes = parseMemoryQuantity(memory)) {
        pod.memory_request_bytes[name] = *bytes;
      }
    }
  }

  const Json& status = objectMember(object, "status");
  pod.qos_class = stringMember(status, "qosClass");
  pod.phase = stringMember(status, "phase");
  for (const char* key : {"containerStatuses", "initContainerStatuses", "ephemeralContainerStatuses"}) {
    const Json* statuses = member(status, key);
    if (statuses == nullptr || !statuses->is_array()) {
      continue;
    }
    for (const Json& container : *statuses) {
      PodContainerRef ref{stringMember(container, "name"), stringMember(container, "containerID")};
      if (ref.name.empty()) {
        continue;
      }
      // After an in-place resize kubelet works from the resources it allocated, not from spec: its
      // oom_score_adj follows the allocated memory request (status.containerStatuses[].allocatedResources).
      const std::string allocated = stringMember(objectMember(container, "allocatedResources"), "memory");
      if (const std::optional<int64_t> bytes = allocated.empty() ? std::nullopt : parseMemoryQuantity(allocated)) {
        pod.memory_request_bytes[ref.name] = *bytes;
      }
      pod.containers.push_back(std::move(ref));
    }
  }
  return pod;
}

// --- parsing -------------------------------------------------------------------------------------------

std::optional<int64_t> parseMemoryQuantity(const std::string& text) {
  // <sign>?<digits>[.<digits>]<suffix>, suffix: Ki Mi Gi Ti Pi Ei | n u m "" k M G T P E | e<int> E<int>.
  // Negative quantities are refused (no memory size is negative); values round up to whole bytes.
  std::string_view rest = text;
  if (!rest.empty() && rest.front() == '+') {
    rest.remove_prefix(1);
  }
  std::string digits;  // integer and fraction digits together
  int fraction_digits = 0;
  bool seen_point = false;
  size_t mantissa_length = 0;
  for (; mantissa_length < rest.size(); ++mantissa_length) {
    const char c = rest[mantissa_length];
    if (c >= '0' && c <= '9') {
      digits.push_back(c);
      fraction_digits += seen_point ? 1 : 0;
    } else if (c == '.' && !seen_point) {
      seen_point = true;
    } else {
      break;
    }
  }
  if (digits.empty()) {
    return std::nullopt;
  }
  const std::string_view suffix = rest.substr(mantissa_length);

  int exponent10 = 0;
  unsigned binary_power = 0;
  static constexpr std::array<std::pair<std::string_view, unsigned>, 6> kBinary{
      {{"Ki", 1}, {"Mi", 2}, {"Gi", 3}, {"Ti", 4}, {"Pi", 5}, {"Ei", 6}}};
  static constexpr std::array<std::pair<std::string_view, int>, 10> kDecimal{{{"", 0},
                                                                              {"n", -9},
                                                                              {"u", -6},
                                                                              {"m", -3},
                                                                              {"k", 3},
                                                                              {"M", 6},
                                                                              {"G", 9},
                                                                              {"T", 12},
                                                                              {"P", 15},
                                                                              {"E", 18}}};
  bool known = false;
  for (const auto& [name, power] : kBinary) {
    if (suffix == name) {
      binary_power = power;
      known = true;
    }
  }
  for (const auto& [name, power] : kDecimal) {
    if (suffix == name) {
      exponent10 = power;
      known = true;
    }
  }
  if (!known) {
    // A decimal exponent: e or E, then a signed integer ("E" alone is exa, matched above).
    if (suffix.size() < 2 || (suffix.front() != 'e' && suffix.front() != 'E')) {
      return std::nullopt;
    }
    std::string_view exponent_text = suffix.substr(1);
    const bool negative = exponent_text.front() == '-';
    if (negative || exponent_text.front() == '+') {
      exponent_text.remove_prefix(1);
    }
    constexpr size_t kMaxExponentDigits = 4;  // beyond, the value overflows or rounds up to 1 anyway
    int exponent = 0;
    const char* end = exponent_text.data() + exponent_text.size();
    const auto [parsed_end, error] = std::from_chars(exponent_text.data(), end, exponent);
    if (exponent_text.empty() || exponent_text.size() > kMaxExponentDigits || exponent_text.front() == '-' ||
        error != std::errc() || parsed_end != end) {
      return std::nullopt;
    }
    exponent10 = negative ? -exponent : exponent;
  }

  // Significant digits only: leading zeros dropped, trailing zeros moved into the exponent.
  const size_t first = digits.find_first_not_of('0');
  if (first == std::string::npos) {
    return 0;
  }
  size_t last = digits.size();
  int shift = -fraction_digits;
  while (last > first + 1 && digits[last - 1] == '0') {
    --last;
    ++shift;
  }
  constexpr size_t kMaxSignificantDigits = 19;
  if (last - first > kMaxSignificantDigits) {
    return std::nullopt;
  }
  Uint128 value = 0;
  for (size_t i = first; i < last; ++i) {
    value = value * 10 + static_cast<unsigned>(digits[i] - '0');
  }
  return scaleQuantity(value, exponent10 + shift, binary_power);
}

cgroupfs::Result<KubePod> parsePod(const std::string& json_text) {
  const Json object = Json::parse(json_text, nullptr, false);
  if (object.is_discarded()) {
    return cgroupfs::parseError("pod is not valid JSON");
  }
  return parsePodObject(object);
}

}  // namespace oomguard::guardian::kube
