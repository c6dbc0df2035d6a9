// Runtime assembly: config passes, plugin discovery, search paths.
#include "vessel/runtime.hpp"

#include <unistd.h>

#include "vessel_build_config.h"

namespace vessel {

const char* versionString() noexcept { return VESSEL_VERSION; }

namespace {

std::filesystem::path exeDir() {
  std::error_code ec;
  auto p = std::filesystem::read_symlink("/proc/self/exe", ec);
  return ec ? std::filesystem::path() : p.parent_path();
}

void addUnique(std::vector<std::filesystem::path>& dirs, const std::filesystem::path& p) {
  if (p.empty()) return;
  for (const auto& d : dirs) {
    if (d == p) return;
  }
  dirs.push_back(p);
}

}  // namespace

std::vector<std::filesystem::path> Runtime::defaultPluginDirs() {
  std::vector<std::filesystem::path> dirs;
  auto exe = exeDir();
  if (!exe.empty()) {
    addUnique(dirs, (exe / ".." / "plugins").lexically_normal());  // build tree
    addUnique(
        dirs,
        (exe / ".." / VESSEL_LIBDIR_REL / "vessel" / "plugins").lexically_normal());  // installed
  }
  addUnique(dirs, VESSEL_INSTALL_PLUGIN_DIR);
  return dirs;
}

std::vector<std::filesystem::path> Runtime::defaultPipelineDirs() {
  std::vector<std::filesystem::path> dirs;
  auto exe = exeDir();
  if (!exe.empty()) {
    addUnique(dirs, (exe / ".." / "pipelines").lexically_normal());
    addUnique(dirs, (exe / ".." / VESSEL_DATADIR_REL / "vessel" / "pipelines").lexically_normal());
  }
  addUnique(dirs, VESSEL_INSTALL_PIPELINE_DIR);
  return dirs;
}

ConfigSchema Runtime::coreSchema() {
  ConfigSchema s;
  s.add({"log.level",
         ConfigType::kString,
         std::string("info"),
         "Log level: error, warn, info or debug",
         false,
         {},
         {},
         {"error", "warn", "info", "debug"}});
  s.add({"plugins.path",
         ConfigType::kStringList,
         std::vector<std::string>{},
         "Extra directories searched for plugins before the built-in ones",
         false,
         {},
         {},
         {}});
  s.add({"storage.plugin",
         ConfigType::kString,
         std::string("local"),
         "Storage plugin name (e.g. local)",
         false,
         {},
         {},
         {}});
  s.add({"transcode.pipeline",
         ConfigType::kString,
         std::string("hls-aac"),
         "Default ladder (a pipelines/<name>.toml file)",
         false,
         {},
         {},
         {}});
  s.add({"transcode.pipelines_path",
         ConfigType::kStringList,
         std::vector<std::string>{},
         "Extra directories searched for ladder files before the built-in ones",
         false,
         {},
         {},
         {}});
  s.add({"transcode.stall_timeout_s",
         ConfigType::kInt,
         std::int64_t{60},
         "Fail a transcode that makes no progress for this many seconds",
         false,
         1,
         86400,
         {}});
  s.add({"transcode.probe_timeout_s",
         ConfigType::kInt,
         std::int64_t{15},
         "Give up probing an input after this many seconds",
         false,
         1,
         3600,
         {}});
  return s;
}

Result<std::unique_ptr<Runtime>> Runtime::create(const RuntimeOptions& options) {
  ConfigSchema core = coreSchema();
  // Pass 1: only the plugin path matters; plugin sections are not known yet.
  auto first = Config::load(core, options.config_file, options.env, {.reject_unknown = false});
  if (!first.ok()) return std::move(first).error();

  auto rt = std::make_unique<Runtime>();
  std::vector<std::filesystem::path> plugin_dirs;
  for (const auto& p : first.value().getStringList("plugins.path")) plugin_dirs.emplace_back(p);
  for (const auto& p :
       options.default_plugin_dirs.empty() ? defaultPluginDirs() : options.default_plugin_dirs) {
    addUnique(plugin_dirs, p);
  }
  rt->plugins_.scan(plugin_dirs);

  // Pass 2: the full schema, strictly.
  ConfigSchema full = core;
  rt->plugins_.addToSchema(full);
  auto second = Config::load(full, options.config_file, options.env);
  if (!second.ok()) return std::move(second).error();
  rt->config_ = std::move(second).value();

  for (const auto& p : rt->config_.getStringList("transcode.pipelines_path")) {
    addUnique(rt->pipeline_dirs_, p);
  }
  for (const auto& p : options.default_pipeline_dirs.empty() ? defaultPipelineDirs()
                                                             : options.default_pipeline_dirs) {
    addUnique(rt->pipeline_dirs_, p);
  }
  return rt;
}

Result<Ladder> Runtime::ladder(std::string_view name) const {
  return findLadder(name, pipeline_dirs_);
}

Result<std::shared_ptr<Storage>> Runtime::storage() {
  return plugins_.createStorage(config_.getString("storage.plugin"), config_);
}

Result<std::shared_ptr<Storage>> Runtime::storageWith(
    std::string_view plugin, const std::map<std::string, ConfigValue, std::less<>>& overrides) {
  const PluginInfo* info = plugins_.find(PluginKind::kStorage, plugin);
  if (!info) return plugins_.createStorage(plugin, config_);  // produces the "not installed" error
  std::map<std::string, ConfigValue, std::less<>> values;
  const std::string section = "storage." + std::string(plugin) + ".";
  for (const auto& f : info->fields) {
    values[section + f.key] =
        config_.has(section + f.key) ? config_.get(section + f.key) : f.default_value;
  }
  for (const auto& [k, v] : overrides) values[section + k] = v;
  return plugins_.createStorage(plugin, Config::fromValues(std::move(values)));
}

Result<std::map<std::string, std::shared_ptr<Codec>>> Runtime::codecsFor(const Ladder& ladder) {
  std::map<std::string, std::shared_ptr<Codec>> codecs;
  for (const auto& rung : ladder.rungs) {
    if (codecs.count(rung.codec)) continue;
    auto c = plugins_.createCodec(rung.codec, config_);
    if (!c.ok()) return std::move(c).error();
    codecs[rung.codec] = std::move(c).value();
  }
  return codecs;
}

}  // namespace vessel
