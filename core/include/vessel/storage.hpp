// The storage plugin interface: a flat key → object store (local disk, S3, ...).
//
// Keys are relative, '/'-separated paths such as "u1/3f0c.../128k/segment_000.ts".
// Implementations must refuse keys that could escape their namespace (absolute
// paths, "..", empty components, NUL bytes) with kInvalidArgument; isValidKey()
// gives the shared rule. Every method is noexcept and reports through Result.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "vessel/result.hpp"

namespace vessel {

struct ObjectInfo {
  std::string key;
  std::uint64_t size_bytes = 0;
  std::int64_t modified_unix_ms = 0;
};

/// A request a client can make without Vessel's credentials (presigned URL).
struct PresignedRequest {
  std::string method;  ///< "PUT" or "GET"
  std::string url;     ///< absolute
  /// Headers the client must send exactly (e.g. Content-Type bound into the signature).
  std::vector<std::pair<std::string, std::string>> headers;
  std::int64_t expires_unix = 0;
};

struct ListPage {
  std::vector<ObjectInfo> objects;
  std::string next_token;  ///< empty when this is the last page
};

/// A streaming writer for one object. Nothing is visible under the key until
/// commit() succeeds; destroying an uncommitted writer discards what was written.
class ObjectWriter {
 public:
  virtual ~ObjectWriter() = default;
  virtual Result<void> write(std::span<const std::byte> data) noexcept = 0;
  virtual Result<void> commit() noexcept = 0;
  virtual void abort() noexcept = 0;
  virtual std::uint64_t bytesWritten() const noexcept = 0;
};

/// A streaming reader; read() returns 0 at the end.
class ObjectReader {
 public:
  virtual ~ObjectReader() = default;
  virtual Result<std::size_t> read(std::span<std::byte> buffer) noexcept = 0;
  virtual std::uint64_t sizeBytes() const noexcept = 0;
};

/// Also implemented by readers whose bytes are one local file (storage-local),
/// so that a server can have the kernel send the file to the socket (sendfile)
/// instead of copying it. Found with dynamic_cast; not part of the plugin ABI.
class LocalFileReader {
 public:
  virtual ~LocalFileReader();
  /// The open file (owned by the reader) and where the reader's range starts.
  virtual int fileDescriptor() const noexcept = 0;
  virtual std::uint64_t rangeOffset() const noexcept = 0;
  /// The whole file's size and modification time (as ObjectInfo has them) when
  /// it was opened: from the open file, so no second stat is needed.
  virtual std::uint64_t fileSize() const noexcept = 0;
  virtual std::int64_t modifiedUnixMs() const noexcept = 0;
};

class Storage {
 public:
  virtual ~Storage() = default;

  /// Writes a whole object atomically.
  virtual Result<void> put(std::string_view key, std::span<const std::byte> data,
                           std::string_view content_type) noexcept = 0;
  virtual Result<std::unique_ptr<ObjectWriter>> openWriter(
      std::string_view key, std::string_view content_type) noexcept = 0;
  /// Reads [offset, offset + length); length nullopt = to the end.
  virtual Result<std::unique_ptr<ObjectReader>> openReader(
      std::string_view key, std::uint64_t offset = 0,
      std::optional<std::uint64_t> length = std::nullopt) noexcept = 0;
  /// kNotFound if absent.
  virtual Result<ObjectInfo> stat(std::string_view key) noexcept = 0;
  virtual Result<bool> exists(std::string_view key) noexcept = 0;
  /// Removing an absent key succeeds (idempotent).
  virtual Result<void> remove(std::string_view key) noexcept = 0;
  /// Lists keys starting with `prefix` in lexicographic order, at most `max_keys`.
  virtual Result<ListPage> list(std::string_view prefix, std::string_view page_token,
                                std::size_t max_keys) noexcept = 0;
  /// Removes every key under `prefix`; returns how many were removed.
  virtual Result<std::uint64_t> removePrefix(std::string_view prefix) noexcept = 0;
  /// A local filesystem path for the key when the store is a local disk (lets
  /// GStreamer read it directly and the server use zero-copy); nullopt otherwise.
  virtual std::optional<std::string> localPath(std::string_view key) const noexcept = 0;

  /// A presigned PUT of exactly `size_bytes` bytes of `content_type` to `key`,
  /// valid for `ttl_s` seconds, for stores a client can upload to directly (S3).
  /// nullopt: the store has no such URLs (local disk: Vessel receives the bytes).
  virtual Result<std::optional<PresignedRequest>> presignPut(std::string_view key,
                                                             std::string_view content_type,
                                                             std::uint64_t size_bytes,
                                                             std::int64_t ttl_s) noexcept {
    (void)key, (void)content_type, (void)size_bytes, (void)ttl_s;
    return std::optional<PresignedRequest>();
  }
  /// A presigned GET of `key` valid for `ttl_s` seconds; nullopt as above.
  virtual Result<std::optional<PresignedRequest>> presignGet(std::string_view key,
                                                             std::int64_t ttl_s) noexcept {
    (void)key, (void)ttl_s;
    return std::optional<PresignedRequest>();
  }
  /// The public URL of `key` when the store is served publicly (e.g. an R2
  /// public bucket or CDN domain configured as public_base_url); nullopt otherwise.
  virtual std::optional<std::string> publicUrl(std::string_view key) const noexcept {
    (void)key;
    return std::nullopt;
  }

  /// Convenience: reads a whole object into memory (for small objects only).
  Result<std::vector<std::byte>> getAll(std::string_view key) noexcept;
};

/// The key rule shared by all stores: non-empty, relative, '/'-separated, no
/// empty/"."/".." component, no NUL or backslash, at most 1024 bytes.
bool isValidKey(std::string_view key) noexcept;

}  // namespace vessel
