// The remote-worker protocol (workers without database credentials): the JSON
// bodies of POST /internal/v1/jobs/claim, …/{id}/progress, …/{id}/complete and
// …/{id}/fail, and the per-job secret. Shared by the server and `vessel worker
// --server`. Parsers are strict: unknown fields, wrong types or out-of-range
// values are refused (the server answers 400 and changes nothing).
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

#include "vessel/jobs.hpp"
#include "vessel/result.hpp"
#include "vessel/storage.hpp"

namespace vessel::protocol {

inline constexpr std::string_view kWorkerSecretHeader = "x-worker-secret";
inline constexpr std::string_view kJobSecretHeader = "x-job-secret";

/// A fresh one-time job secret: 32 random bytes (OpenSSL RAND_bytes), hex.
Result<std::string> newJobSecret() noexcept;
/// Lower-case hex SHA-256 of a secret: what uploads.job_secret_hash stores.
std::string sha256Hex(std::string_view data);
/// Constant-time comparison (CRYPTO_memcmp) of two secrets or hashes.
bool secretsEqual(std::string_view a, std::string_view b) noexcept;

/// Claim response: the job and the plain job secret (sent once, never stored).
struct ClaimResponse {
  ClaimedJob job;
  std::string job_secret;
};
nlohmann::json toJson(const ClaimResponse& r);
Result<ClaimResponse> parseClaimResponse(std::string_view body) noexcept;

struct ProgressRequest {
  std::int32_t attempt = 0;
  double progress = 0;  ///< 0..1
};
nlohmann::json toJson(const ProgressRequest& r);
Result<ProgressRequest> parseProgressRequest(std::string_view body) noexcept;

struct CompleteRequest {
  std::int32_t attempt = 0;
  JobOutcome outcome;
};
nlohmann::json toJson(const CompleteRequest& r);
Result<CompleteRequest> parseCompleteRequest(std::string_view body) noexcept;

struct FailRequest {
  std::int32_t attempt = 0;
  Error error;  ///< code by name (errorCodeName), decides retry vs permanent
};
nlohmann::json toJson(const FailRequest& r);
Result<FailRequest> parseFailRequest(std::string_view body) noexcept;

/// Gives the attempt back untouched (the worker is shutting down): the job is
/// queued again at once and the attempt is not counted.
struct ReleaseRequest {
  std::int32_t attempt = 0;
};
nlohmann::json toJson(const ReleaseRequest& r);
Result<ReleaseRequest> parseReleaseRequest(std::string_view body) noexcept;

}  // namespace vessel::protocol
