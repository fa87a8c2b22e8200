// The text exposition (format 0.0.4): the format helpers (label escaping, numbers, HELP/TYPE) and what
// GET /metrics returns, the registry's families and the scoped ones merged in name order.
#include <prometheus/family.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "guardian/exporter/metrics_prometheus.hpp"
#include "guardian/exporter/metrics_prometheus_internal.hpp"
#include "guardian/text/format.hpp"

namespace oomguard::guardian::exporter {

namespace pm = prometheus;
using namespace detail;

namespace detail {

// ---- Text format helpers ------------------------------------------------------------------------------

// name="value" with the text format's escapes (backslash, double quote, newline), value made UTF-8.
void appendLabel(std::string& out, std::string_view name, std::string_view value) {
  out.append(name);
  out.append("=\"");
  for (const char c : text::validUtf8(value)) {
    switch (c) {
      case '\\':
        out.append("\\\\");
        break;
      case '"':
        out.append("\\\"");
        break;
      case '\n':
        out.append("\\n");
        break;
      default:
        out.push_back(c);
    }
  }
  out.push_back('"');
}

void appendNumber(std::string& out, double value) {
  if (std::isnan(value)) {
    out.append("NaN");
    return;
  }
  if (std::isinf(value)) {
    out.append(value > 0 ? "+Inf" : "-Inf");
    return;
  }
  char buffer[32];
  const auto result = std::to_chars(buffer, buffer + sizeof buffer, value);
  out.append(buffer, result.ptr);
}

void appendNumber(std::string& out, long value) {
  char buffer[24];
  const auto result = std::to_chars(buffer, buffer + sizeof buffer, value);
  out.append(buffer, result.ptr);
}

void appendNumber(std::string& out, uint64_t value) {
  char buffer[24];
  const auto result = std::to_chars(buffer, buffer + sizeof buffer, value);
  out.append(buffer, result.ptr);
}

void appendHeader(std::string& out, std::string_view name, std::string_view help, std::string_view type) {
  out.append("# HELP ").append(name).push_back(' ');
  for (const char c : help) {
    if (c == '\\') {
      out.append("\\\\");
    } else if (c == '\n') {
      out.append("\\n");
    } else {
      out.push_back(c);
    }
  }
  out.append("\n# TYPE ").append(name).push_back(' ');
  out.append(type).push_back('\n');
}

}  // namespace detail

// ---- The exposition ----------------------------------------------------------------------------------

void PrometheusMetrics::write(const std::function<void(std::string_view)>& flush) const {
  // The registry's families, serialised by prometheus-cpp; those without series yet still declared.
  std::map<std::string, std::string, std::less<>> small;
  for (const auto& family : registry_->Collect()) {
    small[family.name] = pm::TextSerializer().Serialize({family});
  }
  for (const auto& declared : declared_) {
    if (!small.contains(declared.name)) {
      appendHeader(small[declared.name], declared.name, declared.help, declared.type);
    }
  }
  std::vector<std::string_view> names;
  names.reserve(small.size() + ScopedSeries::families().size());
  for (const auto& [name, text] : small) {
    names.push_back(name);
  }
  for (const auto* family : ScopedSeries::families()) {
    names.push_back(family->name);
  }
  std::sort(names.begin(), names.end());

  const auto view = scoped_->view();
  Sink sink(flush);
  for (const auto name : names) {
    if (const auto found = small.find(name); found != small.end()) {
      sink.buffer.append(found->second);
      sink.lineDone();
    } else {
      view.write(name, sink);
    }
  }
}

std::string PrometheusMetrics::render() const {
  std::string out;
  write([&out](std::string_view piece) { out.append(piece); });
  return out;
}

size_t PrometheusMetrics::seriesCount() const {
  const std::string text = render();
  size_t count = 0;
  size_t start = 0;
  while (start < text.size()) {
    const size_t end = text.find('\n', start);
    count += text[start] != '#' ? 1 : 0;
    start = end == std::string::npos ? text.size() : end + 1;
  }
  return count;
}

}  // namespace oomguard::guardian::exporter
