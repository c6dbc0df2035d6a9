// Plugin discovery and instantiation over Boost.DLL.
#include "vessel/plugin_host.hpp"

#include <algorithm>
#include <boost/dll/shared_library.hpp>

namespace vessel {

const char* pluginKindName(PluginKind kind) noexcept {
  switch (kind) {
    case PluginKind::kStorage:
      return "storage";
    case PluginKind::kAuth:
      return "auth";
    case PluginKind::kCodec:
      return "codec";
    case PluginKind::kScheduler:
      return "scheduler";
  }
  return "unknown";
}

struct PluginHost::Loaded {
  const PluginDescriptor* descriptor = nullptr;
  std::shared_ptr<void> library;  // boost::dll::shared_library, or null for static
  std::size_t info_index = 0;
};

PluginHost::PluginHost() = default;
PluginHost::~PluginHost() = default;
PluginHost::PluginHost(PluginHost&&) noexcept = default;
PluginHost& PluginHost::operator=(PluginHost&&) noexcept = default;

namespace {

bool validKind(PluginKind kind) {
  switch (kind) {
    case PluginKind::kStorage:
    case PluginKind::kAuth:
    case PluginKind::kCodec:
    case PluginKind::kScheduler:
      return true;
  }
  return false;
}

bool isPluginFile(const std::filesystem::path& p) {
  std::string name = p.filename().string();
  return name.rfind("libvessel-", 0) == 0 && p.extension() == ".so" &&
         name.rfind("libvessel-core", 0) != 0;
}

}  // namespace

Result<PluginInfo> PluginHost::admit(const PluginDescriptor* d, const std::filesystem::path& path,
                                     std::shared_ptr<void> library) {
  std::string where = path.empty() ? std::string("in-process plugin") : "plugin " + path.string();
  if (!d) return makeError(ErrorCode::kConfig, where + ": entry point returned no descriptor");
  if (d->abi_version != kPluginAbiVersion) {
    return makeError(ErrorCode::kConfig, where + ": plugin ABI version " +
                                             std::to_string(d->abi_version) +
                                             ", but this Vessel needs ABI version " +
                                             std::to_string(kPluginAbiVersion) +
                                             " (rebuild the plugin against this Vessel)");
  }
  if (!validKind(d->kind)) {
    return makeError(ErrorCode::kConfig, where + ": unknown plugin kind " +
                                             std::to_string(static_cast<std::uint32_t>(d->kind)));
  }
  if (!d->name || !*d->name || !d->create || !d->destroy) {
    return makeError(ErrorCode::kConfig, where + ": descriptor lacks a name, create or destroy");
  }
  if (const PluginInfo* existing = find(d->kind, d->name)) {
    return makeError(ErrorCode::kConfig,
                     where + ": a " + pluginKindName(d->kind) + " plugin named '" + d->name +
                         "' is already loaded from " +
                         (existing->path.empty() ? "in-process" : existing->path.string()));
  }
  PluginInfo info;
  info.path = path;
  info.kind = d->kind;
  info.name = d->name;
  info.version = d->version ? d->version : "";
  info.description = d->description ? d->description : "";
  info.abi_version = d->abi_version;
  if (d->config_fields) {
    if (const auto* fields = d->config_fields()) info.fields = *fields;
  }
  auto loaded = std::make_unique<Loaded>();
  loaded->descriptor = d;
  loaded->library = std::move(library);
  loaded->info_index = infos_.size();
  infos_.push_back(info);
  loaded_.push_back(std::move(loaded));
  return info;
}

Result<PluginInfo> PluginHost::load(const std::filesystem::path& file) {
  try {
    auto lib = std::make_shared<boost::dll::shared_library>(
        file, boost::dll::load_mode::rtld_now | boost::dll::load_mode::rtld_local);
    if (!lib->has(kPluginEntrySymbol)) {
      return makeError(ErrorCode::kConfig, "plugin " + file.string() + ": does not export '" +
                                               kPluginEntrySymbol + "' (not a Vessel plugin)");
    }
    auto& entry = lib->get_alias<PluginEntryFn>(kPluginEntrySymbol);
    const PluginDescriptor* d = entry();
    return admit(d, file, std::static_pointer_cast<void>(lib));
  } catch (const std::exception& e) {
    return makeError(ErrorCode::kConfig, "plugin " + file.string() + ": cannot load: " + e.what());
  }
}

Result<PluginInfo> PluginHost::registerStatic(const PluginDescriptor* descriptor) {
  return admit(descriptor, {}, nullptr);
}

void PluginHost::scan(const std::vector<std::filesystem::path>& dirs) {
  for (const auto& dir : dirs) {
    std::error_code ec;
    if (!std::filesystem::is_directory(dir, ec)) continue;
    std::vector<std::filesystem::path> files;
    for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
      if (entry.is_directory(ec)) {
        for (const auto& sub : std::filesystem::directory_iterator(entry.path(), ec)) {
          if (sub.is_regular_file(ec) && isPluginFile(sub.path())) files.push_back(sub.path());
        }
      } else if (entry.is_regular_file(ec) && isPluginFile(entry.path())) {
        files.push_back(entry.path());
      }
    }
    std::sort(files.begin(), files.end());
    for (const auto& f : files) {
      auto r = load(f);
      if (!r.ok()) problems_.push_back(r.error().message);
    }
  }
}

