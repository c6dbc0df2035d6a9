// Config loading: schema defaults, then a TOML file, then VESSEL_* environment variables.
// Every problem is collected rather than stopping at the first, so one failed start shows
// the operator everything to fix.

#include "vessel/config.hpp"

#include <toml++/toml.h>

#include <algorithm>
#include <cassert>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <numeric>
#include <system_error>
#include <tuple>
#include <type_traits>
#include <utility>

namespace vessel {
namespace {

using ValueMap = std::map<std::string, ConfigValue, std::less<>>;

constexpr std::size_t kMaxSuggestionDistance = 2;
constexpr const char* kRedacted = "<redacted>";

const char* typeName(ConfigType type) {
  switch (type) {
    case ConfigType::kBool:
      return "boolean";
    case ConfigType::kInt:
      return "integer";
    // kDouble also accepts integers, so "float" would mislead.
    case ConfigType::kDouble:
      return "number";
    case ConfigType::kString:
      return "string";
    case ConfigType::kStringList:
      return "array of strings";
  }
  return "unknown type";
}

const char* nodeTypeName(toml::node_type type) {
  switch (type) {
    case toml::node_type::none:
      return "nothing";
    case toml::node_type::table:
      return "table";
    case toml::node_type::array:
      return "array";
    case toml::node_type::string:
      return "string";
    case toml::node_type::integer:
      return "integer";
    case toml::node_type::floating_point:
      return "float";
    case toml::node_type::boolean:
      return "boolean";
    case toml::node_type::date:
      return "date";
    case toml::node_type::time:
      return "time";
    case toml::node_type::date_time:
      return "date-time";
  }
  return "unknown type";
}

const char* sourceName(ConfigSource source) {
  switch (source) {
    case ConfigSource::kDefault:
      return "default";
    case ConfigSource::kFile:
      return "file";
    case ConfigSource::kEnvironment:
      return "environment";
  }
  return "unknown";
}

// The ConfigValue alternative that holds a value of `type`.
std::size_t variantIndex(ConfigType type) {
  switch (type) {
    case ConfigType::kBool:
      return 0;
    case ConfigType::kInt:
      return 1;
    case ConfigType::kDouble:
      return 2;
    case ConfigType::kString:
      return 3;
    case ConfigType::kStringList:
      return 4;
  }
  return std::variant_npos;
}

ConfigValue emptyValue(ConfigType type) {
  switch (type) {
    case ConfigType::kBool:
      return false;
    case ConfigType::kInt:
      return std::int64_t{0};
    case ConfigType::kDouble:
      return 0.0;
    case ConfigType::kString:
      return std::string();
    case ConfigType::kStringList:
      return std::vector<std::string>();
  }
  return false;
}

bool isBareKeyChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
         c == '-';
}

// Declared keys are dotted TOML bare keys, so they can be written in a file unquoted.
// Only used by assert().
[[maybe_unused]] bool isValidKey(std::string_view key) {
  if (key.empty() || key.front() == '.' || key.back() == '.') return false;
  for (std::size_t i = 0; i < key.size(); ++i) {
    if (key[i] == '.') {
      if (key[i + 1] == '.') return false;
    } else if (!isBareKeyChar(key[i])) {
      return false;
    }
  }
  return true;
}

char asciiLower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }
char asciiUpper(char c) { return (c >= 'a' && c <= 'z') ? static_cast<char>(c - 'a' + 'A') : c; }

std::string quoteToml(std::string_view text) {
  std::string out = "\"";
  for (char c : text) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\f':
        out += "\\f";
        break;
      case '\r':
        out += "\\r";
        break;
      default: {
        const auto byte = static_cast<unsigned char>(c);
        if (byte < 0x20 || byte == 0x7f) {
          char escape[8];
          std::snprintf(escape, sizeof escape, "\\u%04X", static_cast<unsigned>(byte));
          out += escape;
        } else {
          out += c;
        }
      }
    }
  }
  out += '"';
  return out;
}

