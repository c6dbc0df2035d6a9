// storage/local: stores objects as files below one directory on a local filesystem.
//
// Keys map to paths below `root` ("u1/abc/128k/segment_000.ts" → <root>/u1/abc/...).
// Writes go to a hidden temp file next to the target and are renamed into place, so
// readers never see a partial object. Symlinks below the root are never followed:
// a key that runs into one is refused. localPath() hands out real file paths, so the
// server can serve segments with zero-copy and GStreamer can read them directly.
//
// Config keys (section [storage.local]):
//   root         string  "var/storage"  directory holding the objects; relative paths
//                                       resolve against the process working directory
//   create_root  bool    true           create `root` (with parents) if it is missing
//   durable      bool    false          fdatasync each object (and its directory) when
//                                       it is published; slower, survives power loss
//
// Example:
//   [storage]
//   plugin = "local"
//   [storage.local]
//   root = "var/storage"
//   durable = false
#include "vessel/plugin.hpp"

#include <cstdint>
#include <exception>
#include <memory>
#include <string>
#include <vector>

#include "local_storage.hpp"
#include "vessel/config.hpp"
#include "vessel/storage.hpp"

namespace {

std::vector<vessel::ConfigField> makeConfigFields() {
  // Same shape as the other plugins' field tables (codec-aac, scheduler-cleanup).
  return {
      {"root",
       vessel::ConfigType::kString,
       std::string("var/storage"),
       "Directory holding the objects; relative paths resolve against the working directory.",
       false,
       {},
       {},
       {}},
      {"create_root",
       vessel::ConfigType::kBool,
       true,
       "Create the root directory (with parents) when it is missing.",
       false,
       {},
       {},
       {}},
      {"durable",
       vessel::ConfigType::kBool,
       false,
       "fdatasync every object and its directory when publishing it (slower).",
       false,
       {},
       {},
       {}},
  };
}

const std::vector<vessel::ConfigField>* configFields() noexcept {
  try {
    static const std::vector<vessel::ConfigField> fields = makeConfigFields();
    return &fields;
  } catch (...) {
    // Out of memory while building three fields; an empty schema makes the host
    // reject any [storage.local] keys instead of crashing.
    static const std::vector<vessel::ConfigField> empty;
    return &empty;
  }
}

void* create(const vessel::Config& config, std::string& error) noexcept {
  try {
    vessel::plugins::LocalStorageOptions options;
    options.create_root = config.getBool("create_root");
    options.durable = config.getBool("durable");
    auto storage = vessel::plugins::makeLocalStorage(config.getString("root"), options);
    if (!storage) {
      error = storage.error().message;
      return nullptr;
    }
    // Hand out a Storage* (not LocalStorage*): destroy() casts back to Storage*.
    vessel::Storage* object = std::move(storage).value().release();
    return object;
  } catch (const std::exception& e) {
    try {
      error = std::string("local storage: create: ") + e.what();
    } catch (...) {
    }
    return nullptr;
  } catch (...) {
    try {
      error = "local storage: create: unknown exception";
    } catch (...) {
    }
    return nullptr;
  }
}

void destroy(void* object) noexcept { delete static_cast<vessel::Storage*>(object); }

}  // namespace

VESSEL_PLUGIN(vessel::PluginKind::kStorage, "local", "0.1.0",
              "Objects as files below a local directory", configFields, create, destroy)
