// Signed URLs, cursors and the audio sniffer. See signing.hpp.
#include "signing.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <array>
#include <charconv>

namespace vessel::server {

namespace {
constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

int decodeChar(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '-') return 62;
  if (c == '_') return 63;
  return -1;
}
}  // namespace

std::string base64UrlEncode(std::string_view bytes) {
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  std::size_t i = 0;
  for (; i + 3 <= bytes.size(); i += 3) {
    const auto v = (static_cast<unsigned char>(bytes[i]) << 16) |
                   (static_cast<unsigned char>(bytes[i + 1]) << 8) |
                   static_cast<unsigned char>(bytes[i + 2]);
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += kAlphabet[(v >> 6) & 63];
    out += kAlphabet[v & 63];
  }
  const std::size_t rest = bytes.size() - i;
  if (rest == 1) {
    const auto v = static_cast<unsigned char>(bytes[i]) << 16;
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
  } else if (rest == 2) {
    const auto v = (static_cast<unsigned char>(bytes[i]) << 16) |
                   (static_cast<unsigned char>(bytes[i + 1]) << 8);
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += kAlphabet[(v >> 6) & 63];
  }
  return out;
}

std::optional<std::string> base64UrlDecode(std::string_view text) {
  if (text.size() % 4 == 1) return std::nullopt;
  std::string out;
  out.reserve(text.size() * 3 / 4);
  unsigned buffer = 0;
  int bits = 0;
  for (char c : text) {
    const int v = decodeChar(c);
    if (v < 0) return std::nullopt;
    buffer = (buffer << 6) | static_cast<unsigned>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((buffer >> bits) & 0xff);
    }
  }
  // Leftover bits must be zero (canonical encoding only).
  if (bits > 0 && (buffer & ((1u << bits) - 1)) != 0) return std::nullopt;
  return out;
}

std::string hmacSha256(std::string_view key, std::string_view message) {
  std::array<unsigned char, EVP_MAX_MD_SIZE> md{};
  unsigned int len = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(message.data()), message.size(), md.data(), &len);
  return std::string(reinterpret_cast<const char*>(md.data()), len);
}

std::string uploadSignature(std::string_view key, std::string_view upload_id, std::uint64_t size,
                            std::int64_t expires_unix) {
  std::string canonical = "vessel-upload-v1\nPUT\n";
  canonical.append(upload_id);
  canonical += "\n" + std::to_string(size) + "\n" + std::to_string(expires_unix);
  return base64UrlEncode(hmacSha256(key, canonical));
}

std::optional<std::uint64_t> parseUnsigned(std::string_view text) {
  if (text.empty() || text.size() > 20) return std::nullopt;
  std::uint64_t v = 0;
  const auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc{} || ptr != text.data() + text.size()) return std::nullopt;
  return v;
}

SignatureCheck checkUploadSignature(std::string_view key, std::string_view upload_id,
                                    std::uint64_t size, std::string_view expires_text,
                                    std::string_view signature, std::int64_t now_unix) {
  const auto expires = parseUnsigned(expires_text);
  if (!expires || *expires > static_cast<std::uint64_t>(INT64_MAX)) return SignatureCheck::kBad;
  const std::string expected =
      uploadSignature(key, upload_id, size, static_cast<std::int64_t>(*expires));
  if (signature.size() != expected.size() ||
      CRYPTO_memcmp(signature.data(), expected.data(), expected.size()) != 0) {
    return SignatureCheck::kBad;
  }
  // Checked after the MAC so that a forged expiry is "bad", not "expired".
  if (static_cast<std::int64_t>(*expires) < now_unix) return SignatureCheck::kExpired;
  return SignatureCheck::kValid;
}

std::string streamToken(std::string_view key, std::string_view upload_id,
                        std::int64_t expires_unix) {
  std::string canonical = "vessel-stream-v1\nGET\n";
  canonical.append(upload_id);
  canonical += "\n" + std::to_string(expires_unix);
  return std::to_string(expires_unix) + "." + base64UrlEncode(hmacSha256(key, canonical));
}

SignatureCheck checkStreamToken(std::string_view key, std::string_view upload_id,
                                std::string_view token, std::int64_t now_unix) {
  const auto dot = token.find('.');
  if (dot == std::string_view::npos || token.size() > 128) return SignatureCheck::kBad;
  const auto expires = parseUnsigned(token.substr(0, dot));
  if (!expires || *expires > static_cast<std::uint64_t>(INT64_MAX)) return SignatureCheck::kBad;
  const std::string expected = streamToken(key, upload_id, static_cast<std::int64_t>(*expires));
  if (token.size() != expected.size() ||
      CRYPTO_memcmp(token.data(), expected.data(), expected.size()) != 0) {
    return SignatureCheck::kBad;
  }
  if (static_cast<std::int64_t>(*expires) < now_unix) return SignatureCheck::kExpired;
  return SignatureCheck::kValid;
}

