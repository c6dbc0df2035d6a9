// Unit tests for the S3 plugin's own SigV4 signer, against AWS's published examples
// (Amazon S3 API reference, "Signature Calculations for the Authorization Header"
// and "Authenticating Requests: Using Query Parameters"; the generic SigV4 test
// suite's get-vanilla cases), plus key encoding, the XML scanner and presigned URLs
// made by S3Storage. No network.
#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <vector>

#include "s3_storage.hpp"
#include "s3_xml.hpp"
#include "sigv4.hpp"

namespace {

using namespace vessel::plugins::s3;

// The S3 documentation's example credentials and time.
constexpr const char* kS3AccessKey = "AKIAIOSFODNN7EXAMPLE";
constexpr const char* kS3Secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
constexpr const char* kS3Date = "20130524T000000Z";
constexpr const char* kEmptySha256 =
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

std::string scope() { return credentialScope("20130524", "us-east-1", "s3"); }

std::string signS3(const CanonicalInput& input) {
  const std::string key = signingKey(kS3Secret, "20130524", "us-east-1", "s3");
  return signature(key, stringToSign(kS3Date, scope(), canonicalRequest(input)));
}

// --- primitives ----------------------------------------------------------------

TEST(Sigv4Primitives, Sha256AndHmacKnownAnswers) {
  EXPECT_EQ(sha256Hex(""), kEmptySha256);
  EXPECT_EQ(sha256Hex("Welcome to Amazon S3."),
            "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072");
  // RFC 4231 test case 2.
  EXPECT_EQ(hexEncode(hmacSha256("Jefe", "what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
  // RFC 1321's "abc" → 900150983cd24fb0d6963f7d28e17f72, base64.
  EXPECT_EQ(md5Base64("abc"), "kAFQmDzST7DWlj99KOF/cg==");
}

TEST(Sigv4Primitives, AmzDate) {
  using namespace std::chrono;
  const sys_seconds t = sys_days{year{2013} / 5 / 24} + hours{1} + minutes{2} + seconds{3};
  EXPECT_EQ(amzDate(t), "20130524T010203Z");
}

// --- key and query encoding ----------------------------------------------------------

TEST(Sigv4Encoding, UriEncodeKeys) {
  EXPECT_EQ(uriEncode("a/b/c.ts", true), "a/b/c.ts");
  EXPECT_EQ(uriEncode("a/b/c.ts", false), "a%2Fb%2Fc.ts");
  EXPECT_EQ(uriEncode("with space/and more.ts", true), "with%20space/and%20more.ts");
  EXPECT_EQ(uriEncode("unreserved-._~AZaz09", true), "unreserved-._~AZaz09");
  // Reserved and sub-delimiter characters are all encoded, '+' included (it is a
  // space only in forms).
  EXPECT_EQ(uriEncode("!#$&'()*+,:;=?@[]", true),
            "%21%23%24%26%27%28%29%2A%2B%2C%3A%3B%3D%3F%40%5B%5D");
  EXPECT_EQ(uriEncode("%", true), "%25");
  // UTF-8 byte by byte, upper-case hex.
  EXPECT_EQ(uriEncode("unicodé/音楽/🎵.ts", true),
            "unicod%C3%A9/%E9%9F%B3%E6%A5%BD/%F0%9F%8E%B5.ts");
  EXPECT_EQ(uriEncode("test$file.text", true), "test%24file.text");
}

TEST(Sigv4Encoding, CanonicalQuerySortsEncodedPairs) {
  EXPECT_EQ(canonicalQuery({}), "");
  EXPECT_EQ(canonicalQuery({{"prefix", "J"}, {"max-keys", "2"}}), "max-keys=2&prefix=J");
  EXPECT_EQ(canonicalQuery({{"lifecycle", ""}}), "lifecycle=");
  EXPECT_EQ(canonicalQuery({{"b", "2"}, {"a", "x y/z"}, {"a", "1"}}), "a=1&a=x%20y%2Fz&b=2");
  EXPECT_EQ(canonicalQuery({{"continuation-token", "1/2+3="}}), "continuation-token=1%2F2%2B3%3D");
}

TEST(Sigv4Encoding, SignedHeaderNamesAreLowerSortedUnique) {
  EXPECT_EQ(signedHeaderNames({{"X-Amz-Date", "1"}, {"Host", "h"}, {"Range", "r"}}),
            "host;range;x-amz-date");
  EXPECT_EQ(signedHeaderNames({{"a", "1"}, {"A", "2"}}), "a");
}

// --- AWS's published S3 examples (Authorization header) ----------------------------

// Example: GET Object, first 10 bytes.
TEST(Sigv4AwsExamples, GetObject) {
  CanonicalInput input{"GET",
                       "/test.txt",
                       {},
                       {{"Host", "examplebucket.s3.amazonaws.com"},
                        {"Range", "bytes=0-9"},
                        {"x-amz-content-sha256", kEmptySha256},
                        {"x-amz-date", kS3Date}},
                       kEmptySha256};
  EXPECT_EQ(canonicalRequest(input),
            "GET\n/test.txt\n\nhost:examplebucket.s3.amazonaws.com\nrange:bytes=0-9\n"
            "x-amz-content-sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
            "\nx-amz-date:20130524T000000Z\n\nhost;range;x-amz-content-sha256;x-amz-date\n"
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(stringToSign(kS3Date, scope(), canonicalRequest(input)),
            "AWS4-HMAC-SHA256\n20130524T000000Z\n20130524/us-east-1/s3/aws4_request\n"
            "7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972");
  EXPECT_EQ(signS3(input), "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");

  Signer signer(kS3AccessKey, kS3Secret, "us-east-1");
  EXPECT_EQ(signer.authorization(input, kS3Date),
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/"
            "aws4_request,SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,"
            "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
}

// Example: PUT Object, with a reserved character in the key and a Date header.
TEST(Sigv4AwsExamples, PutObject) {
  const std::string payload = sha256Hex("Welcome to Amazon S3.");
  CanonicalInput input{"PUT",
                       "/" + uriEncode("test$file.text", true),
                       {},
                       {{"Date", "Fri, 24 May 2013 00:00:00 GMT"},
                        {"Host", "examplebucket.s3.amazonaws.com"},
                        {"x-amz-date", kS3Date},
                        {"x-amz-storage-class", "REDUCED_REDUNDANCY"},
                        {"x-amz-content-sha256", payload}},
                       payload};
  EXPECT_EQ(canonicalRequest(input),
            "PUT\n/test%24file.text\n\ndate:Fri, 24 May 2013 00:00:00 GMT\n"
            "host:examplebucket.s3.amazonaws.com\n"
            "x-amz-content-sha256:44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072"
            "\nx-amz-date:20130524T000000Z\nx-amz-storage-class:REDUCED_REDUNDANCY\n\n"
            "date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class\n"
            "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072");
  EXPECT_EQ(stringToSign(kS3Date, scope(), canonicalRequest(input)),
            "AWS4-HMAC-SHA256\n20130524T000000Z\n20130524/us-east-1/s3/aws4_request\n"
            "9e0e90d9c76de8fa5b200d8c849cd5b8dc7a3be3951ddb7f6a76b4158342019d");
  EXPECT_EQ(signS3(input), "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd");
}

// Example: GET Bucket Lifecycle (an empty-valued query parameter).
TEST(Sigv4AwsExamples, GetBucketLifecycle) {
  CanonicalInput input{"GET",
                       "/",
                       {{"lifecycle", ""}},
                       {{"Host", "examplebucket.s3.amazonaws.com"},
                        {"x-amz-date", kS3Date},
                        {"x-amz-content-sha256", kEmptySha256}},
                       kEmptySha256};
  EXPECT_EQ(canonicalRequest(input),
            "GET\n/\nlifecycle=\nhost:examplebucket.s3.amazonaws.com\n"
            "x-amz-content-sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
            "\nx-amz-date:20130524T000000Z\n\nhost;x-amz-content-sha256;x-amz-date\n"
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(signS3(input), "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543");
}

// Example: GET Bucket (List Objects) with max-keys and prefix.
TEST(Sigv4AwsExamples, ListObjects) {
  CanonicalInput input{"GET",
                       "/",
                       {{"prefix", "J"}, {"max-keys", "2"}},
                       {{"Host", "examplebucket.s3.amazonaws.com"},
                        {"x-amz-date", kS3Date},
                        {"x-amz-content-sha256", kEmptySha256}},
                       kEmptySha256};
  EXPECT_EQ(canonicalRequest(input).substr(0, 26), "GET\n/\nmax-keys=2&prefix=J\n");
  EXPECT_EQ(signS3(input), "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7");
}

// The presigned-URL example: GET /test.txt valid for 86400 s.
TEST(Sigv4AwsExamples, PresignedGet) {
  Signer signer(kS3AccessKey, kS3Secret, "us-east-1");
  CanonicalInput input{"GET", "/test.txt", {}, {{"host", "examplebucket.s3.amazonaws.com"}}, ""};
  EXPECT_EQ(signer.presignQuery(input, kS3Date, 86400),
            "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2F"
            "us-east-1%2Fs3%2Faws4_request&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&"
            "X-Amz-SignedHeaders=host&"
            "X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404");

  // The documented canonical request behind it.
  input.query = {{"X-Amz-Algorithm", "AWS4-HMAC-SHA256"},
                 {"X-Amz-Credential", "AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request"},
                 {"X-Amz-Date", kS3Date},
                 {"X-Amz-Expires", "86400"},
                 {"X-Amz-SignedHeaders", "host"}};
  input.payload_hash = "UNSIGNED-PAYLOAD";
  EXPECT_EQ(canonicalRequest(input),
            "GET\n/test.txt\nX-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential="
            "AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date="
            "20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host\n"
            "host:examplebucket.s3.amazonaws.com\n\nhost\nUNSIGNED-PAYLOAD");
  EXPECT_EQ(stringToSign(kS3Date, scope(), canonicalRequest(input)),
            "AWS4-HMAC-SHA256\n20130524T000000Z\n20130524/us-east-1/s3/aws4_request\n"
            "3bfa292879f6447bbcda7001decf97f4a54dc650c8942174ae0a9121cf58ad04");
}

// --- the generic SigV4 test suite (service "service", AKIDEXAMPLE) -------------------

TEST(Sigv4TestSuite, GetVanilla) {
  const std::string secret = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
  CanonicalInput input{"GET",
                       "/",
                       {},
                       {{"Host", "example.amazonaws.com"}, {"X-Amz-Date", "20150830T123600Z"}},
                       kEmptySha256};
  EXPECT_EQ(canonicalRequest(input),
            "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\n"
            "host;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  const std::string to_sign =
      stringToSign("20150830T123600Z", credentialScope("20150830", "us-east-1", "service"),
                   canonicalRequest(input));
  EXPECT_EQ(to_sign,
            "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\n"
            "bb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63");
  EXPECT_EQ(signature(signingKey(secret, "20150830", "us-east-1", "service"), to_sign),
            "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31");

  Signer signer("AKIDEXAMPLE", secret, "us-east-1", "service");
  EXPECT_EQ(signer.authorization(input, "20150830T123600Z"),
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request,"
            "SignedHeaders=host;x-amz-date,"
            "Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31");
}

TEST(Sigv4TestSuite, GetVanillaQueryOrderKeyCase) {
  const std::string secret = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
  CanonicalInput input{"GET",
                       "/",
                       {{"Param2", "value2"}, {"Param1", "value1"}},
                       {{"Host", "example.amazonaws.com"}, {"X-Amz-Date", "20150830T123600Z"}},
                       kEmptySha256};
  EXPECT_EQ(canonicalQuery(input.query), "Param1=value1&Param2=value2");
  const std::string to_sign =
      stringToSign("20150830T123600Z", credentialScope("20150830", "us-east-1", "service"),
                   canonicalRequest(input));
  EXPECT_EQ(signature(signingKey(secret, "20150830", "us-east-1", "service"), to_sign),
            "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500");
}

TEST(Sigv4TestSuite, HeaderValuesAreTrimmedAndCollapsed) {
  CanonicalInput input{"GET", "/", {}, {{"My-Header1", "  a   b   c  "}, {"Host", "h"}}, "x"};
  EXPECT_EQ(canonicalRequest(input), "GET\n/\n\nhost:h\nmy-header1:a b c\n\nhost;my-header1\nx");
}

// --- the XML scanner ------------------------------------------------------------------

TEST(S3Xml, ElementsTextAndEntities) {
  const std::string doc =
      "<?xml version=\"1.0\"?><ListBucketResult xmlns=\"x\"><IsTruncated>true</IsTruncated>"
      "<Contents><Key>a &amp; b &lt;c&gt; &#233;&#x1F3B5;</Key><Size>12</Size></Contents>"
      "<Contents><Key>z</Key><Size>0</Size></Contents><KeyCount>2</KeyCount>"
      "<NextContinuationToken/></ListBucketResult>";
  const auto contents = xmlElements(doc, "Contents");
  ASSERT_EQ(contents.size(), 2u);
  EXPECT_EQ(xmlText(contents[0], "Key"), "a & b <c> é🎵");
  EXPECT_EQ(xmlText(contents[1], "Size"), "0");
  EXPECT_EQ(xmlText(doc, "IsTruncated"), "true");
  EXPECT_EQ(xmlText(doc, "Key"), "a & b <c> é🎵");  // <KeyCount> is not <Key>
  EXPECT_EQ(xmlText(doc, "KeyCount"), "2");
  EXPECT_EQ(xmlText(doc, "NextContinuationToken"), "");
  EXPECT_EQ(xmlText(doc, "Missing"), std::nullopt);
  EXPECT_EQ(xmlDecode("&bogus; & &#0; &#xZZ; &amp"), "&bogus; & &#0; &#xZZ; &amp");
  EXPECT_EQ(xmlEscape("<a href='x'>&\"</a>"), "&lt;a href=&apos;x&apos;&gt;&amp;&quot;&lt;/a&gt;");
  EXPECT_TRUE(xmlElements("<Key>unterminated", "Key").empty());
}

// --- presigned URLs and config validation of the store (no request is made) ------------

vessel::plugins::S3Options options(bool path_style) {
  vessel::plugins::S3Options o;
  o.endpoint = "https://acct.r2.cloudflarestorage.com";
  o.bucket = "media";
  o.access_key_id = "AKID";
  o.secret_access_key = "secret";
  o.path_style = path_style;
  return o;
}

TEST(S3Presign, UrlFormatVirtualHostAndPathStyle) {
  for (const bool path_style : {false, true}) {
    auto opened = vessel::plugins::S3Storage::open(options(path_style));
    ASSERT_TRUE(opened.ok()) << opened.error().message;
    auto& store = *opened.value();
    auto put = store.presignPut("u1/up 1/original.flac", "audio/flac", 1234, 600);
    ASSERT_TRUE(put.ok()) << put.error().message;
    ASSERT_TRUE(put.value().has_value());
    const vessel::PresignedRequest& r = *put.value();
    EXPECT_EQ(r.method, "PUT");
    const std::string base =
        path_style ? "https://acct.r2.cloudflarestorage.com/media/u1/up%201/original.flac?"
                   : "https://media.acct.r2.cloudflarestorage.com/u1/up%201/original.flac?";
    EXPECT_EQ(r.url.substr(0, base.size()), base) << r.url;
    EXPECT_NE(r.url.find("X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKID%2F"),
              std::string::npos)
        << r.url;
    EXPECT_NE(r.url.find("%2Fauto%2Fs3%2Faws4_request&X-Amz-Date="), std::string::npos) << r.url;
    EXPECT_NE(
        r.url.find("&X-Amz-Expires=600&X-Amz-SignedHeaders=content-length%3Bcontent-type%3Bhost"
                   "&X-Amz-Signature="),
        std::string::npos)
        << r.url;
    EXPECT_EQ(r.url.size() - r.url.rfind("X-Amz-Signature=") - 16, 64u);
    ASSERT_EQ(r.headers.size(), 1u);
    EXPECT_EQ(r.headers[0].first, "Content-Type");
    EXPECT_EQ(r.headers[0].second, "audio/flac");
    const auto now = std::chrono::duration_cast<std::chrono::seconds>(
                         std::chrono::system_clock::now().time_since_epoch())
                         .count();
    EXPECT_NEAR(static_cast<double>(r.expires_unix), static_cast<double>(now + 600), 5.0);

    auto get = store.presignGet("a/b.ts", 60);
    ASSERT_TRUE(get.ok());
    EXPECT_NE(get.value()->url.find("X-Amz-SignedHeaders=host&"), std::string::npos);
    EXPECT_TRUE(get.value()->headers.empty());

    EXPECT_FALSE(store.presignGet("a/b.ts", 0).ok());
    EXPECT_FALSE(store.presignGet("a/b.ts", 7 * 24 * 3600 + 1).ok());
    EXPECT_FALSE(store.presignPut("../x", "", 1, 60).ok());
    EXPECT_EQ(store.localPath("a"), std::nullopt);
    EXPECT_EQ(store.publicUrl("a"), std::nullopt);
  }
}

TEST(S3Presign, PublicUrlEncodesTheKey) {
  auto o = options(false);
  o.public_base_url = "https://media.example.com/";
  auto opened = vessel::plugins::S3Storage::open(o);
  ASSERT_TRUE(opened.ok());
  EXPECT_EQ(opened.value()->publicUrl("u1/x y/音.m3u8"),
            "https://media.example.com/u1/x%20y/%E9%9F%B3.m3u8");
  EXPECT_EQ(opened.value()->publicUrl("../etc"), std::nullopt);
}

TEST(S3Options, InvalidConfigNamesTheKey) {
  struct Case {
    void (*mutate)(vessel::plugins::S3Options&);
    std::string key;
  };
  const std::vector<Case> cases = {
      {[](auto& o) { o.endpoint = "ftp://x"; }, "storage.s3.endpoint"},
      {[](auto& o) { o.endpoint = "https://host/path"; }, "storage.s3.endpoint"},
      {[](auto& o) { o.endpoint = ""; }, "storage.s3.endpoint"},
      {[](auto& o) { o.bucket = "No_Such"; }, "storage.s3.bucket"},
      {[](auto& o) { o.bucket = "a.b.c"; }, "storage.s3.path_style"},
      {[](auto& o) { o.access_key_id = ""; }, "storage.s3.access_key_id"},
      {[](auto& o) { o.secret_access_key = ""; }, "storage.s3.secret_access_key"},
      {[](auto& o) { o.region = ""; }, "storage.s3.region"},
      {[](auto& o) { o.part_size_bytes = 1 << 20; }, "storage.s3.part_size_bytes"},
      {[](auto& o) { o.public_base_url = "media.example.com"; }, "storage.s3.public_base_url"},
  };
  for (const auto& c : cases) {
    auto o = options(false);
    c.mutate(o);
    auto opened = vessel::plugins::S3Storage::open(o);
    ASSERT_FALSE(opened.ok()) << c.key;
    EXPECT_EQ(opened.error().code, vessel::ErrorCode::kConfig) << c.key;
    EXPECT_EQ(opened.error().message.rfind(c.key, 0), 0u) << opened.error().message;
    EXPECT_EQ(opened.error().message.find("secret\""), std::string::npos);
  }
}

}  // namespace
