// S3Storage: the Storage interface over an S3-compatible bucket (Cloudflare R2,
// AWS S3, MinIO, ...), spoken over libcurl (vessel::HttpClient, one pooled handle
// per concurrent request so connections are kept alive) and signed with our own
// SigV4 code (sigv4.hpp).
//
// - put: one PUT up to part_size_bytes, else a multipart upload.
// - openWriter: buffers one part; the first full part starts a multipart upload and
//   parts go up in parallel (upload_concurrency) while the caller keeps writing;
//   commit completes it (or PUTs the small object whole). Nothing is visible before
//   commit; abort, a failed part or destroying the writer aborts the upload.
// - openReader: ranged GETs of part_size_bytes, the next one fetched while the
//   caller consumes the current one; later ranges carry If-Match so an object
//   replaced mid-read fails instead of mixing two versions.
// - removePrefix: ListObjectsV2 pages + DeleteObjects batches, then aborts multipart
//   uploads left under the prefix (writers killed before they could abort).
// - Retries: timeouts, connection failures, 5xx, 429, SlowDown and RequestTimeout
//   are retried with exponential backoff and jitter up to max_attempts; other 4xx
//   never are. Errors name the operation, the key and the store's error code.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "vessel/result.hpp"
#include "vessel/storage.hpp"

namespace vessel::plugins {

struct S3Options {
  std::string endpoint;  ///< "https://<account>.r2.cloudflarestorage.com"; http(s)://host[:port]
  std::string region = "auto";
  std::string bucket;
  std::string access_key_id;
  std::string secret_access_key;
  bool path_style = false;      ///< endpoint/bucket/key instead of bucket.endpoint/key
  std::string public_base_url;  ///< empty: objects are private
  std::chrono::milliseconds request_timeout{30'000};
  int max_attempts = 5;  ///< total tries per request, first one included
  std::chrono::milliseconds retry_base_delay{100};
  std::chrono::milliseconds retry_max_delay{5'000};
  std::size_t part_size_bytes = 8 << 20;  ///< S3 wants >= 5 MiB for all but the last part
  std::size_t upload_concurrency = 4;
};

namespace s3 {
class Client;
}

class S3Storage final : public Storage {
 public:
  /// Validates the options (endpoint form, bucket name, credentials, sizes); makes
  /// no request. Errors are kConfig and name the storage.s3 key.
  static Result<std::unique_ptr<S3Storage>> open(S3Options options) noexcept;

  ~S3Storage() override;
  S3Storage(const S3Storage&) = delete;
  S3Storage& operator=(const S3Storage&) = delete;

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
  /// Page tokens are the store's continuation tokens (opaque).
  Result<ListPage> list(std::string_view prefix, std::string_view page_token,
                        std::size_t max_keys) noexcept override;
  Result<std::uint64_t> removePrefix(std::string_view prefix) noexcept override;
  std::optional<std::string> localPath(std::string_view key) const noexcept override;

  /// PUT bound to Content-Type and Content-Length (both signed headers).
  Result<std::optional<PresignedRequest>> presignPut(std::string_view key,
                                                     std::string_view content_type,
                                                     std::uint64_t size_bytes,
                                                     std::int64_t ttl_s) noexcept override;
  Result<std::optional<PresignedRequest>> presignGet(std::string_view key,
                                                     std::int64_t ttl_s) noexcept override;
  std::optional<std::string> publicUrl(std::string_view key) const noexcept override;

  /// Multipart uploads in progress under `prefix` (ListMultipartUploads), as
  /// (key, upload id); for tests and operators checking for orphans.
  Result<std::vector<std::pair<std::string, std::string>>> listMultipartUploads(
      std::string_view prefix) noexcept;

 private:
  explicit S3Storage(std::shared_ptr<s3::Client> client) noexcept;
  std::shared_ptr<s3::Client> client_;  ///< shared with writers and readers
};

Result<std::unique_ptr<Storage>> makeS3Storage(S3Options options) noexcept;

}  // namespace vessel::plugins
