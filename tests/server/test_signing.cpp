// Signed upload URLs, cursors, base64url, the audio sniffer and path-segment
// decoding: the server's parsers of untrusted input.
#include <gtest/gtest.h>

#include <string>

#include "http.hpp"
#include "signing.hpp"

namespace vessel::server {
namespace {

const std::string kKey = "0123456789abcdef0123456789abcdef";
const std::string kId = "6f1c0f5e-8a5b-4c1e-9f59-2d7c1c9f1a01";

TEST(Base64Url, RoundTripsEveryLength) {
  std::string bytes;
  for (int i = 0; i < 70; ++i) {
    bytes.push_back(static_cast<char>(i * 37 + 11));
    const std::string enc = base64UrlEncode(bytes);
    EXPECT_EQ(enc.find_first_of("+/="), std::string::npos) << enc;
    auto dec = base64UrlDecode(enc);
    ASSERT_TRUE(dec.has_value()) << enc;
    EXPECT_EQ(*dec, bytes);
  }
}

TEST(Base64Url, KnownVectorsAndRefusals) {
  EXPECT_EQ(base64UrlEncode("foobar"), "Zm9vYmFy");
  EXPECT_EQ(base64UrlEncode("fo"), "Zm8");
  EXPECT_EQ(base64UrlEncode("\xfb\xff"), "-_8");
  for (const char* bad : {"a", "Zm9v!", "Zm+v", "Zm9=", "Zm9vY"}) {
    EXPECT_FALSE(base64UrlDecode(bad).has_value()) << bad;
  }
  // Non-canonical trailing bits are refused: "fo" has exactly one encoding.
  EXPECT_EQ(base64UrlDecode("Zm8"), "fo");
  EXPECT_FALSE(base64UrlDecode("Zm9").has_value());
  EXPECT_FALSE(base64UrlDecode("Zm-").has_value());
}

TEST(UploadSignature, ValidOnlyForItsIdSizeAndExpiry) {
  const std::int64_t now = 1'800'000'000, expires = now + 60;
  const std::string sig = uploadSignature(kKey, kId, 1234, expires);
  const std::string exp = std::to_string(expires);
  EXPECT_EQ(checkUploadSignature(kKey, kId, 1234, exp, sig, now), SignatureCheck::kValid);
  // Another upload, another size, a moved expiry, another key, a flipped character.
  EXPECT_EQ(checkUploadSignature(kKey, "6f1c0f5e-8a5b-4c1e-9f59-2d7c1c9f1a02", 1234, exp, sig, now),
            SignatureCheck::kBad);
  EXPECT_EQ(checkUploadSignature(kKey, kId, 1235, exp, sig, now), SignatureCheck::kBad);
  EXPECT_EQ(checkUploadSignature(kKey, kId, 1234, std::to_string(expires + 3600), sig, now),
            SignatureCheck::kBad);
  EXPECT_EQ(checkUploadSignature("another key", kId, 1234, exp, sig, now), SignatureCheck::kBad);
  std::string flipped = sig;
  flipped[5] = flipped[5] == 'A' ? 'B' : 'A';
  EXPECT_EQ(checkUploadSignature(kKey, kId, 1234, exp, flipped, now), SignatureCheck::kBad);
  EXPECT_EQ(checkUploadSignature(kKey, kId, 1234, exp, "", now), SignatureCheck::kBad);
  EXPECT_EQ(checkUploadSignature(kKey, kId, 1234, exp, sig.substr(1), now), SignatureCheck::kBad);
  // Garbage expiries are "bad", never parsed leniently.
  for (const char* e : {"", "-1", "+60", " 60", "1e9", "99999999999999999999999", "0x10"}) {
    EXPECT_EQ(checkUploadSignature(kKey, kId, 1234, e, sig, now), SignatureCheck::kBad) << e;
  }
  // Past the expiry: "expired", but only with a genuine signature.
  EXPECT_EQ(checkUploadSignature(kKey, kId, 1234, exp, sig, expires + 1), SignatureCheck::kExpired);
}

TEST(ParseUnsigned, Strict) {
  EXPECT_EQ(parseUnsigned("0"), 0u);
  EXPECT_EQ(parseUnsigned("18446744073709551615"), 18446744073709551615ull);
  for (const char* bad : {"", "-0", "+1", "1 ", " 1", "18446744073709551616", "1.0", "abc"}) {
    EXPECT_FALSE(parseUnsigned(bad).has_value()) << bad;
  }
}

TEST(Cursor, RoundTripAndRefusals) {
  const std::string key = "2026-11-25 20:54:20.756123+00";
  auto c = decodeCursor(encodeCursor(key, kId));
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(c->first, key);
  EXPECT_EQ(c->second, kId);
  for (const char* bad : {"", "!!!!", "Zm9vYmFy" /* foobar: no separator */}) {
    EXPECT_FALSE(decodeCursor(bad).has_value()) << bad;
  }
  EXPECT_FALSE(decodeCursor(base64UrlEncode("|" + kId)).has_value());
  EXPECT_FALSE(decodeCursor(base64UrlEncode(key + "|")).has_value());
  EXPECT_FALSE(decodeCursor(base64UrlEncode(key + "\n|" + kId)).has_value());
  EXPECT_FALSE(decodeCursor(std::string(300, 'A')).has_value());
}

TEST(SniffAudio, KnowsContainersAndRefusesOthers) {
  const auto s = [](std::string head) { return sniffAudio(head).value_or("-"); };
  EXPECT_EQ(s("ID3\x04\x00\x00\x00\x00\x00\x00"), "mp3");
  EXPECT_EQ(s(std::string("\xff\xfb\x90\x64", 4)), "mp3");  // MPEG-1 layer III 128k 44.1k
  EXPECT_EQ(s(std::string("\xff\xf1\x50\x80", 4)), "aac");  // ADTS
  EXPECT_EQ(s(std::string("RIFF\x24\x08\x00\x00WAVEfmt ", 16)), "wav");
  EXPECT_EQ(s("fLaC\x00\x00\x00\x22"), "flac");
  EXPECT_EQ(s("OggS\x00\x02"), "ogg");
  EXPECT_EQ(s(std::string("\x00\x00\x00\x20"
                          "ftypM4A ",
                          12)),
            "mp4");
  EXPECT_EQ(s(std::string("FORM\x00\x00\x10\x00"
                          "AIFF",
                          12)),
            "aiff");
  EXPECT_EQ(s("\x89PNG\r\n\x1a\n"), "-");
  EXPECT_EQ(s("%PDF-1.7"), "-");
  EXPECT_EQ(s("RIFF\x24\x08\x00\x00AVI "), "-");
  EXPECT_EQ(s(std::string("\xff\xd8\xff\xe0", 4)), "-");  // JPEG
  EXPECT_EQ(s(std::string("\xff\xff\xff\xff", 4)), "-");  // bad bitrate index
  EXPECT_EQ(s(""), "-");
  EXPECT_EQ(s("ID"), "-");
}

TEST(Range, SingleRangesAndRefusals) {
  bool unsat = false;
  auto r = parseRange("bytes=0-99", 1000, unsat);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->first, 0u);
  EXPECT_EQ(r->last, 99u);
  r = parseRange("bytes=900-", 1000, unsat);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->first, 900u);
  EXPECT_EQ(r->last, 999u);
  r = parseRange("bytes=-10", 1000, unsat);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->first, 990u);
  r = parseRange("bytes=-5000", 1000, unsat);  // more than there is: the whole object
  ASSERT_TRUE(r);
  EXPECT_EQ(r->first, 0u);
  r = parseRange("bytes=10-5000", 1000, unsat);  // clamped to the end
  ASSERT_TRUE(r);
  EXPECT_EQ(r->last, 999u);
  EXPECT_FALSE(parseRange("bytes=1000-", 1000, unsat));
  EXPECT_TRUE(unsat);
  EXPECT_FALSE(parseRange("bytes=-0", 1000, unsat));
  EXPECT_TRUE(unsat);
  for (const char* ignored : {"bytes=5-1", "bytes=a-b", "items=0-1", "bytes=0-1,5-6",
                              "bytes=", "bytes=-", "bytes=99999999999999999999-", "bytes= 0-1"}) {
    EXPECT_FALSE(parseRange(ignored, 1000, unsat)) << ignored;
    EXPECT_FALSE(unsat) << ignored;
  }
}

