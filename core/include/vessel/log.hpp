// Structured logs: one JSON object per line on stderr, with a level threshold.
// Field values are strings or numbers; never pass secrets.
#pragma once

#include <cstddef>
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

/// Fields added to every line this thread writes while the Context lives (the
/// request, user, upload and job a line is about). Contexts nest; a field given
/// to write() wins over a context field of the same name.
class Context {
 public:
  explicit Context(std::initializer_list<Field> fields = {});
  ~Context();
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;
  /// Adds (or replaces) a field of the innermost live Context of this thread;
  /// ignored when there is none.
  static void add(std::string_view key, Value value);

 private:
  std::size_t mark_;
};

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
