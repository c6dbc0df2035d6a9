// Appending JSON text straight into a string, for the hot responses (the library
// page) where building an nlohmann::json tree first cost most of the request's
// CPU (bench/server). Invalid UTF-8 becomes U+FFFD, as nlohmann's
// error_handler_t::replace does, so both paths answer the same text.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace vessel::server::json_text {

/// Appends `s` as a JSON string literal (quotes included).
void appendString(std::string& out, std::string_view s);
/// Appends a number in its shortest round-trip form; NaN and infinities as null.
void appendNumber(std::string& out, double v);
void appendInteger(std::string& out, long long v);

/// Appends `"key":` (keys are our own ASCII literals; not escaped).
inline void appendKey(std::string& out, std::string_view key) {
  out += '"';
  out += key;
  out += "\":";
}

inline void appendOptString(std::string& out, const std::optional<std::string>& s) {
  if (s) {
    appendString(out, *s);
  } else {
    out += "null";
  }
}

inline void appendOptNumber(std::string& out, const std::optional<double>& v) {
  if (v) {
    appendNumber(out, *v);
  } else {
    out += "null";
  }
}

}  // namespace vessel::server::json_text
