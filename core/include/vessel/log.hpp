// Structured logs: one JSON object per line on stderr, with a level threshold.
// Field values are strings or numbers; never pass secrets.
#pragma once

#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace vessel::log {

enum class Level { kDebug = 1, kInfo, kWarn, kError };

using Value = std::variant<std::string, double, long long, bool>;
using Field = std::pair<std::string_view, Value>;

/// "error" | "warn" | "info" | "debug"; unknown names keep the current level.
void setLevel(std::string_view level);
bool enabled(Level level);
void write(Level level, std::string_view message, std::initializer_list<Field> fields = {});

inline void debug(std::string_view m, std::initializer_list<Field> f = {}) {
  write(Level::kDebug, m, f);
}
inline void info(std::string_view m, std::initializer_list<Field> f = {}) {
  write(Level::kInfo, m, f);
}
inline void warn(std::string_view m, std::initializer_list<Field> f = {}) {
  write(Level::kWarn, m, f);
}
inline void error(std::string_view m, std::initializer_list<Field> f = {}) {
  write(Level::kError, m, f);
}

}  // namespace vessel::log