const std::vector<PluginInfo>& PluginHost::plugins() const { return infos_; }
const std::vector<std::string>& PluginHost::problems() const { return problems_; }

const PluginInfo* PluginHost::find(PluginKind kind, std::string_view name) const {
  for (const auto& info : infos_) {
    if (info.kind == kind && info.name == name) return &info;
  }
  return nullptr;
}

std::vector<std::string> PluginHost::names(PluginKind kind) const {
  std::vector<std::string> out;
  for (const auto& info : infos_) {
    if (info.kind == kind) out.push_back(info.name);
  }
  return out;
}

void PluginHost::addToSchema(ConfigSchema& schema) const {
  for (const auto& info : infos_) {
    schema.addSection(std::string(pluginKindName(info.kind)) + "." + info.name, info.fields);
  }
}

Result<std::shared_ptr<void>> PluginHost::createRaw(PluginKind kind, std::string_view name,
                                                    const Config& config) {
  const Loaded* loaded = nullptr;
  for (const auto& l : loaded_) {
    if (l->descriptor->kind == kind && name == l->descriptor->name) loaded = l.get();
  }
  if (!loaded) {
    std::string known;
    for (const auto& n : names(kind)) known += (known.empty() ? "" : ", ") + n;
    return makeError(ErrorCode::kConfig,
                     std::string("no ") + pluginKindName(kind) + " plugin named '" +
                         std::string(name) +
                         "' is installed (available: " + (known.empty() ? "none" : known) + ")");
  }
  const PluginDescriptor* d = loaded->descriptor;
  std::string section = std::string(pluginKindName(kind)) + "." + std::string(name);
  std::string error;
  void* object = d->create(config.section(section), error);
  if (!object) {
    return makeError(ErrorCode::kConfig, std::string(pluginKindName(kind)) + " plugin '" +
                                             std::string(name) +
                                             "': " + (error.empty() ? "creation failed" : error));
  }
  // The deleter holds the library: it stays mapped while any object it made lives.
  auto destroy = d->destroy;
  std::shared_ptr<void> library = loaded->library;
  return std::shared_ptr<void>(object, [destroy, library](void* p) { destroy(p); });
}

Result<std::shared_ptr<Storage>> PluginHost::createStorage(std::string_view name,
                                                           const Config& config) {
  auto raw = createRaw(PluginKind::kStorage, name, config);
  if (!raw.ok()) return std::move(raw).error();
  std::shared_ptr<void> holder = std::move(raw).value();
  auto* storage = static_cast<Storage*>(holder.get());
  return std::shared_ptr<Storage>(holder, storage);
}

Result<std::shared_ptr<Codec>> PluginHost::createCodec(std::string_view name,
                                                       const Config& config) {
  auto raw = createRaw(PluginKind::kCodec, name, config);
  if (!raw.ok()) return std::move(raw).error();
  std::shared_ptr<void> holder = std::move(raw).value();
  auto* codec = static_cast<Codec*>(holder.get());
  return std::shared_ptr<Codec>(holder, codec);
}

Result<std::shared_ptr<Scheduler>> PluginHost::createScheduler(std::string_view name,
                                                               const Config& config) {
  auto raw = createRaw(PluginKind::kScheduler, name, config);
  if (!raw.ok()) return std::move(raw).error();
  std::shared_ptr<void> holder = std::move(raw).value();
  auto* scheduler = static_cast<Scheduler*>(holder.get());
  return std::shared_ptr<Scheduler>(holder, scheduler);
}

Result<std::shared_ptr<Auth>> PluginHost::createAuth(std::string_view name, const Config& config) {
  auto raw = createRaw(PluginKind::kAuth, name, config);
  if (!raw.ok()) return std::move(raw).error();
  std::shared_ptr<void> holder = std::move(raw).value();
  auto* auth = static_cast<Auth*>(holder.get());
  return std::shared_ptr<Auth>(holder, auth);
}

}  // namespace vessel