std::string formatDouble(double value) {
  if (std::isnan(value)) return "nan";
  if (std::isinf(value)) return value < 0 ? "-inf" : "inf";
  char buffer[64];
  const auto [end, ec] = std::to_chars(buffer, buffer + sizeof buffer, value);
  std::string text(buffer, ec == std::errc() ? end : buffer);
  // TOML reads "3" as an integer; keep floats recognisable as floats.
  if (text.find_first_of(".eE") == std::string::npos) text += ".0";
  return text;
}

std::string formatValue(const ConfigValue& value) {
  return std::visit(
      [](const auto& v) -> std::string {
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<T, bool>) {
          return v ? "true" : "false";
        } else if constexpr (std::is_same_v<T, std::int64_t>) {
          return std::to_string(v);
        } else if constexpr (std::is_same_v<T, double>) {
          return formatDouble(v);
        } else if constexpr (std::is_same_v<T, std::string>) {
          return quoteToml(v);
        } else {
          std::string out = "[";
          for (std::size_t i = 0; i < v.size(); ++i) {
            if (i > 0) out += ", ";
            out += quoteToml(v[i]);
          }
          out += "]";
          return out;
        }
      },
      value);
}

std::string formatMaybeSecret(const ConfigField& field, const ConfigValue& value) {
  return field.secret ? std::string(kRedacted) : formatValue(value);
}

