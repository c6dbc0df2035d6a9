// Fuzz target: the signed upload URL (server/src/signing.hpp): the `expires`
// and `sig` query values and the id a client puts in
// PUT /api/v1/uploads/{id}/content?expires=…&sig=…, checked by
// checkUploadSignature with parseUnsigned and base64url underneath.
// Properties: no crash or UB; only the signature the server made for exactly
// this (id, size, expiry) passes, and it is "expired" exactly when the expiry
// is in the past; parseUnsigned agrees with a reference; base64url decoding is
// canonical (decode → encode gives the input back).
#include <fuzzer/FuzzedDataProvider.h>

#include <cstdint>
#include <limits>
#include <string>

#include "fuzz_check.hpp"
#include "signing.hpp"

namespace {

using namespace vessel::server;

std::optional<std::uint64_t> referenceUnsigned(std::string_view s) {
  if (s.empty() || s.size() > 20) return std::nullopt;
  unsigned __int128 v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
    v = v * 10 + static_cast<unsigned>(c - '0');
  }
  if (v > std::numeric_limits<std::uint64_t>::max()) return std::nullopt;
  return static_cast<std::uint64_t>(v);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  FuzzedDataProvider in(data, size);
  static const std::string kKey = "fuzz-secret-key-0123456789abcdef";
  const std::string id = in.ConsumeRandomLengthString(48);
  const auto upload_size = in.ConsumeIntegral<std::uint64_t>();
  const auto now = in.ConsumeIntegral<std::int64_t>();
  const std::string expires = in.ConsumeRandomLengthString(32);
  const std::string sig = in.ConsumeRemainingBytesAsString();

  const auto parsed = parseUnsigned(expires);
  FUZZ_CHECK(parsed == referenceUnsigned(expires), "parseUnsigned agrees with the reference");

  const SignatureCheck got = checkUploadSignature(kKey, id, upload_size, expires, sig, now);
  const bool in_range = parsed && *parsed <= static_cast<std::uint64_t>(INT64_MAX);
  const std::string genuine =
      in_range ? uploadSignature(kKey, id, upload_size, static_cast<std::int64_t>(*parsed)) : "";
  if (got != SignatureCheck::kBad) {
    FUZZ_CHECK(in_range && sig == genuine, "only the genuine signature passes");
    FUZZ_CHECK((got == SignatureCheck::kExpired) == (static_cast<std::int64_t>(*parsed) < now),
               "expired exactly when the expiry is past");
  }
  if (in_range) {
    const SignatureCheck real = checkUploadSignature(kKey, id, upload_size, expires, genuine, now);
    FUZZ_CHECK(real != SignatureCheck::kBad, "the genuine signature is accepted");
    // Another key, size or id must not verify.
    FUZZ_CHECK(checkUploadSignature("other-key", id, upload_size, expires, genuine, now) ==
                   SignatureCheck::kBad,
               "bound to the key");
    FUZZ_CHECK(checkUploadSignature(kKey, id, upload_size + 1, expires, genuine, now) ==
                   SignatureCheck::kBad,
               "bound to the size");
    FUZZ_CHECK(checkUploadSignature(kKey, id + "x", upload_size, expires, genuine, now) ==
                   SignatureCheck::kBad,
               "bound to the id");
    auto raw = base64UrlDecode(genuine);
    FUZZ_CHECK(raw && raw->size() == 32, "a signature is 32 bytes of base64url");
  }

  if (auto raw = base64UrlDecode(sig)) {
    FUZZ_CHECK(base64UrlEncode(*raw) == sig, "base64url decoding is canonical");
  }
  auto back = base64UrlDecode(base64UrlEncode(sig));
  FUZZ_CHECK(back && *back == sig, "base64url round trip");
  return 0;
}
