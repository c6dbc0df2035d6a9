// storage/s3: stores objects in an S3-compatible bucket (Cloudflare R2, AWS S3,
// MinIO, ...). Requests go over libcurl with kept-alive pooled connections (TLS
// always verified) and are signed with our own AWS Signature V4 code, which also
// makes presigned PUT/GET URLs so browsers upload originals straight to the bucket
// and players fetch segments without Vessel's credentials. Small objects are one
// PUT; larger ones (and writers past one part) are multipart uploads whose parts go
// up in parallel and are aborted on failure. Reads are ranged GETs. Transient
// failures (timeouts, 5xx, 429, SlowDown) are retried with exponential backoff and
// jitter; other 4xx never are. See docs/storage.md.
//
// Config keys (section [storage.s3]):
//   endpoint                string  ""      https://<account>.r2.cloudflarestorage.com,
//                                           https://s3.<region>.amazonaws.com, ...
//   region                  string  "auto"  "auto" for R2; the bucket's region on AWS
//   bucket                  string  ""
//   access_key_id           string  ""
//   secret_access_key       string  ""      secret: never logged (or use the _file key,
//                                           or VESSEL_STORAGE_S3_SECRET_ACCESS_KEY)
//   secret_access_key_file  string  ""      file holding the secret (trailing newline ok)
//   path_style              bool    false   endpoint/bucket/key instead of bucket.endpoint/key
//   public_base_url         string  ""      public bucket/CDN domain for playback URLs
//   request_timeout_ms      int     30000   one HTTP exchange, connect included
//   max_attempts            int     5       tries per request (the retry budget)
//   retry_base_delay_ms     int     100     first backoff step (doubles per retry)
//   retry_max_delay_ms      int     5000    backoff cap
//   part_size_bytes         int     8 MiB   multipart part and read range size (>= 5 MiB)
//   upload_concurrency      int     4       parts in flight per writer
//
// Example (Cloudflare R2):
//   [storage]
//   plugin = "s3"
//   [storage.s3]
//   endpoint = "https://<account-id>.r2.cloudflarestorage.com"
//   region = "auto"
//   bucket = "vessel-media"
//   access_key_id = "<key id>"
//   secret_access_key_file = "/etc/vessel/r2-secret"
//   public_base_url = "https://media.example.com"   # optional
#include "vessel/plugin.hpp"

#include <cstdint>
#include <exception>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "s3_storage.hpp"
#include "vessel/config.hpp"
#include "vessel/storage.hpp"

