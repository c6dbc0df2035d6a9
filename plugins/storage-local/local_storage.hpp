// LocalStorage: the Storage interface over one directory on a local filesystem.
//
// Keys map to files below the root ("a/b.ts" → <root>/a/b.ts). Every access walks
// the key's components from a directory fd opened once on the root, with
// O_NOFOLLOW at each step, so a symlink anywhere below the root is refused rather
// than followed: nothing outside the root can be read, written or removed through
// a key. stat() and openReader() first try one openat2(2) with RESOLVE_BENEATH |
// RESOLVE_NO_SYMLINKS, the same rule checked by the kernel in one call, and walk
// only when it fails (for the precise error) or the kernel lacks it. Writes go
// to a hidden temp file in the target directory (".<name>.tmp.<hex>") and are
// renamed into place, so readers see either the old object or the new one.
#pragma once

#include <filesystem>
#include <memory>
#include <optional>
#include <shared_mutex>
#include <span>
#include <string>
#include <string_view>

#include "vessel/result.hpp"
#include "vessel/storage.hpp"

namespace vessel::plugins {

struct LocalStorageOptions {
  /// Create the root directory (and its parents) when it does not exist.
  bool create_root = true;
  /// fdatasync every object before renaming it into place, and the directory after.
  /// Off by default: segments are re-creatable and per-object syncs are slow.
  bool durable = false;
};

class LocalStorage final : public Storage {
 public:
  /// Opens (and optionally creates) `root`. A relative root resolves against the
  /// process working directory.
  static Result<std::unique_ptr<LocalStorage>> open(const std::filesystem::path& root,
                                                    const LocalStorageOptions& options) noexcept;

  ~LocalStorage() override;
  LocalStorage(const LocalStorage&) = delete;
  LocalStorage& operator=(const LocalStorage&) = delete;

  Result<void> put(std::string_view key, std::span<const std::byte> data,
                   std::string_view content_type) noexcept override;
  Result<std::unique_ptr<ObjectWriter>> openWriter(std::string_view key,
                                                   std::string_view content_type) noexcept override;
  Result<std::unique_ptr<ObjectReader>> openReader(
      std::string_view key, std::uint64_t offset = 0,
      std::optional<std::uint64_t> length = std::nullopt) noexcept override;
  Result<ObjectInfo> stat(std::string_view key) noexcept override;
  Result<bool> exists(std::string_view key) noexcept override;
  Result<void> remove(std::string_view key) noexcept override;
  Result<ListPage> list(std::string_view prefix, std::string_view page_token,
                        std::size_t max_keys) noexcept override;
  Result<std::uint64_t> removePrefix(std::string_view prefix) noexcept override;
  /// The absolute path of the key's file (no existence check). Note that a path
  /// string, unlike this class, follows symlinks when opened.
  std::optional<std::string> localPath(std::string_view key) const noexcept override;

  /// The absolute root directory, without a trailing '/'.
  const std::string& root() const noexcept { return root_; }

 private:
  LocalStorage(std::string root, int root_fd, bool durable) noexcept;

  Result<void> putOnce(std::string_view key, std::span<const std::byte> data);
  Result<std::unique_ptr<ObjectWriter>> openWriterOnce(std::string_view key);
  Result<void> removeKey(std::string_view op, std::string_view key);
  Result<ListPage> listImpl(std::string_view prefix, std::string_view page_token,
                            std::size_t max_keys);

  std::string root_;
  int root_fd_;  ///< O_PATH | O_DIRECTORY on the root; owned
  bool durable_;
  /// remove() prunes directories it leaves empty. Writers hold this shared from the
  /// start of their walk until their temp file exists (from then on the directory
  /// is not empty); pruning holds it exclusively. Other processes sharing the root
  /// are covered by retrying the walk.
  std::shared_mutex prune_mutex_;
};

/// Factory used by the plugin entry and by tests.
Result<std::unique_ptr<Storage>> makeLocalStorage(const std::filesystem::path& root,
                                                  const LocalStorageOptions& options = {}) noexcept;

/// Whether a file name is one of our in-progress temp files (".<name>.tmp.<16 hex>");
/// such names are hidden from list() and refused as the last component of a key.
bool isLocalTempName(std::string_view name) noexcept;

}  // namespace vessel::plugins