std::string encodeCursor(std::string_view sort_key, std::string_view id) {
  std::string raw(sort_key);
  raw += '|';
  raw.append(id);
  return base64UrlEncode(raw);
}

std::optional<std::pair<std::string, std::string>> decodeCursor(std::string_view cursor) {
  if (cursor.empty() || cursor.size() > 200) return std::nullopt;
  auto raw = base64UrlDecode(cursor);
  if (!raw) return std::nullopt;
  const auto bar = raw->rfind('|');
  if (bar == std::string::npos || bar == 0 || bar + 1 >= raw->size()) return std::nullopt;
  for (char c : *raw) {
    if (static_cast<unsigned char>(c) < 0x20) return std::nullopt;
  }
  return std::make_pair(raw->substr(0, bar), raw->substr(bar + 1));
}

std::optional<std::string> sniffAudio(std::string_view h) {
  const auto at = [&](std::size_t off, std::string_view magic) {
    return h.size() >= off + magic.size() && h.substr(off, magic.size()) == magic;
  };
  const auto byte = [&](std::size_t i) { return static_cast<unsigned char>(h[i]); };
  if (at(0, "ID3")) return "mp3";
  if (at(0, "RIFF") && (at(8, "WAVE"))) return "wav";
  if (at(0, "RF64") && at(8, "WAVE")) return "wav";
  if (at(0, "fLaC")) return "flac";
  if (at(0, "OggS")) return "ogg";
  if (at(0, "FORM") && (at(8, "AIFF") || at(8, "AIFC"))) return "aiff";
  if (at(4, "ftyp")) return "mp4";
  if (at(0, "\x1a\x45\xdf\xa3")) return "matroska";
  if (h.size() >= 4 && byte(0) == 0xff) {
    const unsigned char b1 = byte(1);
    // ADTS: 12-bit sync, layer bits 00.
    if ((b1 & 0xf6) == 0xf0) return "aac";
    // MPEG audio frame: 11-bit sync, a valid version, layer, bitrate and rate.
    const unsigned version = (b1 >> 3) & 3, layer = (b1 >> 1) & 3;
    const unsigned bitrate = (byte(2) >> 4) & 15, rate = (byte(2) >> 2) & 3;
    if ((b1 & 0xe0) == 0xe0 && version != 1 && layer != 0 && bitrate != 15 && bitrate != 0 &&
        rate != 3) {
      return "mp3";
    }
  }
  return std::nullopt;
}

// One "bytes=a-b" / "bytes=a-" / "bytes=-n" range. nullopt: ignore the header
// (malformed or multi-range: RFC 9110 lets a server send the whole thing);
// `unsatisfiable` when it starts past the end.
std::optional<ByteRange> parseRange(std::string_view h, std::uint64_t size, bool& unsatisfiable) {
  unsatisfiable = false;
  constexpr std::string_view kUnit = "bytes=";
  if (!h.starts_with(kUnit)) return std::nullopt;
  h.remove_prefix(kUnit.size());
  if (h.find(',') != std::string_view::npos) return std::nullopt;
  const auto dash = h.find('-');
  if (dash == std::string_view::npos) return std::nullopt;
  const std::string_view a = h.substr(0, dash), b = h.substr(dash + 1);
  auto num = [](std::string_view s) -> std::optional<std::uint64_t> {
    if (s.empty() || s.size() > 19) return std::nullopt;
    std::uint64_t v = 0;
    for (char c : s) {
      if (c < '0' || c > '9') return std::nullopt;
      v = v * 10 + static_cast<std::uint64_t>(c - '0');
    }
    return v;
  };
  if (a.empty()) {  // suffix range: the last n bytes
    auto n = num(b);
    if (!n) return std::nullopt;
    if (*n == 0 || size == 0) {
      unsatisfiable = true;
      return std::nullopt;
    }
    return ByteRange{size - std::min(*n, size), size - 1};
  }
  auto first = num(a);
  if (!first) return std::nullopt;
  std::optional<std::uint64_t> last = b.empty() ? std::optional<std::uint64_t>(size - 1) : num(b);
  if (!last || *last < *first) {
    // "bytes=N-" past the end is unsatisfiable, not malformed.
    if (last && b.empty() && *first >= size) unsatisfiable = true;
    return std::nullopt;
  }
  if (*first >= size) {
    unsatisfiable = true;
    return std::nullopt;
  }
  return ByteRange{*first, std::min(*last, size - 1)};
}

}  // namespace vessel::server