std::size_t editDistance(std::string_view a, std::string_view b) {
  std::vector<std::size_t> row(b.size() + 1);
  std::iota(row.begin(), row.end(), std::size_t{0});
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diagonal = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const std::size_t above = row[j];
      row[j] = std::min({above + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

std::optional<std::string> suggestKey(const ConfigSchema& schema, std::string_view key) {
  std::optional<std::string> best;
  std::size_t best_distance = kMaxSuggestionDistance + 1;
  for (const auto& [name, field] : schema.fields()) {
    const std::size_t length_gap =
        name.size() > key.size() ? name.size() - key.size() : key.size() - name.size();
    if (length_gap >= best_distance) continue;
    const std::size_t distance = editDistance(key, name);
    if (distance < best_distance) {
      best_distance = distance;
      best = name;
    }
  }
  return best;
}

bool hasDeclaredKeyUnder(const ConfigSchema& schema, std::string_view prefix) {
  const std::string start = std::string(prefix) + ".";
  const auto it = schema.fields().lower_bound(start);
  return it != schema.fields().end() && it->first.starts_with(start);
}

// Checks bounds and allowed values; returns the reason when the value is refused.
std::optional<std::string> checkConstraints(const ConfigField& field, const ConfigValue& value) {
  if (const auto* number = std::get_if<std::int64_t>(&value)) {
    const bool too_low = field.min_int && *number < *field.min_int;
    const bool too_high = field.max_int && *number > *field.max_int;
    if (!too_low && !too_high) return std::nullopt;
    const std::string shown = formatMaybeSecret(field, value);
    if (field.min_int && field.max_int) {
      return "value " + shown + " is out of range [" + std::to_string(*field.min_int) + ", " +
             std::to_string(*field.max_int) + "]";
    }
    if (too_low)
      return "value " + shown + " is below the minimum " + std::to_string(*field.min_int);
    return "value " + shown + " is above the maximum " + std::to_string(*field.max_int);
  }
  if (const auto* text = std::get_if<std::string>(&value)) {
    if (field.allowed.empty() ||
        std::find(field.allowed.begin(), field.allowed.end(), *text) != field.allowed.end()) {
      return std::nullopt;
    }
    std::string reason = "value " + formatMaybeSecret(field, value) + " is not one of ";
    for (std::size_t i = 0; i < field.allowed.size(); ++i) {
      if (i > 0) reason += ", ";
      reason += quoteToml(field.allowed[i]);
    }
    return reason;
  }
  return std::nullopt;
}

// Validates a parsed TOML document against the schema, collecting values and problems.
class FileReader {
 public:
  FileReader(const ConfigSchema& schema, std::string_view origin, const ConfigLoadOptions& options,
             ValueMap& values)
      : schema_(schema), origin_(origin), options_(options), values_(values) {}

  void walk(const toml::table& table, const std::string& prefix) {
    for (const auto& [name, node] : table) {
      const std::string key = joinKey(prefix, name.str());
      if (const ConfigField* field = schema_.find(key)) {
        readLeaf(*field, name, node);
        continue;
      }
      const toml::table* child = node.as_table();
      const bool declared_under = hasDeclaredKeyUnder(schema_, key);
      if (child == nullptr) {
        // A leaf that is undeclared, or sits where only a table prefix is declared.
        if (options_.reject_unknown) reportUnknown(key, name.source());
      } else if (!child->empty() && (declared_under || options_.reject_unknown)) {
        // Unknown tables are walked too, so each leaf gets its own suggestion.
        walk(*child, key);
      } else if (child->empty() && !declared_under && options_.reject_unknown) {
        reportUnknown(key, name.source());
      }
    }
  }

  void addProblem(const toml::source_region& where, const std::string& what) {
    std::string line(origin_);
    if (where.begin.line > 0) {
      line += ":" + std::to_string(where.begin.line) + ":" + std::to_string(where.begin.column);
    }
    problems_.push_back({where.begin, line + ": " + what});
  }

  // toml++ tables iterate in key order; operators read files top to bottom.
  void flushProblemsTo(std::vector<std::string>& out) {
    std::stable_sort(problems_.begin(), problems_.end(), [](const auto& a, const auto& b) {
      return std::tie(a.first.line, a.first.column) < std::tie(b.first.line, b.first.column);
    });
    for (auto& problem : problems_) out.push_back(std::move(problem.second));
    problems_.clear();
  }

 private:
  // A key segment that is not a bare key (e.g. the quoted "a.b") is shown quoted, which
  // also keeps it from matching a declared dotted path by accident.
  static std::string joinKey(const std::string& prefix, std::string_view segment) {
    const bool bare =
        !segment.empty() && std::all_of(segment.begin(), segment.end(), isBareKeyChar);
    std::string part = bare ? std::string(segment) : quoteToml(segment);
    return prefix.empty() ? part : prefix + "." + part;
  }

  void reportUnknown(const std::string& key, const toml::source_region& where) {
    std::string what = "unknown key '" + key + "'";
    if (auto suggestion = suggestKey(schema_, key)) {
      what += " (did you mean '" + *suggestion + "'?)";
    }
    addProblem(where, what);
  }

  void readLeaf(const ConfigField& field, const toml::key& name, const toml::node& node) {
    // Implicit tables may carry no position of their own; the key always does.
    const toml::source_region& where = node.source().begin.line > 0 ? node.source() : name.source();
    const std::string subject = "key '" + field.key + "': ";
    std::optional<ConfigValue> value;
    switch (field.type) {
      case ConfigType::kBool:
        if (const auto* b = node.as_boolean()) value = b->get();
        break;
      case ConfigType::kInt:
        if (const auto* i = node.as_integer()) value = i->get();
        break;
      case ConfigType::kDouble:
        if (const auto* d = node.as_floating_point()) {
          value = d->get();
        } else if (const auto* i = node.as_integer()) {
          value = static_cast<double>(i->get());
        }
        break;
      case ConfigType::kString:
        if (const auto* s = node.as_string()) value = s->get();
        break;
      case ConfigType::kStringList:
        if (const auto* array = node.as_array()) {
          std::vector<std::string> items;
          for (const toml::node& element : *array) {
            const auto* s = element.as_string();
            if (s == nullptr) {
              addProblem(element.source().begin.line > 0 ? element.source() : where,
                         subject + "expected array of strings, got array containing " +
                             nodeTypeName(element.type()));
              return;
            }
            items.push_back(s->get());
          }
          value = std::move(items);
        }
        break;
    }
    if (!value) {
      addProblem(where, subject + "expected " + typeName(field.type) + ", got " +
                            nodeTypeName(node.type()));
      return;
    }
    if (auto reason = checkConstraints(field, *value)) {
      addProblem(where, subject + *reason);
      return;
    }
    values_[field.key] = std::move(*value);
  }

  const ConfigSchema& schema_;
  std::string_view origin_;
  const ConfigLoadOptions& options_;
  ValueMap& values_;
  std::vector<std::pair<toml::source_position, std::string>> problems_;
};

void readToml(const ConfigSchema& schema, std::string_view text, std::string_view origin,
              const ConfigLoadOptions& options, ValueMap& values,
              std::vector<std::string>& problems) {
  FileReader reader(schema, origin, options, values);
  try {
    reader.walk(toml::parse(text, origin), "");
  } catch (const toml::parse_error& error) {
    reader.addProblem(error.source(), std::string(error.description()));
  }
  reader.flushProblemsTo(problems);
}

std::optional<bool> parseBool(std::string_view text) {
  std::string lower(text);
  std::transform(lower.begin(), lower.end(), lower.begin(), asciiLower);
  if (lower == "true" || lower == "1" || lower == "yes" || lower == "on") return true;
  if (lower == "false" || lower == "0" || lower == "no" || lower == "off") return false;
  return std::nullopt;
}

// Parses an environment value by the field's type; the error text is the reason only.
Result<ConfigValue> parseEnvValue(const ConfigField& field, const std::string& text) {
  const std::string shown = field.secret ? std::string(kRedacted) : "'" + text + "'";
  const auto mismatch = [&] {
    return makeError(ErrorCode::kConfig,
                     std::string("expected ") + typeName(field.type) + ", got " + shown);
  };
  const char* first = text.data();
  const char* last = text.data() + text.size();
  switch (field.type) {
    case ConfigType::kBool:
      if (auto b = parseBool(text)) return ConfigValue(*b);
      return mismatch();
    case ConfigType::kInt: {
      std::int64_t number = 0;
      const auto [end, ec] = std::from_chars(first, last, number);
      if (ec == std::errc::result_out_of_range && end == last) {
        return makeError(ErrorCode::kConfig,
                         "value " + shown + " does not fit in a 64-bit integer");
      }
      if (text.empty() || ec != std::errc() || end != last) return mismatch();
      return ConfigValue(number);
    }
    case ConfigType::kDouble: {
      double number = 0;
      const auto [end, ec] = std::from_chars(first, last, number);
      if (text.empty() || ec != std::errc() || end != last) return mismatch();
      return ConfigValue(number);
    }
    case ConfigType::kString:
      return ConfigValue(text);
    case ConfigType::kStringList: {
      std::vector<std::string> items;
      std::size_t start = 0;
      while (start <= text.size()) {
        std::size_t comma = text.find(',', start);
        if (comma == std::string::npos) comma = text.size();
        std::string_view item(text.data() + start, comma - start);
        while (!item.empty() && (item.front() == ' ' || item.front() == '\t'))
          item.remove_prefix(1);
        while (!item.empty() && (item.back() == ' ' || item.back() == '\t')) item.remove_suffix(1);
        if (!item.empty()) items.emplace_back(item);
        start = comma + 1;
      }
      return ConfigValue(std::move(items));
    }
  }
  return mismatch();
}

void readEnvironment(const ConfigSchema& schema, const EnvLookup& env, ValueMap& values,
                     std::vector<std::string>& problems) {
  for (const auto& [key, field] : schema.fields()) {
    const std::string name = ConfigSchema::envName(key);
    const std::optional<std::string> text = env(name);
    if (!text) continue;
    const std::string subject = "environment variable " + name + " (key '" + key + "'): ";
    Result<ConfigValue> value = parseEnvValue(field, *text);
    if (!value) {
      problems.push_back(subject + value.error().message);
      continue;
    }
    if (auto reason = checkConstraints(field, value.value())) {
      problems.push_back(subject + *reason);
      continue;
    }
    values[key] = std::move(value).value();
  }
}

// Reads the whole file; on failure returns the OS reason.
std::optional<std::string> readFile(const std::filesystem::path& path, std::string& out) {
  std::FILE* file = std::fopen(path.c_str(), "rb");
  if (file == nullptr) return std::generic_category().message(errno);
  char buffer[8192];
  std::size_t n = 0;
  while ((n = std::fread(buffer, 1, sizeof buffer, file)) > 0) out.append(buffer, n);
  // fopen succeeds on a directory; the read is what fails (EISDIR).
  const int read_errno = std::ferror(file) ? errno : 0;
  std::fclose(file);
  if (read_errno != 0) return std::generic_category().message(read_errno);
  return std::nullopt;
}

[[noreturn]] void configMisuse(std::string_view key, std::string_view problem) {
  std::fprintf(stderr, "vessel::Config: key '%.*s' %.*s\n", static_cast<int>(key.size()),
               key.data(), static_cast<int>(problem.size()), problem.data());
  std::abort();
}

// Getter lookup. Always checked (not only under assert): asking for an undeclared key or
// the wrong type is a programming error, and a release build should stop with the key's
// name rather than read a wrong variant alternative.
template <typename Entries>
const auto& entryOrDie(const Entries& entries, std::string_view key) {
  const auto it = entries.find(key);
  if (it == entries.end()) configMisuse(key, "is not present");
  return it->second;
}

template <typename T, typename Entries>
const T& typedOrDie(const Entries& entries, std::string_view key, ConfigType type) {
  const T* value = std::get_if<T>(&entryOrDie(entries, key).value);
  if (value == nullptr) configMisuse(key, std::string("is not of type ") + typeName(type));
  return *value;
}

}  // namespace

void ConfigSchema::add(ConfigField field) {
  assert(isValidKey(field.key) && "config keys are dotted bare keys");
  // A field declared without a default holds the variant's first alternative (false);
  // give it its own type's empty value instead. Integer defaults for floats are widened.
  if (field.type != ConfigType::kBool && std::holds_alternative<bool>(field.default_value) &&
      !std::get<bool>(field.default_value)) {
    field.default_value = emptyValue(field.type);
  } else if (field.type == ConfigType::kDouble &&
             std::holds_alternative<std::int64_t>(field.default_value)) {
    field.default_value = static_cast<double>(std::get<std::int64_t>(field.default_value));
  }
  if (field.default_value.index() != variantIndex(field.type)) {
    assert(false && "config default value does not match the field type");
    field.default_value = emptyValue(field.type);
  }
  // "a.b_c" and "a_b.c" would share one environment variable.
  assert(std::none_of(fields_.begin(), fields_.end(),
                      [&](const auto& entry) {
                        return entry.first != field.key &&
                               envName(entry.first) == envName(field.key);
                      }) &&
         "two config keys map to the same environment variable");
  std::string key = field.key;
  [[maybe_unused]] const bool inserted =
      fields_.try_emplace(std::move(key), std::move(field)).second;
  assert(inserted && "duplicate config key");
}

void ConfigSchema::addSection(std::string_view prefix, const std::vector<ConfigField>& fields) {
  for (ConfigField field : fields) {
    if (!prefix.empty()) field.key = std::string(prefix) + "." + field.key;
    add(std::move(field));
  }
}

const ConfigField* ConfigSchema::find(std::string_view key) const {
  const auto it = fields_.find(key);
  return it == fields_.end() ? nullptr : &it->second;
}

std::string ConfigSchema::envName(std::string_view key) {
  std::string name = "VESSEL_";
  name.reserve(name.size() + key.size());
  for (char c : key) name += (c == '.' || c == '-') ? '_' : asciiUpper(c);
  return name;
}

EnvLookup processEnvironment() {
  return [](const std::string& name) -> std::optional<std::string> {
    const char* value = std::getenv(name.c_str());
    if (value == nullptr) return std::nullopt;
    return std::string(value);
  };
}

Result<Config> Config::load(const ConfigSchema& schema,
                            const std::optional<std::filesystem::path>& file, const EnvLookup& env,
                            const ConfigLoadOptions& options) {
  if (!file || file->empty()) return parse(schema, "", "", env, options);
  try {
    const std::string path = file->string();
    std::string text;
    if (auto reason = readFile(*file, text)) {
      return makeError(ErrorCode::kConfig, "config file '" + path + "': cannot read: " + *reason);
    }
    return parse(schema, text, path, env, options);
  } catch (const std::exception& e) {
    return makeError(ErrorCode::kConfig,
                     "config file '" + file->string() + "': cannot load: " + e.what());
  }
}

Result<Config> Config::parse(const ConfigSchema& schema, std::string_view toml_text,
                             std::string_view origin, const EnvLookup& env,
                             const ConfigLoadOptions& options) {
  const std::string shown_origin = origin.empty() ? "<config>" : std::string(origin);
  try {
    std::vector<std::string> problems;
    ValueMap file_values;
    readToml(schema, toml_text, shown_origin, options, file_values, problems);
    ValueMap env_values;
    readEnvironment(schema, env, env_values, problems);
    if (!problems.empty()) {
      std::string message;
      for (const std::string& problem : problems) {
        if (!message.empty()) message += '\n';
        message += problem;
      }
      return makeError(ErrorCode::kConfig, std::move(message));
    }

    Config config;
    config.origin_ = std::string(origin);
    for (const auto& [key, field] : schema.fields()) {
      Entry entry{field.default_value, ConfigSource::kDefault, field.secret};
      if (auto env_it = env_values.find(key); env_it != env_values.end()) {
        entry.value = std::move(env_it->second);
        entry.source = ConfigSource::kEnvironment;
      } else if (auto file_it = file_values.find(key); file_it != file_values.end()) {
        entry.value = std::move(file_it->second);
        entry.source = ConfigSource::kFile;
      }
      config.entries_.emplace(key, std::move(entry));
    }
    return config;
  } catch (const std::exception& e) {
    // e.g. bad_alloc, or an exception from a caller-supplied EnvLookup.
    return makeError(ErrorCode::kConfig, shown_origin + ": cannot load: " + e.what());
  } catch (...) {
    return makeError(ErrorCode::kConfig, shown_origin + ": cannot load: unknown exception");
  }
}

bool Config::getBool(std::string_view key) const {
  return typedOrDie<bool>(entries_, key, ConfigType::kBool);
}

std::int64_t Config::getInt(std::string_view key) const {
  return typedOrDie<std::int64_t>(entries_, key, ConfigType::kInt);
}

double Config::getDouble(std::string_view key) const {
  return typedOrDie<double>(entries_, key, ConfigType::kDouble);
}

const std::string& Config::getString(std::string_view key) const {
  return typedOrDie<std::string>(entries_, key, ConfigType::kString);
}

const std::vector<std::string>& Config::getStringList(std::string_view key) const {
  return typedOrDie<std::vector<std::string>>(entries_, key, ConfigType::kStringList);
}

const ConfigValue& Config::get(std::string_view key) const {
  return entryOrDie(entries_, key).value;
}

bool Config::has(std::string_view key) const { return entries_.find(key) != entries_.end(); }

ConfigSource Config::source(std::string_view key) const { return entryOrDie(entries_, key).source; }

Config Config::section(std::string_view prefix) const {
  Config out;
  out.origin_ = origin_;
  if (prefix.empty()) {
    out.entries_ = entries_;
    return out;
  }
  const std::string start = std::string(prefix) + ".";
  for (auto it = entries_.lower_bound(start); it != entries_.end() && it->first.starts_with(start);
       ++it) {
    out.entries_.emplace(it->first.substr(start.size()), it->second);
  }
  return out;
}

std::string Config::dump() const {
  std::string out;
  for (const auto& [key, entry] : entries_) {
    out += key;
    out += " = ";
    out += entry.secret ? std::string(kRedacted) : formatValue(entry.value);
    out += "  # ";
    out += sourceName(entry.source);
    out += '\n';
  }
  return out;
}

Config Config::fromValues(std::map<std::string, ConfigValue, std::less<>> values) {
  Config config;
  for (auto& [key, value] : values) {
    config.entries_.emplace(key, Entry{std::move(value), ConfigSource::kDefault, false});
  }
  return config;
}

}  // namespace vessel
