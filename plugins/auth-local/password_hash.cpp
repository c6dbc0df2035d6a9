// scrypt password hashes through OpenSSL 3's EVP_PBE_scrypt, and base64.
#include "password_hash.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <array>
#include <charconv>
#include <exception>
#include <vector>

namespace vessel::plugins {

namespace {

constexpr std::string_view kScheme = "scrypt";
constexpr std::size_t kSaltBytes = 16;
constexpr std::size_t kKeyBytes = 32;
constexpr std::size_t kMinSaltBytes = 8, kMaxSaltBytes = 64;
constexpr std::size_t kMinKeyBytes = 16, kMaxKeyBytes = 64;
constexpr std::uint64_t kMaxN = std::uint64_t{1} << 20;
constexpr std::uint64_t kMaxR = 32;
constexpr std::uint64_t kMaxP = 16;
constexpr std::uint64_t kMaxMemoryBytes = std::uint64_t{1} << 30;

constexpr std::string_view kStdAlphabet =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
constexpr std::string_view kUrlAlphabet =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

Error invalid(std::string message) {
  return makeError(ErrorCode::kInvalidArgument, std::move(message));
}

// A decimal number exactly as std::to_string writes it (no sign, no leading zero).
std::optional<std::uint64_t> parseCanonical(std::string_view s) {
  if (s.empty() || s.size() > 20 || (s.size() > 1 && s.front() == '0')) return std::nullopt;
  std::uint64_t v = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc{} || end != s.data() + s.size()) return std::nullopt;
  return v;
}

// scrypt into `out`; the memory cap admits exactly what these parameters need.
Result<void> scrypt(std::string_view password, std::string_view salt, const ScryptParams& params,
                    unsigned char* out, std::size_t out_len) {
  const std::uint64_t maxmem = 128 * params.r * (params.n + 2) + 128 * params.r * params.p + 65536;
  if (EVP_PBE_scrypt(password.data(), password.size(),
                     reinterpret_cast<const unsigned char*>(salt.data()), salt.size(), params.n,
                     params.r, params.p, maxmem, out, out_len) != 1) {
    return makeError(ErrorCode::kInternal, "scrypt failed (N=" + std::to_string(params.n) +
                                               ", r=" + std::to_string(params.r) +
                                               ", p=" + std::to_string(params.p) + ")");
  }
  return Result<void>();
}

}  // namespace

Result<void> checkScryptParams(const ScryptParams& params) noexcept {
  try {
    if (params.n < 2 || params.n > kMaxN || (params.n & (params.n - 1)) != 0) {
      return invalid("scrypt N must be a power of two from 2 to " + std::to_string(kMaxN) +
                     ", got " + std::to_string(params.n));
    }
    if (params.r < 1 || params.r > kMaxR) {
      return invalid("scrypt r must be 1.." + std::to_string(kMaxR) + ", got " +
                     std::to_string(params.r));
    }
    if (params.p < 1 || params.p > kMaxP) {
      return invalid("scrypt p must be 1.." + std::to_string(kMaxP) + ", got " +
                     std::to_string(params.p));
    }
    if (128 * params.r * params.n > kMaxMemoryBytes) {
      return invalid("scrypt N=" + std::to_string(params.n) + ", r=" + std::to_string(params.r) +
                     " needs " + std::to_string(128 * params.r * params.n >> 20) +
                     " MiB, more than the " + std::to_string(kMaxMemoryBytes >> 20) + " MiB limit");
    }
    return Result<void>();
  } catch (const std::exception& e) {
    return makeError(ErrorCode::kInternal, e.what());
  }
}

std::string base64Encode(std::string_view bytes, bool url) {
  const std::string_view alphabet = url ? kUrlAlphabet : kStdAlphabet;
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  std::size_t i = 0;
  for (; i + 2 < bytes.size(); i += 3) {
    const std::uint32_t v = static_cast<std::uint8_t>(bytes[i]) << 16 |
                            static_cast<std::uint8_t>(bytes[i + 1]) << 8 |
                            static_cast<std::uint8_t>(bytes[i + 2]);
    out += alphabet[v >> 18 & 63];
    out += alphabet[v >> 12 & 63];
    out += alphabet[v >> 6 & 63];
    out += alphabet[v & 63];
  }
  const std::size_t rest = bytes.size() - i;
  if (rest > 0) {
    std::uint32_t v = static_cast<std::uint8_t>(bytes[i]) << 16;
    if (rest == 2) v |= static_cast<std::uint8_t>(bytes[i + 1]) << 8;
    out += alphabet[v >> 18 & 63];
    out += alphabet[v >> 12 & 63];
    if (rest == 2) out += alphabet[v >> 6 & 63];
    if (!url) out.append(3 - rest, '=');
  }
  return out;
}

