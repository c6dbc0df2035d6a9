// The plugin ABI: what a Vessel plugin shared library exports, and nothing more.
//
// A plugin is a shared library that exports exactly one symbol through
// BOOST_DLL_ALIAS, named `vessel_plugin_v1`: a function returning a pointer to a
// static PluginDescriptor. The host reads the descriptor, checks `abi_version` and
// `kind` before calling anything else, validates the plugin's config section
// against `config_fields`, and only then calls `create`. No exception crosses the
// boundary: `create` is noexcept and reports failure through `error`.
//
// Plugins and host must be built by the same compiler with the same flags (the
// interfaces are C++ classes); the ABI version is bumped whenever any interface in
// core/include/vessel/ changes incompatibly.
//
// Example (see plugins/storage-local/ for a complete one):
//
//   static void* create(const vessel::Config& cfg, std::string& error) noexcept { ... }
//   static void destroy(void* p) noexcept { delete static_cast<vessel::Storage*>(p); }
//   VESSEL_PLUGIN(vessel::PluginKind::kStorage, "local", "0.1.0", "Local disk", fields, create,
//   destroy)
#pragma once

#include <boost/dll/alias.hpp>
#include <cstdint>
#include <string>
#include <vector>

#include "vessel/config.hpp"

namespace vessel {

/// Bumped on any incompatible change to the plugin-facing headers.
inline constexpr std::uint32_t kPluginAbiVersion = 3;  // 2: Storage presign; 3: Rung::options

/// No valid zero value (a zeroed descriptor is never valid).
enum class PluginKind : std::uint32_t { kStorage = 1, kAuth = 2, kCodec = 3, kScheduler = 4 };

const char* pluginKindName(PluginKind kind) noexcept;

struct PluginDescriptor {
  std::uint32_t abi_version;  ///< must equal the host's kPluginAbiVersion
  PluginKind kind;
  const char* name;         ///< stable registry key, e.g. "local"; also the config section name
  const char* version;      ///< the plugin's own version, informational
  const char* description;  ///< one line
  /// Config keys relative to "<kind>.<name>" (e.g. "root" → storage.local.root).
  const std::vector<ConfigField>* (*config_fields)() noexcept;
  /// Creates the plugin object (a Storage*, Codec*, ... matching `kind`) from its
  /// validated config section. Returns nullptr and fills `error` on failure.
  void* (*create)(const Config& config, std::string& error) noexcept;
  /// Destroys what `create` returned.
  void (*destroy)(void* object) noexcept;
};

using PluginEntryFn = const PluginDescriptor*() noexcept;

/// The exported alias name every plugin uses.
inline constexpr const char* kPluginEntrySymbol = "vessel_plugin_v1";

}  // namespace vessel

/// Declares the plugin's single entry point. Use once per plugin library, at namespace scope.
#define VESSEL_PLUGIN(KIND, NAME, VERSION, DESCRIPTION, FIELDS_FN, CREATE_FN, DESTROY_FN) \
  namespace {                                                                             \
  const ::vessel::PluginDescriptor* vesselPluginEntry() noexcept {                        \
    static const ::vessel::PluginDescriptor descriptor{::vessel::kPluginAbiVersion,       \
                                                       KIND,                              \
                                                       NAME,                              \
                                                       VERSION,                           \
                                                       DESCRIPTION,                       \
                                                       FIELDS_FN,                         \
                                                       CREATE_FN,                         \
                                                       DESTROY_FN};                       \
    return &descriptor;                                                                   \
  }                                                                                       \
  }                                                                                       \
  BOOST_DLL_ALIAS(vesselPluginEntry, vessel_plugin_v1)
