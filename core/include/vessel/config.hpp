// Typed, validated configuration: TOML file + VESSEL_* environment + defaults.
//
// Every key is declared in a ConfigSchema with its type, default and doc. Loading
// checks the file against the schema (unknown keys, wrong types, out-of-range values
// are reported with file, line, key and reason) and then applies the environment:
// `storage.s3.bucket` can be set by `VESSEL_STORAGE_S3_BUCKET`. Precedence is
// environment > file > default.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "vessel/result.hpp"

namespace vessel {

enum class ConfigType { kBool = 1, kInt, kDouble, kString, kStringList };

using ConfigValue = std::variant<bool, std::int64_t, double, std::string, std::vector<std::string>>;

/// One declared key. `key` is the full dotted path, e.g. "storage.local.root".
struct ConfigField {
  std::string key;
  ConfigType type = ConfigType::kString;
  ConfigValue default_value;
  std::string doc;
  bool secret = false;                  ///< redacted in dumps and error messages
  std::optional<std::int64_t> min_int;  ///< inclusive bounds for kInt
  std::optional<std::int64_t> max_int;
  std::vector<std::string> allowed;  ///< allowed values for kString (empty = any)
};

/// The set of keys a process accepts. Core keys plus every plugin's keys.
class ConfigSchema {
 public:
  /// Adds a field; a duplicate key replaces nothing and is a programming error (asserts).
  void add(ConfigField field);
  /// Adds fields whose keys are relative to `prefix` ("storage.local" + "root").
  void addSection(std::string_view prefix, const std::vector<ConfigField>& fields);
  const ConfigField* find(std::string_view key) const;
  const std::map<std::string, ConfigField, std::less<>>& fields() const { return fields_; }
  /// Environment variable name for a key: VESSEL_ + upper snake case.
  static std::string envName(std::string_view key);

 private:
  std::map<std::string, ConfigField, std::less<>> fields_;
};

/// Looks an environment variable up; the default reads the process environment.
using EnvLookup = std::function<std::optional<std::string>(const std::string& name)>;
EnvLookup processEnvironment();

struct ConfigLoadOptions {
  /// When false, keys the schema does not know are ignored instead of reported.
  /// Used for the first pass that only needs to find the plugin path.
  bool reject_unknown = true;
};

/// Where a value came from.
enum class ConfigSource { kDefault = 1, kFile, kEnvironment };

class Config {
 public:
  /// Loads and validates. `file` may be empty (defaults + environment only). On
  /// failure the Error (code kConfig) lists every problem, one per line, each
  /// naming the file (or environment variable), the key and the reason.
  static Result<Config> load(const ConfigSchema& schema,
                             const std::optional<std::filesystem::path>& file,
                             const EnvLookup& env = processEnvironment(),
                             const ConfigLoadOptions& options = {});

  /// Same as load() but from TOML text; `origin` names it in messages.
  static Result<Config> parse(const ConfigSchema& schema, std::string_view toml_text,
                              std::string_view origin, const EnvLookup& env = processEnvironment(),
                              const ConfigLoadOptions& options = {});

  /// Typed getters; the key must be declared in the schema with that type (asserts).
  bool getBool(std::string_view key) const;
  std::int64_t getInt(std::string_view key) const;
  double getDouble(std::string_view key) const;
  const std::string& getString(std::string_view key) const;
  const std::vector<std::string>& getStringList(std::string_view key) const;
  const ConfigValue& get(std::string_view key) const;
  bool has(std::string_view key) const;
  ConfigSource source(std::string_view key) const;

  /// A view of the keys under `prefix`, with keys relative to it. This is what a
  /// plugin factory receives ("storage.local" → {"root": ...}).
  Config section(std::string_view prefix) const;

  /// The file this config came from, if any (for messages).
  const std::string& origin() const { return origin_; }

  /// All keys with effective values and sources, secrets redacted, as TOML-ish lines.
  std::string dump() const;

  /// Builds a config directly from values (tests and embedding apps).
  static Config fromValues(std::map<std::string, ConfigValue, std::less<>> values);

 private:
  struct Entry {
    ConfigValue value;
    ConfigSource source = ConfigSource::kDefault;
    bool secret = false;
  };
  std::map<std::string, Entry, std::less<>> entries_;
  std::string origin_;
};

}  // namespace vessel
