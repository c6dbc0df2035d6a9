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
  s.add({"auth.plugin",
         ConfigType::kString,
         std::string("local"),
         "Auth plugin name: local (accounts with passwords) or trusted-header (behind an SSO "
         "proxy)",
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
  s.add({"data_dir",
         ConfigType::kString,
         std::string("var"),
         "Directory for the embedded PostgreSQL cluster and local storage (--data-dir)",
         false,
         {},
         {},
         {}});
  s.add({"database.url",
         ConfigType::kString,
         std::string(""),
         "PostgreSQL connection URL; empty = start the embedded cluster under data_dir",
         true,
         {},
         {},
         {}});
  s.add({"workers.concurrency",
         ConfigType::kInt,
         std::int64_t{0},
         "Transcoding workers per process; 0 = one per CPU core",
         false,
         0,
         256,
         {}});
  s.add({"workers.lease_s",
         ConfigType::kInt,
         std::int64_t{30},
         "A claimed job is another worker's after this long without a heartbeat",
         false,
         2,
         3600,
         {}});
  s.add({"workers.heartbeat_s",
         ConfigType::kInt,
         std::int64_t{5},
         "How often a running job renews its lease and reports progress",
         false,
         1,
         600,
         {}});
  s.add({"workers.max_attempts",
         ConfigType::kInt,
         std::int64_t{3},
         "Attempts per job before it fails for good",
         false,
         1,
         100,
         {}});
  s.add({"workers.backoff_base_s",
         ConfigType::kInt,
         std::int64_t{5},
         "Retry n waits base * 2^(n-1) seconds (+-25 % jitter)",
         false,
         1,
         3600,
         {}});
  s.add({"workers.shutdown_grace_s",
         ConfigType::kInt,
         std::int64_t{20},
         "On SIGTERM, running jobs get this long before they are released",
         false,
         0,
         3600,
         {}});
  s.add({"scheduler.enabled",
         ConfigType::kStringList,
         std::vector<std::string>{"cleanup"},
         "Scheduler plugins that serve/worker processes run on their intervals",
         false,
         {},
         {},
         {}});
  return s;
}

Result<std::unique_ptr<Runtime>> Runtime::create(const RuntimeOptions& options) {
  ConfigSchema core = coreSchema();
  for (const ConfigField& f : options.extra_fields) core.add(f);
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

Result<std::shared_ptr<Storage>> Runtime::storageFor(const std::filesystem::path& data_dir) {
  const std::string plugin = config_.getString("storage.plugin");
  if (plugin == "local" && config_.has("storage.local.root") &&
      config_.source("storage.local.root") == ConfigSource::kDefault) {
    return storageWith("local", {{"root", (data_dir / "storage").string()}});
  }
  return storage();
}

Result<Runtime::DatabaseHandle> Runtime::openDatabase(const std::filesystem::path& data_dir,
                                                      const std::string& url_override) {
  DatabaseHandle handle;
  std::string url = url_override.empty() ? config_.getString("database.url") : url_override;
  if (!url.empty()) {
    handle.conninfo = url;
  } else {
    std::error_code ec;
    std::filesystem::create_directories(data_dir, ec);
    EmbeddedPostgres::Options options;
    options.data_dir = std::filesystem::absolute(data_dir);
    auto pg = EmbeddedPostgres::start(options);
    if (!pg.ok()) return std::move(pg).error();
    handle.embedded = std::move(pg).value();
    handle.conninfo = handle.embedded->connectionString();
  }
  auto version = migrateDatabase(handle.conninfo);
  if (!version.ok()) return std::move(version).error();
  return handle;
}

}  // namespace vessel
