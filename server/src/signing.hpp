// Signed URLs and opaque cursors: HMAC-SHA256 over a canonical string, keys
// and values in base64url. Parsers take untrusted input and never throw.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace vessel::server {

std::string base64UrlEncode(std::string_view bytes);
/// nullopt for characters outside the base64url alphabet or a bad length.
std::optional<std::string> base64UrlDecode(std::string_view text);

/// Raw 32-byte HMAC-SHA256.
std::string hmacSha256(std::string_view key, std::string_view message);

/// The signature of an upload PUT URL, bound to the upload id, its declared
/// size and the expiry (unix seconds).
std::string uploadSignature(std::string_view key, std::string_view upload_id, std::uint64_t size,
                            std::int64_t expires_unix);

enum class SignatureCheck { kValid, kBad, kExpired };
SignatureCheck checkUploadSignature(std::string_view key, std::string_view upload_id,
                                    std::uint64_t size, std::string_view expires_text,
                                    std::string_view signature, std::int64_t now_unix);

/// A stream token ("<expires>.<signature>") granting GET of one upload's HLS
/// files until `expires_unix`, for players that cannot send headers.
std::string streamToken(std::string_view key, std::string_view upload_id,
                        std::int64_t expires_unix);
SignatureCheck checkStreamToken(std::string_view key, std::string_view upload_id,
                                std::string_view token, std::int64_t now_unix);

/// Strict decimal parse of an unsigned integer (no sign, no spaces, no overflow).
std::optional<std::uint64_t> parseUnsigned(std::string_view text);

/// Library keyset cursor: (sort_key, id) ↔ opaque text.
std::string encodeCursor(std::string_view sort_key, std::string_view id);
std::optional<std::pair<std::string, std::string>> decodeCursor(std::string_view cursor);

/// Whether the first bytes of a file look like an audio container or stream
/// we decode (MPEG audio/ID3, RIFF WAVE, FLAC, Ogg, MP4/M4A, ADTS AAC, AIFF,
/// WebM/Matroska). Returns the detected format name, or nullopt.
std::optional<std::string> sniffAudio(std::string_view head);

/// One byte range of a Range header, inclusive.
struct ByteRange {
  std::uint64_t first = 0, last = 0;
};
/// Parses "bytes=a-b" / "bytes=a-" / "bytes=-n" against an object of `size`
/// bytes. nullopt: ignore the header (malformed or several ranges: RFC 9110
/// lets a server send the whole object); `unsatisfiable` when it starts past
/// the end (416).
std::optional<ByteRange> parseRange(std::string_view header, std::uint64_t size,
                                    bool& unsatisfiable);

}  // namespace vessel::server