std::optional<std::string> base64Decode(std::string_view text, bool url) {
  const std::string_view alphabet = url ? kUrlAlphabet : kStdAlphabet;
  if (!url) {
    if (text.size() % 4 != 0) return std::nullopt;
    std::size_t pad = 0;
    while (pad < 2 && pad < text.size() && text[text.size() - 1 - pad] == '=') ++pad;
    text.remove_suffix(pad);
  }
  if (text.size() % 4 == 1) return std::nullopt;
  std::string out;
  out.reserve(text.size() * 3 / 4);
  std::uint32_t acc = 0;
  int bits = 0;
  for (const char c : text) {
    const std::size_t v = alphabet.find(c);
    if (v == std::string_view::npos) return std::nullopt;
    acc = (acc << 6) | static_cast<std::uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>(acc >> bits & 0xFF);
    }
  }
  // Leftover bits must be zero, or two texts would decode to the same bytes.
  if ((acc & ((1u << bits) - 1)) != 0) return std::nullopt;
  return out;
}

std::string encodePasswordHash(const PasswordHash& h) {
  return std::string(kScheme) + "$" + std::to_string(h.params.n) + "$" +
         std::to_string(h.params.r) + "$" + std::to_string(h.params.p) + "$" +
         base64Encode(h.salt) + "$" + base64Encode(h.hash);
}

Result<PasswordHash> parsePasswordHash(std::string_view encoded) noexcept {
  try {
    const Error garbage = invalid("not a scrypt password hash");
    std::vector<std::string_view> fields;
    std::size_t start = 0;
    while (true) {
      const std::size_t dollar = encoded.find('$', start);
      fields.push_back(encoded.substr(start, dollar - start));
      if (dollar == std::string_view::npos || fields.size() > 6) break;
      start = dollar + 1;
    }
    if (fields.size() != 6 || fields[0] != kScheme) return garbage;
    const auto n = parseCanonical(fields[1]);
    const auto r = parseCanonical(fields[2]);
    const auto p = parseCanonical(fields[3]);
    if (!n || !r || !p) return garbage;
    PasswordHash h;
    h.params = ScryptParams{*n, *r, *p};
    if (auto checked = checkScryptParams(h.params); !checked) return std::move(checked).error();
    auto salt = base64Decode(fields[4]);
    auto hash = base64Decode(fields[5]);
    if (!salt || salt->size() < kMinSaltBytes || salt->size() > kMaxSaltBytes) return garbage;
    if (!hash || hash->size() < kMinKeyBytes || hash->size() > kMaxKeyBytes) return garbage;
    h.salt = std::move(*salt);
    h.hash = std::move(*hash);
    return h;
  } catch (const std::exception& e) {
    return makeError(ErrorCode::kInternal, e.what());
  }
}

Result<std::string> hashPassword(std::string_view password, const ScryptParams& params) noexcept {
  try {
    if (auto checked = checkScryptParams(params); !checked) return std::move(checked).error();
    std::array<unsigned char, kSaltBytes> salt{};
    if (RAND_bytes(salt.data(), static_cast<int>(salt.size())) != 1) {
      return makeError(ErrorCode::kInternal, "RAND_bytes failed: no salt");
    }
    PasswordHash h;
    h.params = params;
    h.salt.assign(reinterpret_cast<const char*>(salt.data()), salt.size());
    std::array<unsigned char, kKeyBytes> key{};
    Result<void> derived = scrypt(password, h.salt, params, key.data(), key.size());
    if (!derived) return std::move(derived).error();
    h.hash.assign(reinterpret_cast<const char*>(key.data()), key.size());
    OPENSSL_cleanse(key.data(), key.size());
    return encodePasswordHash(h);
  } catch (const std::exception& e) {
    return makeError(ErrorCode::kInternal, e.what());
  }
}

Result<bool> verifyPassword(std::string_view password, std::string_view encoded) noexcept {
  try {
    Result<PasswordHash> parsed = parsePasswordHash(encoded);
    if (!parsed) return std::move(parsed).error();
    const PasswordHash& h = parsed.value();
    std::array<unsigned char, kMaxKeyBytes> key{};
    Result<void> derived = scrypt(password, h.salt, h.params, key.data(), h.hash.size());
    if (!derived) return std::move(derived).error();
    const bool same = CRYPTO_memcmp(key.data(), h.hash.data(), h.hash.size()) == 0;
    OPENSSL_cleanse(key.data(), key.size());
    return same;
  } catch (const std::exception& e) {
    return makeError(ErrorCode::kInternal, e.what());
  }
}

}  // namespace vessel::plugins