TEST(Query, DecodesAndRefusesNulAndBadEscapes) {
  std::map<std::string, std::string, std::less<>> q;
  ASSERT_TRUE(http::parseQuery("q=a+b%20c&limit=5&&empty=&flag&q=last", q));
  EXPECT_EQ(q["q"], "last");
  EXPECT_EQ(q["limit"], "5");
  EXPECT_EQ(q["empty"], "");
  EXPECT_EQ(q["flag"], "");
  for (const char* bad : {"cursor=%00garbage", "limit=1%00x", "a%00=1", "x=%", "x=%4", "x=%zz"}) {
    std::map<std::string, std::string, std::less<>> out;
    EXPECT_FALSE(http::parseQuery(bad, out)) << bad;
  }
}

TEST(DecodeSegment, RefusesEncodedSeparatorsAndNul) {
  EXPECT_EQ(http::decodeSegment("abc"), "abc");
  EXPECT_EQ(http::decodeSegment("a%20b"), "a b");
  EXPECT_EQ(http::decodeSegment("%2e%2e"), "..");  // the router refuses ".." after decoding
  for (const char* bad : {"%2F", "%2f", "a%5Cb", "%00", "%", "%4", "%zz", "a%2"}) {
    EXPECT_FALSE(http::decodeSegment(bad).has_value()) << bad;
  }
}

}  // namespace
}  // namespace vessel::server
