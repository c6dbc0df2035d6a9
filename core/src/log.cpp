// JSON-lines logger.
#include "vessel/log.hpp"

#include <atomic>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

namespace vessel::log {
namespace {

std::atomic<int> g_level{static_cast<int>(Level::kInfo)};
std::mutex g_mu;

// This thread's context fields, innermost last; `depth` counts live Contexts.
struct ThreadContext {
  std::vector<std::pair<std::string, Value>> fields;
  int depth = 0;
};
thread_local ThreadContext t_context;

const char* levelName(Level l) {
  switch (l) {
    case Level::kDebug:
      return "debug";
    case Level::kInfo:
      return "info";
    case Level::kWarn:
      return "warn";
    case Level::kError:
      return "error";
  }
  return "info";
}

std::string nowIso() {
  auto now = std::chrono::system_clock::now();
  auto t = std::chrono::system_clock::to_time_t(now);
  auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[96];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(ms));
  return buf;
}

}  // namespace

Context::Context(std::initializer_list<Field> fields) : mark_(t_context.fields.size()) {
  ++t_context.depth;
  for (const auto& [k, v] : fields) add(k, v);
}

Context::~Context() {
  t_context.fields.resize(mark_);
  --t_context.depth;
}

void Context::add(std::string_view key, Value value) {
  if (t_context.depth == 0) return;
  t_context.fields.emplace_back(std::string(key), std::move(value));
}

void setLevel(std::string_view level) {
  for (Level l : {Level::kDebug, Level::kInfo, Level::kWarn, Level::kError}) {
    if (level == levelName(l)) g_level.store(static_cast<int>(l));
  }
}

bool enabled(Level level) { return static_cast<int>(level) >= g_level.load(); }

void write(Level level, std::string_view message, std::initializer_list<Field> fields) {
  if (!enabled(level)) return;
  nlohmann::json j;
  j["ts"] = nowIso();
  j["level"] = levelName(level);
  j["msg"] = std::string(message);
  // Later context fields (inner, or added later) replace earlier ones.
  for (const auto& [k, v] : t_context.fields) {
    std::visit([&j, key = k](const auto& x) { j[key] = x; }, v);
  }
  for (const auto& [k, v] : fields) {
    // (An init-capture: clang before 16 cannot capture a structured binding.)
    std::visit([&j, key = std::string(k)](const auto& x) { j[key] = x; }, v);
  }
  std::string line = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  std::lock_guard lock(g_mu);
  std::fprintf(stderr, "%s\n", line.c_str());
  std::fflush(stderr);
}

}  // namespace vessel::log
