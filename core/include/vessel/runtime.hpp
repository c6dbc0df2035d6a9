// Runtime: the assembled core for one process — validated config, loaded
// plugins, ladder lookup and plugin instances. The CLI and the server are thin
// clients of it; an integrating app builds one the same way.
#pragma once

#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "vessel/config.hpp"
#include "vessel/database.hpp"
#include "vessel/ladder.hpp"
#include "vessel/plugin_host.hpp"
#include "vessel/result.hpp"
#include "vessel/storage.hpp"
#include "vessel/transcode.hpp"

namespace vessel {

/// The version of this library.
const char* versionString() noexcept;

struct RuntimeOptions {
  std::optional<std::filesystem::path> config_file;
  EnvLookup env = processEnvironment();
  /// Searched after plugins.path; defaults derive from the executable's location.
  std::vector<std::filesystem::path> default_plugin_dirs;
  std::vector<std::filesystem::path> default_pipeline_dirs;
  /// Keys an embedding app adds to the schema (the server's `server.*` keys).
  std::vector<ConfigField> extra_fields;
};

class Runtime {
 public:
  /// Declares the core's own keys (log, plugins, storage, transcode).
  static ConfigSchema coreSchema();

  /// Loads config (two passes: core keys, then core + every plugin's keys), scans
  /// plugins. Any invalid key, type or plugin problem is an error (kConfig).
  static Result<std::unique_ptr<Runtime>> create(const RuntimeOptions& options);

  /// Default search dirs relative to the running executable (build tree and
  /// installed layouts), plus the compiled-in install locations.
  static std::vector<std::filesystem::path> defaultPluginDirs();
  static std::vector<std::filesystem::path> defaultPipelineDirs();

  const Config& config() const { return config_; }
  PluginHost& plugins() { return plugins_; }
  const std::vector<std::filesystem::path>& pipelineDirs() const { return pipeline_dirs_; }

  Result<Ladder> ladder(std::string_view name) const;
  /// The configured storage plugin (storage.plugin), with its config section.
  Result<std::shared_ptr<Storage>> storage();
  /// A storage plugin instance with explicit values for its section (e.g. a
  /// local store rooted at a staging directory).
  Result<std::shared_ptr<Storage>> storageWith(
      std::string_view plugin, const std::map<std::string, ConfigValue, std::less<>>& overrides);
  /// The storage for a process with a data dir: like storage(), but the local
  /// plugin's root defaults to <data_dir>/storage unless set explicitly.
  Result<std::shared_ptr<Storage>> storageFor(const std::filesystem::path& data_dir);

  struct DatabaseHandle {
    std::string conninfo;
    std::unique_ptr<EmbeddedPostgres> embedded;  ///< null when an external server is used
  };
  /// `url_override`, else database.url, else the embedded cluster under data_dir
  /// (started or attached). Applies migrations either way.
  Result<DatabaseHandle> openDatabase(const std::filesystem::path& data_dir,
                                      const std::string& url_override = "");

  /// The codec plugins a ladder needs, by name.
  Result<std::map<std::string, std::shared_ptr<Codec>>> codecsFor(const Ladder& ladder);

 private:
  Config config_;
  PluginHost plugins_;
  std::vector<std::filesystem::path> pipeline_dirs_;
};

}  // namespace vessel
