// Finds, checks and instantiates plugins (Boost.DLL). One registry per kind,
// keyed by the plugin's stable name.
#pragma once

#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "vessel/auth.hpp"
#include "vessel/codec.hpp"
#include "vessel/config.hpp"
#include "vessel/plugin.hpp"
#include "vessel/result.hpp"
#include "vessel/scheduler.hpp"
#include "vessel/storage.hpp"

namespace vessel {

struct PluginInfo {
  std::filesystem::path path;  ///< empty for plugins registered in-process
  PluginKind kind = PluginKind::kStorage;
  std::string name;
  std::string version;
  std::string description;
  std::uint32_t abi_version = 0;
  std::vector<ConfigField> fields;  ///< keys relative to "<kind>.<name>"
};

class PluginHost {
 public:
  PluginHost();
  ~PluginHost();
  PluginHost(PluginHost&&) noexcept;
  PluginHost& operator=(PluginHost&&) noexcept;

  /// Loads every `libvessel-*.so` in `dirs` (and their immediate subdirectories).
  /// Files that fail the checks are skipped and described in problems().
  void scan(const std::vector<std::filesystem::path>& dirs);

  /// Loads one file; refuses (without calling anything but the entry point) a
  /// wrong ABI version, an unknown kind or a duplicate name. The message names
  /// the file and both versions.
  Result<PluginInfo> load(const std::filesystem::path& file);

  /// Registers an in-process plugin (tests, embedding apps). Same checks as load().
  Result<PluginInfo> registerStatic(const PluginDescriptor* descriptor);

  const std::vector<PluginInfo>& plugins() const;
  const std::vector<std::string>& problems() const;
  const PluginInfo* find(PluginKind kind, std::string_view name) const;
  std::vector<std::string> names(PluginKind kind) const;

  /// Adds every plugin's config fields under "<kind>.<name>." to `schema`.
  void addToSchema(ConfigSchema& schema) const;

  /// Instantiates a plugin from its config section of `config` (validated
  /// already). The returned object keeps its library loaded while it lives.
  Result<std::shared_ptr<Storage>> createStorage(std::string_view name, const Config& config);
  Result<std::shared_ptr<Codec>> createCodec(std::string_view name, const Config& config);
  Result<std::shared_ptr<Scheduler>> createScheduler(std::string_view name, const Config& config);
  Result<std::shared_ptr<Auth>> createAuth(std::string_view name, const Config& config);

 private:
  struct Loaded;
  Result<std::shared_ptr<void>> createRaw(PluginKind kind, std::string_view name,
                                          const Config& config);
  Result<PluginInfo> admit(const PluginDescriptor* d, const std::filesystem::path& path,
                           std::shared_ptr<void> library);
  std::vector<PluginInfo> infos_;
  std::vector<std::unique_ptr<Loaded>> loaded_;
  std::vector<std::string> problems_;
};

}  // namespace vessel