namespace {

using vessel::ConfigField;
using vessel::ConfigType;

ConfigField stringField(std::string key, std::string doc, std::string value = "",
                        bool secret = false) {
  return {
      std::move(key), ConfigType::kString, std::move(value), std::move(doc), secret, {}, {}, {}};
}

ConfigField intField(std::string key, std::string doc, std::int64_t value, std::int64_t min,
                     std::int64_t max) {
  return {std::move(key), ConfigType::kInt, value, std::move(doc), false, min, max, {}};
}

std::vector<ConfigField> makeConfigFields() {
  return {
      stringField("endpoint",
                  "S3 endpoint URL, scheme://host[:port] (e.g. "
                  "https://<account>.r2.cloudflarestorage.com)"),
      stringField("region", "Signing region: 'auto' for R2, the bucket's region on AWS", "auto"),
      stringField("bucket", "Bucket name"),
      stringField("access_key_id", "Access key id"),
      stringField("secret_access_key", "Secret access key (or secret_access_key_file)", "", true),
      stringField("secret_access_key_file", "File holding the secret access key"),
      {"path_style",
       ConfigType::kBool,
       false,
       "Address objects as endpoint/bucket/key instead of bucket.endpoint/key",
       false,
       {},
       {},
       {}},
      stringField("public_base_url",
                  "Public base URL of the bucket (R2 public bucket or CDN) for playback; empty: "
                  "private, played through presigned URLs"),
      intField("request_timeout_ms", "Timeout of one HTTP exchange, connect included", 30'000, 100,
               3'600'000),
      intField("max_attempts", "Tries per request, the first included (retry budget)", 5, 1, 20),
      intField("retry_base_delay_ms", "First backoff step; doubles per retry, with jitter", 100, 1,
               60'000),
      intField("retry_max_delay_ms", "Backoff cap", 5'000, 1, 600'000),
      intField("part_size_bytes", "Multipart part size and read range size", 8 << 20, 5 << 20,
               std::int64_t{5} << 30),
      intField("upload_concurrency", "Parts uploaded in parallel per writer", 4, 1, 64),
  };
}

const std::vector<ConfigField>* configFields() noexcept {
  try {
    static const std::vector<ConfigField> fields = makeConfigFields();
    return &fields;
  } catch (...) {
    static const std::vector<ConfigField> empty;
    return &empty;
  }
}

/// The secret from exactly one of secret_access_key / secret_access_key_file.
bool loadSecret(const vessel::Config& config, std::string& secret, std::string& error) {
  const std::string& inline_secret = config.getString("secret_access_key");
  const std::string& file = config.getString("secret_access_key_file");
  if (!inline_secret.empty() && !file.empty()) {
    error = "storage.s3: set secret_access_key or secret_access_key_file, not both";
    return false;
  }
  if (file.empty()) {
    secret = inline_secret;
    return true;
  }
  std::ifstream in(file, std::ios::binary);
  if (!in) {
    error = "storage.s3.secret_access_key_file: cannot read '" + file + "'";
    return false;
  }
  std::ostringstream content;
  content << in.rdbuf();
  secret = content.str();
  while (!secret.empty() && (secret.back() == '\n' || secret.back() == '\r' ||
                             secret.back() == ' ' || secret.back() == '\t')) {
    secret.pop_back();
  }
  if (secret.empty()) {
    error = "storage.s3.secret_access_key_file: '" + file + "' is empty";
    return false;
  }
  return true;
}

void* create(const vessel::Config& config, std::string& error) noexcept {
  try {
    vessel::plugins::S3Options options;
    options.endpoint = config.getString("endpoint");
    options.region = config.getString("region");
    options.bucket = config.getString("bucket");
    options.access_key_id = config.getString("access_key_id");
    if (!loadSecret(config, options.secret_access_key, error)) return nullptr;
    options.path_style = config.getBool("path_style");
    options.public_base_url = config.getString("public_base_url");
    options.request_timeout = std::chrono::milliseconds(config.getInt("request_timeout_ms"));
    options.max_attempts = static_cast<int>(config.getInt("max_attempts"));
    options.retry_base_delay = std::chrono::milliseconds(config.getInt("retry_base_delay_ms"));
    options.retry_max_delay = std::chrono::milliseconds(config.getInt("retry_max_delay_ms"));
    options.part_size_bytes = static_cast<std::size_t>(config.getInt("part_size_bytes"));
    options.upload_concurrency = static_cast<std::size_t>(config.getInt("upload_concurrency"));
    auto storage = vessel::plugins::makeS3Storage(std::move(options));
    if (!storage) {
      error = storage.error().message;
      return nullptr;
    }
    vessel::Storage* object = std::move(storage).value().release();
    return object;
  } catch (const std::exception& e) {
    try {
      error = std::string("s3 storage: create: ") + e.what();
    } catch (...) {
    }
    return nullptr;
  } catch (...) {
    try {
      error = "s3 storage: create: unknown exception";
    } catch (...) {
    }
    return nullptr;
  }
}

void destroy(void* object) noexcept { delete static_cast<vessel::Storage*>(object); }

}  // namespace

VESSEL_PLUGIN(vessel::PluginKind::kStorage, "s3", "0.1.0",
              "Objects in an S3-compatible bucket (R2, AWS S3, ...)", configFields, create, destroy)
