// Password hashing for the local auth plugin: scrypt (OpenSSL 3) in a
// self-describing text form, and the strict base64 it is written in.
//
// Encoding: "scrypt$<N>$<r>$<p>$<salt>$<hash>", N, r and p in decimal without
// leading zeros, salt and hash in standard base64 with padding. The parameters
// travel with each hash, so raising them in the config leaves existing
// passwords verifiable.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "vessel/result.hpp"

namespace vessel::plugins {

struct ScryptParams {
  std::uint64_t n = std::uint64_t{1} << 17;  ///< CPU/memory cost; a power of two
  std::uint64_t r = 8;                       ///< block size
  std::uint64_t p = 1;                       ///< parallelism
};

/// Bounds on what we compute, for config and for stored hashes alike (a
/// tampered row must not make a login allocate gigabytes): N a power of two in
/// 2..2^20, r in 1..32, p in 1..16, 128·r·N ≤ 1 GiB. kInvalidArgument naming
/// the offending value otherwise.
Result<void> checkScryptParams(const ScryptParams& params) noexcept;

struct PasswordHash {
  ScryptParams params;
  std::string salt;  ///< raw bytes
  std::string hash;  ///< raw bytes
};

/// Hashes with a fresh 16-byte salt (RAND_bytes) into a 32-byte key, encoded.
Result<std::string> hashPassword(std::string_view password, const ScryptParams& params) noexcept;

/// The encoding of `h` (no checks; see parsePasswordHash for the inverse).
std::string encodePasswordHash(const PasswordHash& h);

/// Parses an encoding strictly: exactly six fields, canonical numbers and
/// base64, parameters within checkScryptParams, salt 8..64 and hash 16..64
/// bytes. kInvalidArgument for anything else.
Result<PasswordHash> parsePasswordHash(std::string_view encoded) noexcept;

/// Recomputes scrypt over `password` with the encoding's parameters and salt
/// and compares in constant time (CRYPTO_memcmp). kInvalidArgument when the
/// encoding does not parse; false for a wrong password.
Result<bool> verifyPassword(std::string_view password, std::string_view encoded) noexcept;

/// Base64 of `bytes`: standard alphabet with '=' padding, or (url) the
/// URL-safe alphabet without padding.
std::string base64Encode(std::string_view bytes, bool url = false);
/// The inverse of base64Encode with the same `url`; nullopt unless `text` is
/// exactly what base64Encode would produce for some input.
std::optional<std::string> base64Decode(std::string_view text, bool url = false);

}  // namespace vessel::plugins
