// AWS Signature Version 4, our own implementation over OpenSSL (HMAC-SHA256,
// SHA-256): canonical requests, strings to sign, signing keys, Authorization
// headers and presigned (query-string) URLs. Kept free of I/O so the unit tests
// can check every step against AWS's published examples.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace vessel::plugins::s3 {

using Pairs = std::vector<std::pair<std::string, std::string>>;

inline constexpr std::string_view kUnsignedPayload = "UNSIGNED-PAYLOAD";
inline constexpr std::string_view kAlgorithm = "AWS4-HMAC-SHA256";
/// SigV4 allows presigned URLs to live at most seven days.
inline constexpr std::int64_t kMaxPresignTtlS = 7 * 24 * 3600;

// --- primitives --------------------------------------------------------------

/// Lower-case hex of raw bytes.
std::string hexEncode(std::string_view raw);
/// Raw SHA-256 digest / its lower-case hex.
std::string sha256(std::string_view data);
std::string sha256Hex(std::string_view data);
/// Raw HMAC-SHA256(key, data).
std::string hmacSha256(std::string_view key, std::string_view data);
/// Base64 of the raw MD5 digest (the Content-MD5 header DeleteObjects wants).
std::string md5Base64(std::string_view data);

/// SigV4's URI encoding: every byte but A-Z a-z 0-9 '-' '.' '_' '~' becomes %XX
/// (upper-case hex); '/' is kept when `keep_slash` (object key paths) and encoded
/// otherwise (query names and values). UTF-8 is encoded byte by byte.
std::string uriEncode(std::string_view text, bool keep_slash);

/// "20130524T000000Z" for a UTC time.
std::string amzDate(std::chrono::system_clock::time_point when);

// --- the signing steps -------------------------------------------------------

/// What gets signed. `canonical_uri` is the already-encoded path ("/bucket/a%20b");
/// `query` holds decoded names and values; `headers` are the headers to sign
/// (any case; values are trimmed and inner runs of spaces collapsed).
struct CanonicalInput {
  std::string method;
  std::string canonical_uri;
  Pairs query;
  Pairs headers;
  std::string payload_hash;  ///< hex SHA-256 of the body, or UNSIGNED-PAYLOAD
};

/// Query pairs encoded and sorted by name, then value: "a=1&b=%2F".
std::string canonicalQuery(const Pairs& query);
/// "host;range;x-amz-date": lower-case names, sorted, deduplicated.
std::string signedHeaderNames(const Pairs& headers);
std::string canonicalRequest(const CanonicalInput& input);

/// "<yyyymmdd>/<region>/<service>/aws4_request"
std::string credentialScope(std::string_view date, std::string_view region,
                            std::string_view service);
std::string stringToSign(std::string_view amz_date, std::string_view scope,
                         std::string_view canonical_request);
/// The derived key: HMAC chain over "AWS4"+secret, date, region, service, "aws4_request".
std::string signingKey(std::string_view secret, std::string_view date, std::string_view region,
                       std::string_view service);
/// Lower-case hex HMAC-SHA256(signing key, string to sign).
std::string signature(std::string_view signing_key, std::string_view string_to_sign);

// --- whole requests ----------------------------------------------------------

class Signer {
 public:
  Signer(std::string access_key_id, std::string secret_access_key, std::string region,
         std::string service = "s3");

  /// Signs a request for the Authorization header. `input.headers` must already
  /// hold host, x-amz-date (= amz_date) and x-amz-content-sha256 (= payload hash);
  /// returns the Authorization header value.
  std::string authorization(const CanonicalInput& input, std::string_view amz_date) const;

  /// A presigned URL's query string (encoded, X-Amz-Signature last) for `input`
  /// (whose payload hash is ignored: presigned URLs sign UNSIGNED-PAYLOAD).
  /// `input.query` may carry extra parameters; the X-Amz-* ones are added here.
  std::string presignQuery(CanonicalInput input, std::string_view amz_date,
                           std::int64_t expires_s) const;

  const std::string& region() const noexcept { return region_; }
  const std::string& accessKeyId() const noexcept { return access_key_id_; }

 private:
  std::string access_key_id_;
  std::string secret_access_key_;
  std::string region_;
  std::string service_;
};

}  // namespace vessel::plugins::s3
